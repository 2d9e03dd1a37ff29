"""The chat chain: condense, retrieve across languages, answer with citations (or quote)."""
