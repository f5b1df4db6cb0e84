"""DNS data shared by the mDNS responder, the cache and the DNS bridge (no I/O here)."""
