"""Network interfaces: what the device has, and when it changes."""
