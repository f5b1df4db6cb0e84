"""edgeagent: names on the LAN, a DNS bridge, a mesh and reactors for small Linux devices."""

__version__ = "0.1.0"
