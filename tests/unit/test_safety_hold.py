"""The safety hold's pure rules: what counts as too much, what a change set's fingerprint
depends on, and that a held run is mailed as held even to failure-only recipients."""

from __future__ import annotations

from belltower.events import ResultMail
from belltower_history.resultmail import ResultMailComposer
from belltower_integration import safety
from tests.helpers.result_mail import finished


def test_a_change_over_either_threshold_is_named_and_one_under_them_is_not() -> None:
    params = safety.SafetyParams()
    before = {f"U{i}": "d" for i in range(100)}
    after = {k: v for k, v in before.items() if k not in {"U1", "U2"}} | {"U3": "new", "U200": "d"}
    change = {"users": safety.diff(before, after)}
    assert change["users"].counts() == {"existing": 100, "added": 1, "changed": 1, "deleted": 2}
    assert safety.over(change, params) == []
    gone = {"users": safety.diff(before, dict(list(before.items())[:89]))}
    assert safety.over(gone, params) == ["users: 11 of 100 would be deleted (11.0% > 10%)"]
    changed = {"users": safety.diff(before, {k: "other" for k in before})}
    assert safety.over(changed, params) == ["users: 100 of 100 would be changed (100.0% > 75%)"]
    assert safety.over(changed, safety.SafetyParams(enabled=False)) == []
    assert safety.over({"users": safety.diff({}, after)}, params) == []  # a first sync


def test_the_fingerprint_is_the_change_set_and_the_sample_puts_deletions_first() -> None:
    a = {"enrolments": safety.KindChange(existing=5, deleted=["E1"], changed=["E2"])}
    b = {"enrolments": safety.KindChange(existing=7, deleted=["E1"], changed=["E2"])}
    c = {"enrolments": safety.KindChange(existing=5, deleted=["E3"], changed=["E2"])}
    assert safety.fingerprint(a) == safety.fingerprint(b) != safety.fingerprint(c)
    assert safety.sample(a) == ["deleted enrolments E1", "changed enrolments E2"]


def test_a_held_run_is_mailed_as_held_even_when_only_failures_are() -> None:
    quiet = ResultMailComposer(only_failures=True, console_url="http://c")
    run = finished(ResultMail(to=("registrar@school.edu",)), status="held").data
    mail = quiet.compose(run)
    assert mail is not None and mail.subject.startswith("[Belltower] Held")
    assert "safety thresholds" in mail.body_text
