"""The scheduler: job definitions, the occurrence ledger, and dispatch of due occurrences."""
