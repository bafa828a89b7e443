"""``belltower job-types``: what the running workers can run."""

from __future__ import annotations

import json

import typer

from ..api import JobTypeInfo
from .options import JsonFlag, ProfileOpt
from .output import print_json
from .remote import call


def job_types(json_out: JsonFlag = False, profile: ProfileOpt = None) -> None:
    """List the job types the running workers can run, with their parameters."""
    types = call(profile, lambda api: api.get("/job-types", list[JobTypeInfo]))
    if json_out:
        print_json(types)
        return
    if not types:
        typer.echo(
            "No job types: no worker has registered yet. Start the workers (e.g. `make dev`)."
        )
        return
    family: str | None = None
    for info in sorted(types, key=lambda t: (t.family or "Other", t.title.casefold())):
        if (info.family or "Other") != family:
            typer.echo(("" if family is None else "\n") + f"== {info.family or 'Other'} ==")
            family = info.family or "Other"
        typer.echo(f"{info.name}  [{info.pool}]  {info.title}")
        if info.description:
            typer.echo(f"    {info.description}")
        seeds = "; ".join(f"{s.catalog} “{s.title}”" for s in info.seeds)
        typer.echo(f"    seed task: {seeds or 'none (Belltower’s own)'}")
        if info.concurrency_key:
            typer.echo(
                f"    concurrency: {info.concurrency_limit} at once per {info.concurrency_key} "
                "(--concurrency-key/--concurrency-limit change it)"
            )
        for name, spec in _params(info).items():
            typer.echo(f"    --param {name}=…  {spec}")


def _params(info: JobTypeInfo) -> dict[str, str]:
    schema = info.params_schema
    root = schema.get("$defs", {}).get(schema.get("$ref", "").removeprefix("#/$defs/"), schema)
    out = {}
    for name, prop in root.get("properties", {}).items():
        kinds = [
            p.get("type") or "|".join(map(str, p.get("enum", ["?"])))
            for p in prop.get("anyOf", [prop])
        ]
        default = (
            f" (default {json.dumps(prop['default'])})" if "default" in prop else " (required)"
        )
        about = f": {prop['description']}" if prop.get("description") else ""
        out[name] = "/".join(map(str, kinds)) + default + about
    return out
