"""Logs and metrics: logging configured by kbchat (text or JSON lines with a request id), an
access log, and Prometheus metrics for HTTP requests, chats, retrieval, LLM errors and ingestion."""
