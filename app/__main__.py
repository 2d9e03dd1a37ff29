"""`python -m app` runs the `kbchat` command line."""

from app.cli import main

main()
