"""`kbchat serve`: one FastAPI process with the HTTP API, the widget and the Gradio UI."""
