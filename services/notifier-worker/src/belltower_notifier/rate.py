"""A notifier's send rate: at most ``send_rate`` e-mails per second through its mail relay.

One leaky bucket (``aiolimiter``) per relay and rate in each worker process, shared by every run
in the process that sends through that relay at that rate, so eight sender connections of one
run, or three notifiers running at once, together keep to it. It is per process, not shared
across replicas: a shared bucket would cost a round trip to NATS or PostgreSQL per message, on
the path that sends thousands, and a relay's limit is usually per connection or per client
address anyway. With several notifier-worker replicas, divide the relay's limit among them, or
give the notifiers a concurrency key of the relay (``relay:smtp.district.org``, limit 1) so only
one such run goes at a time, whichever replica takes it (``docs/limits.md``).
"""

from __future__ import annotations

from aiolimiter import AsyncLimiter

from belltower.mail import Mailer

_buckets: dict[tuple[str, float], AsyncLimiter] = {}


def relay_of(mailer: Mailer) -> str:
    s = mailer.settings
    return f"{s.smtp_host}:{s.smtp_port}"


def bucket(mailer: Mailer, rate: float | None) -> AsyncLimiter | None:
    """The process's bucket for this relay and rate, or None without a rate. It holds one
    message, so sends are spaced evenly (1/rate seconds apart) rather than in bursts."""
    if not rate:
        return None
    key = (relay_of(mailer), rate)
    found = _buckets.get(key)
    if found is None:
        found = _buckets[key] = AsyncLimiter(1, 1 / rate)
    return found
