"""The billing and aid jobs' parameters are refused when the job is saved, naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from belltower.errors import InvalidInput
from belltower_integration.jobs import registry
from belltower_scheduler.catalog import validate_params

pytestmark = pytest.mark.unit

SFTP = {"host": "sftp.nelnet.example", "username": "school", "password_secret": "nelnet-password"}


@pytest.mark.parametrize(
    ("job_type", "params", "field"),
    [
        ("finance.billing_summary", {"folder": "../elsewhere"}, "param.folder"),
        ("finance.billing_summary", {"file_name": "a/b.csv"}, "param.file_name"),
        ("finance.billing_summary", {"columns": ["Social Security Number"]}, "param.columns.0"),
        ("finance.powerfaids_export", {"folder": "/etc"}, "param.folder"),
        ("finance.nelnet_batch_import", {"transactions_pattern": "../*.txt"}, "param.transactions_pattern"),
        ("finance.nelnet_batch_download", {"sftp": SFTP | {"host": "h;rm -rf"}}, "param.sftp.host"),
        ("finance.nelnet_batch_download", {"sftp": SFTP | {"password_secret": "../x"}}, "param.sftp.password_secret"),
        ("finance.nelnet_batch_download", {"sftp": SFTP, "max_files": 100000}, "param.max_files"),
        ("finance.peoplesoft_export", {"accounts": {"TUIT": "not an account"}}, "param.accounts.TUIT"),
        ("finance.regent_award_disbursement", {"settle_s": -1}, "param.settle_s"),
    ],
)  # fmt: skip
def test_a_bad_parameter_is_refused_at_save_time(
    job_type: str, params: dict[str, Any], field: str
) -> None:
    kind = registry.get(job_type)
    assert kind is not None
    with pytest.raises(InvalidInput) as refused:
        validate_params(kind.info(), params)
    assert refused.value.field.startswith(field)


def test_the_defaults_are_accepted() -> None:
    for name in (
        "finance.billing_summary",
        "finance.nelnet_ebill_export",
        "finance.nelnet_refund_process",
    ):
        kind = registry.get(name)
        assert kind is not None
        assert validate_params(kind.info(), {}) == {}
    download = registry.get("finance.nelnet_batch_download")
    assert download is not None and validate_params(download.info(), {"sftp": SFTP})["sftp"] == SFTP
