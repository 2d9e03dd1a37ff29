"""Revisions, oldest first; Alembic ignores this file. Never edit a released revision: add one."""
