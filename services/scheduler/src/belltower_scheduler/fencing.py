"""What fences a scheduler replica's work to the partitions it holds: the partition of a job, the
lease key of a partition, the token every ledger write is checked against, and the error a
replica gets once another one holds its partition (see ``lease.py`` for how leases are kept)."""

from __future__ import annotations

from belltower.errors import BelltowerError

FENCE_HEADER = "Belltower-Lease-Token"
"""Header on every due message a lease holder publishes: the token of the lease it held."""

Partition = tuple[int, int]
"""(index, count): the jobs whose id falls in partition ``index`` of ``count``."""

Fence = tuple[str, int]
"""(lease key, token): the lease a ledger write is made under."""


class Deposed(BelltowerError):
    """This replica no longer holds the partition's lease; it must not dispatch for it."""

    code = "deposed"


def partition_of(job_id: str, count: int) -> int:
    """The partition of a job: its id's last 32 bits modulo ``count``, stable across processes
    and versions (unlike ``hash``), and computable in SQL (:func:`partition_sql`)."""
    return int(job_id[-8:], 16) % count if count > 1 else 0


def partition_sql(column: str, count_param: str, index_param: str) -> str:
    """SQL condition equal to ``partition_of(column) == index`` (the same last 32 bits)."""
    return f"(('x' || right({column}::text, 8))::bit(32)::bigint % {count_param}) = {index_param}"


def lease_key(partition: int, count: int) -> str:
    """The partition's KV key; the count is part of it, so replicas configured with different
    counts never share a key (their ledgers still refuse double dispatch)."""
    return f"scheduler.p{partition}of{count}"
