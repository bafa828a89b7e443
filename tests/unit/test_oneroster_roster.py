"""Records are keyed by sourcedId: the same record twice is one, two different ones collide."""

from __future__ import annotations

import pytest

from belltower.errors import JobFailed
from belltower_integration.oneroster.roster import Institution, _Builder


def test_a_course_offered_twice_is_one_record_and_a_collision_fails_the_run() -> None:
    b = _Builder(Institution("root", "College"))
    b.add("courses", "course-BIO101", title="Biology", orgSourcedId="root")
    b.add("courses", "course-BIO101", title="Biology", orgSourcedId="root")
    assert list(b.records["courses"]) == ["course-BIO101"]
    b.add("users", "S1", enabledUser="true", username="s1", givenName="Ada", familyName="L")
    with pytest.raises(
        JobFailed, match=r"users\.csv: two different records would have the sourcedId 'S1'"
    ):
        b.add("users", "S1", enabledUser="true", username="g", givenName="Guardian", familyName="L")
    with pytest.raises(KeyError, match="users has no column role"):
        b.add("users", "S2", role="student")
