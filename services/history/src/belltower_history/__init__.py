"""History: records run events in PostgreSQL and answers history queries."""
