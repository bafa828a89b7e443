"""Focus's address jobs: Address Corrections (USPS abbreviations, stray spaces) and Parse
Addresses (each address split into its components).

Both lean on ``usaddress`` (a trained parser of US addresses) to tell which word of a street
line is a direction or a street suffix, and on ``usaddress-scourgify``'s USPS Publication 28
tables for the abbreviations, instead of guessing from word lists: "45 Court Street" keeps its
Court and gets St. Each changes only what differs, so a re-run changes nothing.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
import usaddress
from scourgify.address_constants import DIRECTIONAL_REPLACEMENTS, STREET_TYPE_ABBREVIATIONS

from belltower import sis
from belltower.jobtypes import JobContext, JobType, counted

from ..report import Tally

Statuses = Annotated[
    list[sis.PersonStatus],
    msgspec.Meta(max_length=5, description="whose addresses: these module statuses"),
]
_ABBREVIATE = {
    "StreetNamePreDirectional": DIRECTIONAL_REPLACEMENTS,
    "StreetNamePostDirectional": DIRECTIONAL_REPLACEMENTS,
    "StreetNamePostType": STREET_TYPE_ABBREVIATIONS,
}
_ADDRESSES = """
    SELECT a.id, a.line1, a.line2, a.city, a.region, a.postal_code, p.sis_id
      FROM sis.addresses a JOIN sis.people p ON p.id = a.person_id
     WHERE p.status = ANY($1::text[]) {extra}
     ORDER BY a.id FOR UPDATE OF a"""


def _squeeze(value: str | None) -> str | None:
    return " ".join(value.split()) if value is not None else None


def _abbreviation(token: str, label: str) -> str:
    table = _ABBREVIATE.get(label)
    if table is None:
        return token
    word = token.rstrip(".,").upper()
    short = table.get(word)
    if short is None:
        return token
    trail = token[len(token.rstrip(",")) :]
    if label == "StreetNamePostType" and not token.isupper():
        short = short.capitalize()
    return short + trail


def corrected_line(line: str) -> str:
    """A street line with its directions and street suffix abbreviated (USPS Publication 28)
    and single spaces; a line the parser cannot read is only trimmed."""
    squeezed = " ".join(line.split())
    try:
        parsed = usaddress.parse(squeezed)
    except usaddress.RepeatedLabelError:  # pragma: no cover - parse() does not raise it
        return squeezed
    return " ".join(_abbreviation(token, label) for token, label in parsed)


class CorrectionsParams(msgspec.Struct, forbid_unknown_fields=True):
    statuses: Statuses = msgspec.field(default_factory=lambda: ["student"])
    dry_run: bool = False


async def address_corrections(ctx: JobContext, params: CorrectionsParams) -> None:
    pool = await ctx.db.pool()
    tally = Tally("Address corrections")
    async with pool.acquire() as conn, conn.transaction():
        for row in await conn.fetch(_ADDRESSES.format(extra=""), list(params.statuses)):
            fixed = {
                "line1": corrected_line(row["line1"]),
                "line2": _squeeze(row["line2"]) or None,
                "city": _squeeze(row["city"]),
                "region": _squeeze(row["region"]),
                "postal_code": _squeeze(row["postal_code"]),
            }
            changes = [f"{k}: {row[k]!r} -> {v!r}" for k, v in fixed.items() if v != row[k]]
            if not changes:
                tally.ok()
                continue
            record = f"address {row['id']} ({row['sis_id']})"
            if params.dry_run:
                tally.skip(record, "; ".join(changes) + " (dry run: not changed)")
                continue
            await conn.execute(
                """UPDATE sis.addresses SET line1 = $2, line2 = $3, city = $4, region = $5,
                          postal_code = $6, updated_at = now() WHERE id = $1""",
                row["id"], *fixed.values(),
            )  # fmt: skip
            tally.ok(record, "; ".join(changes))
    checked = tally.processed + tally.skipped
    if params.dry_run:
        summary = f"{checked} addresses checked, {tally.skipped} to correct (dry run: not changed)"
    else:
        summary = f"{checked} addresses checked, {len(tally.notes)} corrected"
    tally.write(ctx, summary)


address_corrections_type = JobType(
    name="housekeeping.address_corrections",
    pool="integration",
    title="Address Corrections",
    description=(
        "Replaces any compass directions and street suffixes in student addresses with the "
        "abbreviations (USPS Publication 28), and corrects leading, trailing and doubled spaces "
        "in the address fields. Recommended only if running Parse Addresses."
    ),
    params=CorrectionsParams,
    run=address_corrections,
)

# -- Parse Addresses ----------------------------------------------------------------------------

_PARTS = {
    "house_number": ("AddressNumber",),
    "pre_direction": ("StreetNamePreDirectional",),
    "street_name": ("StreetNamePreType", "StreetName"),
    "street_type": ("StreetNamePostType",),
    "post_direction": ("StreetNamePostDirectional",),
    "unit_type": ("OccupancyType",),
    "unit": ("OccupancyIdentifier",),
}


def address_parts(line1: str, line2: str | None) -> tuple[dict[str, str | None], str | None]:
    """The components of a street address, and a problem if the parser could not tell them."""
    text = " ".join(f"{line1} {line2 or ''}".split())
    try:
        tagged, kind = usaddress.tag(text)
    except usaddress.RepeatedLabelError as exc:
        return dict.fromkeys(_PARTS), f"ambiguous address: {exc.original_string!r}"
    parts: dict[str, str | None] = {
        key: " ".join(v for label in labels if (v := tagged.get(label))) or None
        for key, labels in _PARTS.items()
    }
    problem = None if kind == "Street Address" else f"not a street address ({kind})"
    return parts, problem


class ParseParams(msgspec.Struct, forbid_unknown_fields=True):
    statuses: Statuses = msgspec.field(default_factory=lambda: ["student"])
    reparse_all: Annotated[
        bool, msgspec.Meta(description="parse every address again, changed since or not")
    ] = False


async def parse_addresses(ctx: JobContext, params: ParseParams) -> None:
    pool = await ctx.db.pool()
    tally = Tally("Parse addresses")
    stale = "" if params.reparse_all else (
        "AND NOT EXISTS (SELECT 1 FROM sis.address_parts x WHERE x.address_id = a.id "
        "AND x.parsed_at >= a.updated_at)"
    )  # fmt: skip
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(_ADDRESSES.format(extra=stale), list(params.statuses))
        values: list[tuple[Any, ...]] = []
        for row in rows:
            parts, problem = address_parts(row["line1"], row["line2"])
            values.append((row["id"], *parts.values(), problem))
            if problem:
                tally.skip(f"address {row['id']} ({row['sis_id']})", problem)
            else:
                tally.ok()
        await conn.executemany(
            f"""INSERT INTO sis.address_parts (address_id, {", ".join(_PARTS)}, problem)
                VALUES ({", ".join(f"${i}" for i in range(1, len(_PARTS) + 3))})
                ON CONFLICT (address_id) DO UPDATE SET
                  {", ".join(f"{k} = EXCLUDED.{k}" for k in (*_PARTS, "problem"))}, parsed_at = now()""",
            values,
        )
    tally.write(
        ctx,
        f"{counted(len(rows), 'address', 'addresses')} parsed ({tally.skipped} not read as a street address)",
    )


parse_addresses_type = JobType(
    name="housekeeping.parse_addresses",
    pool="integration",
    title="Parse Addresses",
    description=(
        "Parses student addresses so each component (house number, directions, street name and "
        "type, unit) is in its own field. Once an address is parsed, it is not re-parsed unless "
        "the address record changed since."
    ),
    params=ParseParams,
    run=parse_addresses,
)
