"""The seed-task map: every job type the workers register is a seed task's or Belltower's own."""

from __future__ import annotations

import pytest

from belltower import seedtasks
from belltower.api import JobTypeInfo
from belltower_console.forms import type_groups
from belltower_integration.jobs import registry as integration
from belltower_notifier.jobs import registry as notifier

pytestmark = pytest.mark.unit

REGISTERED = sorted({t.name for t in [*notifier, *integration]})


def test_every_registered_job_type_is_mapped_to_a_seed_task_or_is_belltowers_own() -> None:
    unmapped = [n for n in REGISTERED if n not in seedtasks.IMPLEMENTS and n not in seedtasks.OWN]
    assert unmapped == [], f"add these to belltower.seedtasks.IMPLEMENTS or OWN: {unmapped}"
    assert not set(seedtasks.IMPLEMENTS) & set(seedtasks.OWN)


def test_the_map_names_only_job_types_that_exist_and_tasks_the_seeds_list() -> None:
    assert sorted(set(seedtasks.IMPLEMENTS) - set(REGISTERED)) == []
    assert sorted(set(seedtasks.OWN) - set(REGISTERED)) == []
    listed = set(seedtasks.TASKS)
    for name, tasks in seedtasks.IMPLEMENTS.items():
        assert tasks, name
        for task in tasks:
            assert task in listed, f"{name}: {task} is not a task title of the seeds"


def test_the_seed_lists_have_no_repeats_and_both_catalogs() -> None:
    assert len(set(seedtasks.SONIS_TASKS)) == len(seedtasks.SONIS_TASKS) >= 70
    assert len(set(seedtasks.FOCUS_TASKS)) == len(seedtasks.FOCUS_TASKS) >= 100


def test_a_job_types_info_carries_its_family_and_seed_task() -> None:
    info = notifier.get("notifier.balance_due").info()  # type: ignore[union-attr]
    assert info.family == "Notifiers"
    assert info.seeds == [seedtasks.SeedTask(catalog="SONIS", title="Notifier: Balance Due")]
    canary = notifier.get("system.canary").info()  # type: ignore[union-attr]
    assert (canary.family, canary.seeds) == ("System", [])
    assert seedtasks.family_of("newfamily.job") == "Newfamily"


def test_coverage_counts_a_task_once_however_many_types_implement_it(capsys) -> None:
    rows = dict(seedtasks.coverage())
    neogov = seedtasks.SeedTask(catalog="Focus", title="NeoGov New Hires & NeoGov User Data")
    assert rows[neogov] == ["hr.neogov_new_hires", "hr.neogov_user_data"]
    assert seedtasks.main(["--markdown"]) == 0
    out = capsys.readouterr().out
    done = sum(1 for names in rows.values() if names)
    assert f"{done} of {len(seedtasks.TASKS)} seed tasks have a job type." in out
    assert "| Focus | NeoGov New Hires & NeoGov User Data | `hr.neogov_new_hires`, " in out


def _info(name: str, title: str, family: str, seeds: tuple[str, ...] = ()) -> JobTypeInfo:
    return JobTypeInfo(
        name=name,
        pool="notifier",
        title=title,
        description="",
        params_schema={},
        family=family,
        seeds=[seedtasks.SeedTask(catalog="Focus", title=s) for s in seeds],
    )


def test_the_chooser_groups_by_family_in_title_order_and_every_word_must_match() -> None:
    types = [
        _info("b.z", "Zeta", "Beta"),
        _info("a.y", "Yankee", "Alpha", ("Calculate Class Rank and GPA",)),
        _info("a.x", "X-ray", "Alpha"),
    ]
    assert [(f, [t.name for t in ts]) for f, ts in type_groups(types)] == [
        ("Alpha", ["a.x", "a.y"]),
        ("Beta", ["b.z"]),
    ]
    assert [t.name for _, ts in type_groups(types, "class GPA") for t in ts] == ["a.y"]
    assert [t.name for _, ts in type_groups(types, "RANK zeta") for t in ts] == []
    assert type_groups(types, "nothing") == []


def test_the_docs_page_is_the_modules_own_table(capsys) -> None:
    from pathlib import Path

    seedtasks.main(["--markdown"])
    table = capsys.readouterr().out
    page = (Path(__file__).parents[2] / "docs" / "seed-tasks.md").read_text()
    assert page.endswith(table), "regenerate: python -m belltower.seedtasks --markdown"


def test_every_task_not_built_says_why_and_only_those() -> None:
    unbuilt = {task for task, names in seedtasks.coverage() if not names}
    assert set(seedtasks.NOT_BUILT) == unbuilt
    assert all(len(why) > 20 and "\n" not in why for why in seedtasks.NOT_BUILT.values())
