"""Belltower's developer tools, kept out of the runtime and its images.

``localservers`` runs private NATS, PostgreSQL and SMTP servers for tests and ``make dev``;
``demo`` lays out the demo school in the reference SIS schema; ``devstack`` is ``make dev``.
"""
