"""Alembic's script folder for the conversations database (env.py and versions/).

Run through app.server.schema (at every start, and `kbchat db upgrade`); no alembic.ini needed.
"""
