"""Configuration: YAML files validated into frozen dataclasses (see ``model``)."""
