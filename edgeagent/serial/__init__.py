"""Serial devices: writing reactors' ``SerialWrite`` effects (``ports``)."""
