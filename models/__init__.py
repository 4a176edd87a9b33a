"""Model manifest, the shipped default pack, fetch and verify."""
