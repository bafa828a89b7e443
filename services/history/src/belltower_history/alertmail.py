"""Job alert mails: the scheduler's ``failing`` and ``recovered`` events, mailed to the job's
result-mail addresses through the same outbox as result mails (``resultmail.py``).

The row is keyed on (occurrence, kind), so a redelivered alert event finds it there already;
it is only written when the run it names is in history (the alert follows that run's finished
event on the same stream), which the outbox's reference to ``history.runs`` needs.
"""

from __future__ import annotations

import html

from belltower.events import JobFailing, JobRecovered

from .resultmail import OutboxMail, error_html, facts_rows, one_line, when_text


def compose_alert(event: JobFailing | JobRecovered, console_url: str) -> OutboxMail | None:
    """The alert mail of a failing or recovered event, or None when the job mails nobody."""
    data = event.data
    if data.result_mail is None or not data.result_mail.to:
        return None
    link = f"{console_url.rstrip('/')}/jobs/{data.job_id}"
    if isinstance(event, JobFailing):
        kind = "failing"
        headline = f"Failing: {data.job_title} failed {data.streak} times in a row"
        facts = [
            ("Job", f"{data.job_title} ({data.job_type})"),
            ("Failed runs", f"{data.streak} in a row (alert after {data.alert_after})"),
            ("Failing since", when_text(data.first_failed_at)),
            ("Latest status", data.status),
        ]
        if data.paused:
            facts.append(("Paused", "yes: the job was paused after this failure"))
    else:
        kind = "recovered"
        headline = f"Recovered: {data.job_title} succeeded again"
        facts = [
            ("Job", f"{data.job_title} ({data.job_type})"),
            ("Failed runs before", str(data.streak)),
            ("Failing since", when_text(data.first_failed_at)),
            ("Recovered at", when_text(data.at)),
        ]
    facts.append(("Run", data.run_id))
    text = "\n".join(f"{name + ':':<20} {value}" for name, value in facts)
    if kind == "failing" and data.error:
        text += f"\n\nLatest error:\n{data.error}\n"
    text += f"\n\nView the job: {link}\n"
    body_html = (
        f"<h2>{html.escape(headline)}</h2><table>{facts_rows(facts)}</table>"
        + error_html("Latest error", data.error if kind == "failing" else None)
        + f"<p><a href='{html.escape(link)}'>View the job in Belltower</a></p>"
    )
    return OutboxMail(
        occurrence_id=data.occurrence_id,
        run_id=data.run_id,
        recipients=list(data.result_mail.to),
        subject=one_line(f"[Belltower] {headline}"),
        body_text=text,
        body_html=body_html,
        kind=kind,
    )
