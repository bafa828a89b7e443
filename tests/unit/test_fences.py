"""The fences on what a job definition names: batch paths, web addresses and templates.

These are the payloads an editor could type into a job (the trust-boundary issue's probes):
each is refused with the parameter's name and the accepted form, or is inert when rendered.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from belltower import fences, templates
from belltower.errors import InvalidInput

ESCAPES = [
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ self._TemplateReference__context }}",
    "{{ lipsum['__globals__']['os'].environ }}",
    "{% for x in ().__class__.__base__.__subclasses__() %}{{ x }}{% endfor %}",
]


@pytest.mark.parametrize("source", ESCAPES)
def test_sandbox_escapes_are_refused_when_saved(source: str) -> None:
    with pytest.raises(InvalidInput, match=r"^param\.subject: template .* names starting with '_'"):
        templates.check_template(source, "param.subject")


@pytest.mark.parametrize("source", ESCAPES)
def test_sandbox_escapes_render_inert_if_they_reach_a_worker(source: str) -> None:
    """Even past the save-time check (e.g. a row written straight into the database), the
    sandbox refuses, and the run fails with the parameter named instead of running code."""
    templates._problem.cache_clear()
    env = templates._ENVIRONMENTS[False]
    with pytest.raises(Exception) as caught:
        env.from_string(source).render(cycler=object, lipsum=lambda: None)
    assert "uid=" not in str(caught.value)


def test_the_environment_is_not_reachable() -> None:
    os.environ["BELLTOWER_TEST_SECRET"] = "s3cret"
    try:
        for source in ("{{ environ }}", "{{ os.environ }}", "{{ config }}"):
            with pytest.raises(InvalidInput, match=r"param\.message: .*undefined"):
                templates.render(source, "param.message", {"first_name": "Ada"})
    finally:
        del os.environ["BELLTOWER_TEST_SECRET"]


def test_mutating_methods_are_refused() -> None:
    with pytest.raises(InvalidInput, match=r"param\.message: .*refused by the sandbox"):
        templates.render("{{ rows.append(1) }}", "param.message", {"rows": []})


def test_plain_templates_render_with_filters_and_loops() -> None:
    out = templates.render(
        "{{ count | counted('student') }}: {% for r in rows %}{{ r.name }} {% endfor %}",
        "param.message",
        {"count": 2, "rows": [{"name": "Ada"}, {"name": "Grace"}]},
    )
    assert out == "2 students: Ada Grace "


def test_html_templates_escape() -> None:
    assert templates.render("<p>{{ x }}</p>", "f", {"x": "<script>"}, html=True) == (
        "<p>&lt;script&gt;</p>"
    )


def test_output_and_time_are_bounded() -> None:
    with pytest.raises(InvalidInput, match=r"param\.message: .*more than 1,000 characters"):
        templates.render(
            "{% for i in range(100000) %}xxxxxxxxxx{% endfor %}",
            "param.message",
            {},
            max_chars=1000,
        )
    with pytest.raises(InvalidInput, match=r"param\.message: .*ran longer than"):
        templates.render(
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
            "param.message",
            {},
            max_seconds=0.2,
        )


def test_deep_loops_huge_source_and_syntax_errors_are_refused() -> None:
    deep = "{% for a in x %}{% for b in x %}{% for c in x %}{% for d in x %}{% endfor %}{% endfor %}{% endfor %}{% endfor %}"
    with pytest.raises(InvalidInput, match="nests loops more than 3 deep"):
        templates.check_template(deep, "param.message")
    with pytest.raises(InvalidInput, match="longer than 10,000 characters"):
        templates.check_template("x" * 10_001, "param.message")
    with pytest.raises(InvalidInput, match=r"param\.subject: .*does not parse"):
        templates.check_template("Hello {{ first_name", "param.subject")


@pytest.mark.parametrize(
    "value",
    ["/etc", "/etc/passwd", "../etc", "a/../../b", "~root", "C:\\Windows", "a\\..\\b", "x\x00y",
     "new\nline", "x" * 1025],
)  # fmt: skip
def test_paths_that_could_leave_the_batch_folder_are_refused(value: str) -> None:
    with pytest.raises(InvalidInput, match=r"^param\.folder: ") as caught:
        fences.check_relative(value, "param.folder")
    assert caught.value.accepted == fences.PATH_FORM


@pytest.mark.parametrize("value", ["", "exports", "exports/daily", "a b/c.csv", "./x"])
def test_relative_paths_are_accepted(value: str) -> None:
    fences.check_relative(value, "param.folder")


def test_a_symlink_leading_out_is_refused_at_run_time(tmp_path: Path) -> None:
    base = tmp_path / "batch"
    (base / "exports").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (base / "escape").symlink_to(tmp_path / "outside")
    (base / "inner").symlink_to(base / "exports")
    assert fences.confine(base, "exports", "param.folder") == base / "exports"
    assert fences.confine(base, "inner", "param.folder") == base / "inner"
    with pytest.raises(InvalidInput, match=r"param\.folder: 'escape' resolves outside"):
        fences.confine(base, "escape", "param.folder")
    with pytest.raises(InvalidInput, match=r"param\.folder: 'escape/x.csv' resolves outside"):
        fences.confine(base, "escape/x.csv", "param.folder")


@pytest.mark.parametrize(
    "url",
    ["http://example.org/a.ics", "file:///etc/passwd", "gopher://example.org/", "ftp://x.org/",
     "https://127.0.0.1/", "https://localhost/", "https://app.localhost/", "https://[::1]/",
     "https://169.254.169.254/latest/meta-data/", "https://metadata.google.internal/",
     "https://10.0.0.5/", "https://192.168.1.1/", "https://172.16.0.1/", "https://0.0.0.0/",
     "https://[::ffff:127.0.0.1]/", "https://100.64.0.1/", "https://user:pw@example.org/",
     "https://intranet/", "https://example.org:0/", "https://exa mple.org/", "https://x.org/\r\n"],
)  # fmt: skip
def test_urls_the_worker_must_not_fetch_are_refused(url: str) -> None:
    with pytest.raises(InvalidInput, match=r"^param\.source: ") as caught:
        fences.check_url(url, "param.source")
    assert caught.value.accepted == fences.URL_FORM


def test_public_https_and_site_allowances() -> None:
    assert fences.check_url("https://calendar.example.org/a.ics", "f").startswith("https://")
    assert fences.check_url("webcal://calendar.example.org/a.ics", "f") == (
        "https://calendar.example.org/a.ics"
    )
    assert fences.check_url("https://93.184.215.14/x", "f")
    assert fences.check_url("http://example.org/", "f", allow_http=True)
    assert fences.check_url("https://lms.internal/", "f", allow_hosts=["lms.internal"])
    assert fences.check_url("http://10.20.1.2/", "f", allow_http=True, allow_hosts=["10.20.0.0/16"])
    with pytest.raises(InvalidInput):
        fences.check_url("http://10.21.1.2/", "f", allow_http=True, allow_hosts=["10.20.0.0/16"])


def test_addresses_are_checked_after_resolution() -> None:
    fences.check_address("calendar.example.org", "93.184.215.14", "f")
    for address in ("127.0.0.1", "10.1.2.3", "169.254.169.254", "::1", "fe80::1%eth0", "fd00::1"):
        with pytest.raises(InvalidInput, match=r"^f: calendar\.example\.org resolves to"):
            fences.check_address("calendar.example.org", address, "f")
    fences.check_address("standin", "127.0.0.1", "f", allow_hosts=["127.0.0.1"])


def test_the_scheduler_checks_the_formats_from_the_parameter_schema() -> None:
    import msgspec

    class Params(msgspec.Struct):
        folder: fences.BatchPath = ""
        source: fences.BatchPathOrUrl = "cal.ics"
        subject: templates.TemplateText = ""

    schema = msgspec.json.schema(Params)
    validator = Draft202012Validator(schema, format_checker=fences.format_checker())
    ok = {"folder": "exports", "source": "https://example.org/c.ics", "subject": "Hi {{ name }}"}
    assert list(validator.iter_errors(ok)) == []
    for bad in ({"folder": "/etc"}, {"source": "http://127.0.0.1/"}, {"source": "../x"},
                {"subject": ESCAPES[0]}):  # fmt: skip
        [error] = list(validator.iter_errors(bad))
        assert isinstance(error.cause, InvalidInput), bad
