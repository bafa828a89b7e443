"""What an integration run tells the operator: counts processed, skipped and failed, with the
records behind them, as text and HTML in the run's output."""

from __future__ import annotations

import html
from dataclasses import dataclass, field

from belltower.jobtypes import JobContext

DETAIL_LIMIT = 200


@dataclass
class Tally:
    """Counts and per-record notes gathered while a job runs, written out once at the end."""

    what: str
    processed: int = 0
    skipped: int = 0
    failed: int = 0
    notes: list[tuple[str, str, str]] = field(default_factory=list)
    facts: list[str] = field(default_factory=list)

    def ok(self, record: str = "", note: str = "") -> None:
        self.processed += 1
        if note:
            self._note("processed", record, note)

    def skip(self, record: str, reason: str) -> None:
        self.skipped += 1
        self._note("skipped", record, reason)

    def fail(self, record: str, reason: str) -> None:
        self.failed += 1
        self._note("failed", record, reason)

    def fact(self, text: str) -> None:
        """A line about the run as a whole (the file written, the import id, ...)."""
        self.facts.append(text)

    def _note(self, outcome: str, record: str, text: str) -> None:
        self.notes.append((outcome, record, text))

    @property
    def summary(self) -> str:
        return (
            f"{self.what}: {self.processed} processed, {self.skipped} skipped, {self.failed} failed"
        )

    def write(self, ctx: JobContext, summary: str | None = None) -> None:
        """Put the tally in the run's output: a summary line, the facts, then the record notes."""
        out = ctx.output
        out.summary = (summary or self.summary)[:300]
        out.line(self.summary)
        for fact in self.facts:
            out.line(fact)
        shown = self.notes[:DETAIL_LIMIT]
        for outcome, record, text in shown:
            out.line(f"  {outcome:<9} {record}  {text}".rstrip())
        if len(self.notes) > len(shown):
            out.line(f"  ... and {len(self.notes) - len(shown)} more")
        parts = [
            f"<p><strong>{html.escape(self.what)}</strong>: {self.processed} processed, "
            f"{self.skipped} skipped, {self.failed} failed.</p>"
        ]
        if self.facts:
            parts.append(
                "<ul>" + "".join(f"<li>{html.escape(f)}</li>" for f in self.facts) + "</ul>"
            )
        if shown:
            rows = "".join(
                f'<tr class="{o}"><td>{o}</td><td>{html.escape(r)}</td><td>{html.escape(t)}</td></tr>'
                for o, r, t in shown
            )
            parts.append(
                "<table><thead><tr><th>Outcome</th><th>Record</th><th>Note</th></tr></thead>"
                f"<tbody>{rows}</tbody></table>"
            )
            if len(self.notes) > len(shown):
                parts.append(f"<p>... and {len(self.notes) - len(shown)} more.</p>")
        out.html("".join(parts))


PROGRESS_EVERY = 500


async def every(ctx: JobContext, done: int, total: int, what: str) -> None:
    """Report progress every few hundred records, so a long import shows it is moving."""
    if done % PROGRESS_EVERY == 0:
        await ctx.progress(done, total, f"{done} of {total} {what}")


CHANGES_SHOWN = 50


@dataclass
class ChangeList:
    """What a run changed, record by record (old → new), for the output: the first
    ``CHANGES_SHOWN`` are listed, the rest counted."""

    heading: str
    changes: list[tuple[str, str, str, str]] = field(default_factory=list)

    def add(self, school: str, record: str, old: str, new: str) -> None:
        self.changes.append((school, record, old, new))

    def write(self, ctx: JobContext) -> None:
        if not self.changes:
            return
        shown = self.changes[:CHANGES_SHOWN]
        more = len(self.changes) - len(shown)
        out = ctx.output
        out.line(f"{self.heading} ({len(shown)} of {len(self.changes)} shown):")
        for school, record, old, new in shown:
            out.line(f"  {school} {record}: {old} → {new}")
        if more:
            out.line(f"  ... and {more} more")
        rows = "".join(
            f"<tr><td>{html.escape(s)}</td><td>{html.escape(r)}</td><td>{html.escape(o)}</td>"
            f"<td>{html.escape(n)}</td></tr>"
            for s, r, o, n in shown
        )
        out.html(
            f"<p>{html.escape(self.heading)}</p><table><thead><tr><th>School</th><th>Record</th>"
            f"<th>Was</th><th>Now</th></tr></thead><tbody>{rows}</tbody></table>"
            + (f"<p>... and {more} more.</p>" if more else "")
        )
