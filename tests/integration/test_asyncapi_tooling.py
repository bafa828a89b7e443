"""docs/asyncapi.yaml checked by the AsyncAPI project's own validator.

``tools/asyncapi`` pins ``@asyncapi/parser``, the library ``asyncapi validate`` (the npm
``@asyncapi/cli``) validates with, and its default ruleset: the CLI itself is 1.5 GB of
node_modules, the parser 54 MB. It is installed once per lock file into ``.cache/`` with
``npm ci`` from the npm registry.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from belltower import asyncapi

REPO = Path(__file__).resolve().parents[2]
TOOL = REPO / "tools" / "asyncapi"


@pytest.fixture(scope="session")
def validator() -> Path:
    """The validator script inside an installed copy of ``tools/asyncapi``."""
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        if os.environ.get("CI"):
            pytest.fail("node and npm are needed to validate the AsyncAPI document")
        pytest.skip("node and npm are not installed")
    lock = (TOOL / "package-lock.json").read_bytes()
    home = REPO / ".cache" / "asyncapi" / hashlib.sha256(lock).hexdigest()[:16]
    home.mkdir(parents=True, exist_ok=True)
    with (home / ".lock").open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        if not (home / "node_modules" / "@asyncapi" / "parser").is_dir():
            for name in ("package.json", "package-lock.json"):
                shutil.copy(TOOL / name, home / name)
            subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=home, check=True, timeout=600,
            )  # fmt: skip
        shutil.copy(TOOL / "validate.mjs", home / "validate.mjs")
    return home / "validate.mjs"


def validate(validator: Path, document: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["node", str(validator), str(document)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_the_asyncapi_document_passes_the_asyncapi_validator(validator: Path) -> None:
    done = validate(validator, REPO / "docs" / "asyncapi.yaml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "parsed, 0 errors or warnings" in done.stdout


def test_the_validator_refuses_what_asyncapi_refuses(validator: Path, tmp_path: Path) -> None:
    """The check can fail: OpenAPI's discriminator object (what msgspec writes) is not AsyncAPI."""
    document = asyncapi.to_yaml().replace(
        "discriminator: kind", "discriminator:\n            propertyName: kind", 1
    )
    assert "propertyName: kind" in document
    broken = tmp_path / "asyncapi.yaml"
    broken.write_text(document)
    done = validate(validator, broken)
    assert done.returncode == 1, done.stdout + done.stderr
    assert '"discriminator" property type must be string' in done.stdout


def test_event_messages_have_their_real_names() -> None:
    document = asyncapi.document()
    messages = document["components"]["messages"]
    assert set(messages) == {
        "DueOccurrence",
        "RunFinished",
        "RunProgress",
        "RunStarted",
        "JobFailing",
        "JobRecovered",
        "RunOverdue",
    }
    for key, message in messages.items():
        assert message["name"] == key
        assert message["payload"] == {"$ref": f"#/components/schemas/{key}"}
    finished = document["channels"]["runFinished"]["messages"]
    assert finished == {"RunFinished": {"$ref": "#/components/messages/RunFinished"}}
    assert document["operations"]["runFinished"]["messages"] == [
        {"$ref": "#/channels/runFinished/messages/RunFinished"}
    ]
