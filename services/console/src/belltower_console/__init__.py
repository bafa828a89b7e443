"""Belltower console: the HTTP API and web console, with users, roles, sessions and an audit log."""
