"""Turn a folder of documents into chunks in a Chroma collection, incrementally."""
