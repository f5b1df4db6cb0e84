"""The local control API: JSON lines over an owner-only Unix socket in the runtime dir."""
