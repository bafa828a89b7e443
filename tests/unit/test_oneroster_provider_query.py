"""The OneRoster provider's query grammar without a server: filter predicates and their
precedence, the fields a filter, a sort and a selection may name, and the shapes' fields."""

from __future__ import annotations

import pytest

from belltower.errors import InvalidInput
from belltower.roster import COLLECTIONS
from belltower_integration.oneroster import provider, rest
from belltower_integration.oneroster.delta import Records
from belltower_integration.oneroster.roster import FILES

USER = {"sourcedId": "S1", "status": "active", "familyName": "Smith", "givenName": "Ann",
        "enabledUser": True, "email": "ann@school.example"}  # fmt: skip


def holds(text: str, record: dict[str, object] = USER) -> bool:
    return provider.matches(record, provider.parse_filter(text, "users"))


def test_each_operator_compares_as_text() -> None:
    assert holds("familyName='Smith'") and not holds("familyName='smith'")
    assert holds("familyName!='Jones'") and holds("familyName~'MIT'")
    assert holds("familyName>'Sm'") and holds("familyName>='Smith'") and not holds("familyName<'S'")
    assert holds("givenName<='Ann'") and holds("enabledUser='true'")
    assert holds("middleName=''"), "a field the record leaves out is the empty text"
    assert holds("familyName = 'Smith'"), "spaces around the operator are allowed"


def test_and_binds_before_or() -> None:
    assert holds("familyName='Jones' OR givenName='Ann' AND status='active'")
    assert not holds("familyName='Jones' AND givenName='Ann' OR status='gone'")
    assert holds("familyName='Jones' AND givenName='Ann' OR email~'@school'")


@pytest.mark.parametrize(
    "text",
    [
        "familyName='Smith", "familyName=Smith", "familyName=='Smith'", "='Smith'",
        "familyName='a' AND", "familyName='a' and givenName='b'", "familyName='a'  AND givenName='b'",
        "shoeSize='9'", "primaryOrg.sourcedId='x'", "roles='student'", "agents='x'",
    ],
)  # fmt: skip
def test_a_filter_outside_the_grammar_is_refused(text: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        provider.parse_filter(text, "users")
    assert refused.value.field == "filter"


def test_sort_and_selection_name_the_collection_s_fields() -> None:
    provider.check_sort("familyName", "users")
    provider.check_fields(["sourcedId", "roles"], "users")
    for bad in ("roles", "shoeSize"):
        with pytest.raises(InvalidInput, match="sort"):
            provider.check_sort(bad, "users")
    for bad_fields in (["shoeSize"], [""]):
        with pytest.raises(InvalidInput, match="fields"):
            provider.check_fields(bad_fields, "users")


def test_the_declared_fields_are_every_field_the_shaper_gives() -> None:
    """Every CSV value filled, so every optional REST field appears at least once."""
    values = {name: tuple(f"{name}-{c.name}" for c in FILES[name][3:]) for name in FILES}
    records: Records = {name: {"x": values[name]} for name in FILES}
    for name, refs in (("classes", "termSourcedIds"), ("users", "agentSourcedIds")):
        i = [c.name for c in FILES[name][3:]].index(refs)
        records[name]["x"] = (*values[name][:i], "a,b", *values[name][i + 1 :])
    roles = [c.name for c in FILES["roles"][3:]]
    records["roles"] = {"r": tuple("x" if n == "userSourcedId" else n for n in roles)}
    shaped = rest.Shaper("").records(records)
    for collection in rest.ORDER:
        given = set(shaped[collection]["x"]) | {"dateLastModified"}
        assert given == set(rest.FIELDS[collection]), collection
    assert set(provider.VIEWS) == set(COLLECTIONS)
