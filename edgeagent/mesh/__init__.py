"""The mesh: discovery, authenticated frames, SWIM membership and the peer link (docs/mesh.md)."""
