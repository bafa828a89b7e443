"""Job parameters typed as KEY=VALUE are converted by the job type's schema and checked."""

import msgspec
import pytest

from belltower.errors import InvalidInput
from belltower.jobtypes import JobType
from belltower_scheduler.catalog import validate_params


class Params(msgspec.Struct, forbid_unknown_fields=True):
    days: int = 30
    ratio: float = 0.5
    dry_run: bool = False
    notify: list[str] = []
    folder: str | None = None
    note: str = ""


async def _noop(ctx, params) -> None:  # pragma: no cover - never run
    return None


INFO = JobType("test.params", "integration", "Params", "", Params, _noop).info()


def test_strings_are_converted_by_schema_type() -> None:
    got = validate_params(
        INFO,
        {
            "days": "7",
            "ratio": "2.5",
            "dry_run": "yes",
            "notify": "a@x.org,b@x.org",
            "folder": "/tmp",
            "note": "42",
        },
    )
    assert got == {
        "days": 7,
        "ratio": 2.5,
        "dry_run": True,
        "notify": ["a@x.org", "b@x.org"],
        "folder": "/tmp",
        "note": "42",
    }


def test_json_values_pass_through() -> None:
    assert validate_params(INFO, {"days": 3, "dry_run": False}) == {"days": 3, "dry_run": False}


@pytest.mark.parametrize(
    ("params", "field", "words"),
    [
        ({"days": "seven"}, "param.days", "not a whole number"),
        ({"dry_run": "perhaps"}, "param.dry_run", "not true or false"),
        ({"colour": "red"}, "param.colour", "has no parameter"),
        ({"days": 1.5}, "param.days", "not of type 'integer'"),
    ],
)
def test_bad_params_name_the_parameter(params: dict, field: str, words: str) -> None:
    with pytest.raises(InvalidInput) as err:
        validate_params(INFO, params)
    assert err.value.field == field
    assert words in err.value.message


def test_unknown_param_lists_the_accepted_ones() -> None:
    with pytest.raises(InvalidInput) as err:
        validate_params(INFO, {"colour": "red"})
    assert "days" in (err.value.accepted or "") and "notify" in (err.value.accepted or "")


def test_an_array_item_is_refused_with_the_items_accepted_form() -> None:
    from belltower_integration.jobs import registry

    kind = registry.get("finance.calculate_adult_fees")
    assert kind is not None
    with pytest.raises(InvalidInput) as caught:
        validate_params(kind.info(), {"crc_codes": ["371", "37x"]})
    assert caught.value.field == "param.crc_codes.1"
    assert caught.value.accepted == "each item string, matching ^[0-9]{3}$"
