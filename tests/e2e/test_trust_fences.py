"""What an editor types into a job is data: the template, path and URL payloads of the
trust-boundary review are refused when the job is saved, naming the parameter, and nothing
is stored."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow

PAYLOADS = [
    ("notifier.balance_due", "subject={{ cycler.__init__.__globals__.os.popen('id').read() }}",
     "param.subject", "names starting with '_'"),
    ("notifier.balance_due", "message={{ lipsum['__globals__'] }}", "param.message", "'__globals__'"),
    ("notifier.birthday", "greeting=Hi {{ first_name", "param.greeting", "does not parse"),
    ("files.batch_folder_cleanup", "folder=/etc", "param.folder", "leaves the batch folder"),
    ("files.batch_folder_cleanup", "pattern=../../*", "param.pattern", "leaves the batch folder"),
    ("exports.name_csv", "folder=../../tmp", "param.folder", "leaves the batch folder"),
    ("calendar.import_ics", "source=http://169.254.169.254/latest/meta-data/", "param.source",
     "link-local"),
    ("calendar.import_ics", "source=https://localhost/x.ics", "param.source", "not a public host"),
    ("calendar.import_ics", "source=file:///etc/passwd", "param.source", "file is not allowed"),
    ("calendar.import_ics", "source=/etc/passwd", "param.source", "leaves the batch folder"),
]  # fmt: skip


def test_payloads_are_refused_when_saved(stack, cli) -> None:
    types = {t["name"] for t in cli.json("job-types")}
    for job_type, param, field, reason in PAYLOADS:
        assert job_type in types, job_type
        result = cli.run(
            "jobs", "create", "--type", job_type, "--title", "Probe", "--every", "1d",
            "--param", param, check=False,
        )  # fmt: skip
        assert result.returncode == 2, (param, result.stdout, result.stderr)
        assert field in result.stderr and reason in result.stderr, (param, result.stderr)
    assert cli.json("jobs", "list") == []
