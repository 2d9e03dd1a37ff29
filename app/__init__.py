"""kbchat: a self-hostable multilingual RAG chatbot backend."""

__version__ = "0.1.0"
