"""The Prefect dashboard in a real browser (headless Chromium, driven by Playwright): a calculation's
flow run page shows its artifact, as an operator would see it. The screenshot is kept
(docs/dashboard-artifact.png is one)."""

from __future__ import annotations

import base64
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from workflows.tests.test_integration import TERMINAL, Api

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def api(live_server: Any, calculation_worker: None, dispatching: None) -> Api:
    return Api(live_server.url)


def test_the_dashboard_shows_a_calculations_artifact(api: Api, prefect_server: str, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    assert chromium, "chromium is missing: ./taskw installs it (scripts/bootstrap.sh)"
    calc = api.submit("obabel", {"molecules": api.upload("ui.smi", b"CC(=O)O ui\n")}, {}, use_cache=False)
    done = api.wait_for(calc.json()["id"], TERMINAL)
    assert done["state"] == "COMPLETE"
    dashboard = prefect_server.removesuffix("/api")
    # what the dashboard's login form stores: base64 of the server's user:password
    secret = base64.b64encode(os.environ["PREFECT_API_AUTH_STRING"].encode()).decode()
    shot = tmp_path / "dashboard-artifact.png"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            page.add_init_script(f"window.localStorage.setItem('prefect-password', '{secret}')")
            page.goto(f"{dashboard}/runs/flow-run/{done['flow_run_id']}", wait_until="networkidle")
            try:
                page.get_by_text(f"calc-{done['id']}").first.wait_for(timeout=30_000)
                page.get_by_text("Artifacts", exact=True).first.click()
                card = page.get_by_text("obabel 3.1.1: COMPLETE", exact=False).first
                card.wait_for(timeout=30_000)  # the artifact's card on the flow run's page
                card.click()  # its page: the table itself, with the output and its download link
                page.get_by_text("molecules.sdf", exact=False).first.wait_for(timeout=30_000)
            finally:
                page.screenshot(path=str(shot), full_page=True)
                if kept := os.environ.get("EMGAPI_KEEP_SCREENSHOT"):
                    shutil.copy(shot, kept)
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000
