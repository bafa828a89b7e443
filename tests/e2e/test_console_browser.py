"""The web console in a real headless Chromium (Debian's, driven by Playwright) against real services."""

from __future__ import annotations

import re
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

playwright_api = pytest.importorskip("playwright.sync_api")

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser(console_stack) -> Iterator[object]:
    """Module-scoped: Playwright's sync API runs an event loop in this thread while it is open,
    which would stop every later asyncio test of the session from starting its own."""
    if not shutil.which(CHROMIUM) and not __import__("os").path.exists(CHROMIUM):
        pytest.skip(
            "chromium is not installed: `make install` installs it (apt-get install chromium)"
        )
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            yield browser
        finally:
            browser.close()


def new_page(browser, base: str):  # type: ignore[no-untyped-def]
    context = browser.new_context(base_url=base, viewport={"width": 1366, "height": 768})
    context.set_default_timeout(15_000)
    return context.new_page()


def log_in(page, username: str, password: str) -> None:  # type: ignore[no-untyped-def]
    page.goto("/jobs")
    expect = playwright_api.expect
    expect(page).to_have_url(re.compile(r"/login\?next="))
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Jobs", exact=True)).to_be_visible()


def test_create_a_job_in_the_form_run_it_and_read_its_output(console_stack, browser) -> None:
    expect = playwright_api.expect
    page = new_page(browser, console_stack.url)
    log_in(page, *console_stack.admin)
    title = f"Browser canary {uuid.uuid4().hex[:6]}"

    page.get_by_role("link", name="New job").click()
    page.get_by_role("link", name=re.compile("Canary")).click()
    page.get_by_label("Frequency").select_option("every")
    page.get_by_label("Every", exact=True).fill("1h")
    page.get_by_role("button", name="Preview next runs").click()
    expect(page.locator("#preview ol li")).to_have_count(10)
    expect(page.get_by_label("Every", exact=True)).to_have_value("1h")
    page.get_by_label("Priority").fill("-4")
    page.get_by_label("Message").fill("from the browser")
    page.get_by_label("E-mail each run's result to").fill("registrar@school.edu, nobody")
    page.get_by_role("button", name="Create job").click()

    # Refused: the messages sit next to their fields, and nothing was created.
    expect(page.locator("#title-error")).to_contain_text("must not be empty")
    expect(page.locator("#priority-error")).to_contain_text("out of range")
    expect(page.get_by_label("Title")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Message")).to_have_value("from the browser")
    expect(page.locator("#result_emails-error")).to_contain_text(
        "'nobody' is not an e-mail address"
    )
    page.get_by_label("E-mail each run's result to").fill("registrar@school.edu")
    page.get_by_label("Which runs").select_option("always")

    page.get_by_label("Title").fill(title)
    page.get_by_label("Priority").fill("650")
    page.get_by_role("button", name="Create job").click()
    expect(page.get_by_role("heading", name=title)).to_be_visible()
    expect(page.locator("dl.details")).to_contain_text("every hour")
    expect(page.locator("ol.preview li")).to_have_count(10)

    page.get_by_role("button", name="Run now").click()
    expect(page.get_by_text("Succeeded").first).to_be_visible(timeout=30_000)
    expect(page.locator("pre.output-text")).to_contain_text("canary from the browser")
    mail = console_stack.mail.wait_for_sync(lambda m: title in m["Subject"], timeout=30)
    assert mail.envelope_to == ["registrar@school.edu"]
    assert "Trigger:   Run now by admin from 127.0.0.1" in mail.get_body(("plain",)).get_content()

    page.get_by_role("link", name="Execution history").click()
    row = page.get_by_role("row").filter(has_text=title)
    expect(row).to_contain_text("Run now by admin from 127.0.0.1")
    expect(row).to_contain_text("Succeeded")
    row.get_by_role("link", name=re.compile("View output")).click()
    expect(page.locator("pre.output-text")).to_contain_text("canary from the browser")
    page.get_by_role("link", name="Back to list").click()

    page.get_by_label("Job").select_option(label=title)
    page.get_by_role("button", name="Search").click()
    expect(page.locator("table.runs tbody tr")).to_have_count(1)
    page.context.close()


def test_a_viewer_sees_no_edit_controls(console_stack, browser) -> None:
    expect = playwright_api.expect
    base = console_stack.url + "/api/v1"
    with httpx.Client(base_url=base, timeout=20) as api:
        login = api.post(
            "/login", json={"username": console_stack.admin[0], "password": console_stack.admin[1]}
        )
        headers = {"X-CSRF-Token": login.json()["csrf_token"]}
        name = f"viewer{uuid.uuid4().hex[:6]}"
        api.post(
            "/users",
            json={"username": name, "password": "viewer-password-1", "role": "viewer"},
            headers=headers,
        )
        job = api.post(
            "/jobs",
            json={
                "type": "system.canary",
                "title": f"Viewer sees {name}",
                "schedule": {
                    "rule": {"kind": "daily", "times": ["07:30"], "weekdays": ["mon", "fri"]}
                },
            },
            headers=headers,
        ).json()

    page = new_page(browser, console_stack.url)
    log_in(page, name, "viewer-password-1")
    # Other tests leave thousands of jobs in the shared stack: find this one by its title.
    page.goto(f"/jobs?q={name}")
    row = page.get_by_role("row").filter(has_text=job["title"])
    expect(row).to_contain_text("Mon, Fri")
    expect(page.get_by_role("link", name="New job")).to_have_count(0)
    expect(page.get_by_role("button", name=re.compile("Run now|Pause|Resume"))).to_have_count(0)
    expect(page.get_by_role("link", name=re.compile("^(Edit|Delete)"))).to_have_count(0)
    expect(page.get_by_role("link", name="Users & tokens")).to_have_count(0)

    page.get_by_role("link", name=job["title"]).click()
    expect(page.get_by_role("heading", name=job["title"])).to_be_visible()
    expect(page.get_by_role("button")).to_have_count(1)  # only "Log out"
    page.goto("/transfer")
    expect(page.get_by_role("button", name="Import")).to_have_count(0)
    page.goto(f"/jobs/{job['id']}/edit")
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    page.context.close()


def test_a_job_whose_type_is_gone_is_highlighted_with_the_reason(console_stack, browser) -> None:
    """The integration pool stops advertising a type (as after an upgrade that removed it)."""
    import asyncio
    import json
    from concurrent.futures import ThreadPoolExecutor

    import nats

    from belltower.subjects import CATALOG_BUCKET

    expect = playwright_api.expect
    base = console_stack.url + "/api/v1"
    with httpx.Client(base_url=base, timeout=20) as api:
        login = api.post(
            "/login", json={"username": console_stack.admin[0], "password": console_stack.admin[1]}
        )
        headers = {"X-CSRF-Token": login.json()["csrf_token"]}
        job = api.post(
            "/jobs",
            json={
                "type": "files.batch_folder_cleanup",
                "title": f"Cleanup {uuid.uuid4().hex[:6]}",
                "schedule": {"rule": {"kind": "every", "seconds": 86400}},
            },
            headers=headers,
        ).json()

    async def set_catalog(change) -> bytes:  # type: ignore[no-untyped-def]
        nc = await nats.connect(console_stack.stack.env["BELLTOWER_NATS_URL"])
        try:
            bucket = await nc.jetstream().key_value(CATALOG_BUCKET)
            old = (await bucket.get("pool.integration")).value
            await bucket.put("pool.integration", change(old))
            return old
        finally:
            await nc.close()

    def without_cleanup(value: bytes) -> bytes:
        return json.dumps(
            [t for t in json.loads(value) if t["name"] != "files.batch_folder_cleanup"]
        ).encode()

    def in_thread(coro):  # type: ignore[no-untyped-def]
        """Playwright's sync API keeps an event loop running in this thread."""
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, coro).result()

    original = in_thread(set_catalog(without_cleanup))
    try:
        page = new_page(browser, console_stack.url)
        log_in(page, *console_stack.admin)
        page.wait_for_timeout(2500)  # the scheduler caches the catalog for 2 s
        page.goto("/jobs?state=not_installed")
        row = page.get_by_role("row").filter(has_text=job["title"])
        expect(row).to_have_class(re.compile("missing"))
        expect(row).to_contain_text("Type not installed")
        expect(row).to_contain_text("No worker provides it")
        row.get_by_role("link", name=job["title"], exact=True).click()
        expect(page.get_by_role("alert")).to_contain_text("is not installed")
        page.context.close()
    finally:
        in_thread(set_catalog(lambda _: original))


def test_the_job_type_chooser_groups_by_family_and_filters_as_one_types(
    console_stack, browser
) -> None:
    expect = playwright_api.expect
    page = new_page(browser, console_stack.url)
    log_in(page, *console_stack.admin)
    page.goto("/jobs/new")
    expect(page.get_by_role("heading", name=re.compile(r"^Notifiers \(\d+\)$"))).to_be_visible()
    expect(page.get_by_role("heading", name=re.compile(r"^System \(\d+\)$"))).to_be_visible()
    every = page.locator("[data-type-text]").count()
    assert every >= 30

    page.get_by_label("Search job types").fill("birthday")
    expect(page.locator("[data-type-text]:visible")).to_have_count(1)
    expect(page.locator("[data-type-count]")).to_have_text(f"1 of {every} job types")
    expect(page.get_by_role("heading", name=re.compile(r"^System"))).to_be_hidden()
    page.get_by_label("Search job types").fill("")
    expect(page.locator("[data-type-text]:visible")).to_have_count(every)

    # Without scripts the search button asks the server, which filters the same way.
    page.get_by_label("Search job types").fill("seed-task-nobody-has")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_text("No job type matches “seed-task-nobody-has”")).to_be_visible()

    page.goto("/jobs/new?q=birthday")
    page.get_by_role("link", name="about this type").click()
    expect(page.get_by_role("heading", name=re.compile("Notifier: Birthday"))).to_be_visible()
    expect(page.get_by_text("SONIS: “Notifier: Birthday”")).to_be_visible()
    expect(page.get_by_role("cell", name="greeting", exact=True)).to_be_visible()
    page.get_by_role("link", name="New job of this type").click()
    expect(page.get_by_role("link", name="About this job type")).to_be_visible()


def test_jobs_pages_by_cursor_and_a_calendar_what_if(console_stack, browser) -> None:
    """The Jobs tab pages on the server (Next, Previous keep the search and sort), and a
    calendar's page shows what a snow day would do to its jobs' runs before it is added."""
    from tests.e2e.test_console_api import canary

    expect = playwright_api.expect
    tag = uuid.uuid4().hex[:8]
    api = httpx.Client(
        base_url=console_stack.url + "/api/v1",
        headers={"Authorization": f"Bearer {console_stack.cli.env['BELLTOWER_API_TOKEN']}"},
        timeout=20,
    )
    calendar = f"browser-{tag}"
    assert api.post("/calendars", json={"name": calendar}).status_code == 201
    weekdays = {
        "kind": "daily",
        "times": ["08:00"],
        "weekdays": ["mon", "tue", "wed", "thu", "fri"],
    }
    docs = [canary(f"Paged {tag} {i:02d}", paused=True) for i in range(29)]
    docs.append(
        canary(f"Paged {tag} 29", schedule={"rule": weekdays, "tz": "UTC", "calendar": calendar})
    )
    imported = api.post("/import", json=docs)
    assert imported.status_code == 200, imported.text

    page = new_page(browser, console_stack.url)
    log_in(page, *console_stack.admin)
    page.goto(f"/jobs?q={tag}&sort=-title")
    rows = page.locator("table.jobs tbody tr")
    expect(rows).to_have_count(25)
    expect(rows.first).to_contain_text(f"Paged {tag} 29")
    page.get_by_role("link", name="Next", exact=True).click()
    expect(rows).to_have_count(5)
    expect(rows.last).to_contain_text(f"Paged {tag} 00")
    page.get_by_role("link", name="Previous", exact=True).click()
    expect(rows).to_have_count(25)
    expect(rows.first).to_contain_text(f"Paged {tag} 29")

    page.goto(f"/calendars/{calendar}")
    today = datetime.now(UTC).date()
    monday = today + timedelta(days=14 - today.weekday())
    page.get_by_label("Days to add").fill(monday.isoformat())
    page.get_by_label("Label").fill("Snow day")
    page.get_by_role("button", name="Show what would change").click()
    result = page.locator("table.diff tbody tr")
    expect(result).to_have_count(1)
    expect(result.first).to_contain_text("skipped")
    expect(page.get_by_role("status")).to_contain_text("1 skipped")
    assert api.get(f"/calendars/{calendar}").json()["days"] == [], "a what-if saves nothing"
    page.context.close()
    api.close()
