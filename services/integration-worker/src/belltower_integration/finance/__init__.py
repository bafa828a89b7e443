"""Billing and financial-aid files: the SONIS seed's billing, Nelnet, PowerFAIDS, Regent, JFA,
PeopleSoft and Conclusive jobs (docs/billing-and-aid.md)."""

from __future__ import annotations

from typing import Any

from belltower.jobtypes import JobType

from . import exports, nelnet, peoplesoft, regent

JOB_TYPES: tuple[JobType[Any], ...] = (
    *exports.JOB_TYPES,
    regent.job_type,
    *nelnet.JOB_TYPES,
    peoplesoft.job_type,
)

__all__ = ["JOB_TYPES"]
