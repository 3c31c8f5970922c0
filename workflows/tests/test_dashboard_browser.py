"""The Prefect dashboard in a real browser (headless Chromium, driven by Playwright): a calculation's
flow run page shows its artifact, as an operator would see it, and its output link leads to the Django
admin (after its login), which shows the output, its download and the tool's stderr. With
EMGAPI_SCREENSHOTS=<dir>, each page's screenshot is kept there (docs/screenshots/ holds a set)."""

from __future__ import annotations

import base64
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from workflows.tests.test_integration import TERMINAL, Api

pytestmark = [pytest.mark.integration, pytest.mark.system, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def api(live_server: Any, calculation_worker: None, dispatching: None) -> Api:
    return Api(live_server.url)


@contextmanager
def dashboard_page(prefect_server: str, shot: Path) -> Iterator[tuple[Any, str]]:
    """A logged-in dashboard page in headless Chromium; its screenshot is taken at the end."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    assert chromium, "chromium is missing: ./taskw installs it (scripts/bootstrap.sh)"
    # what the dashboard's login form stores: base64 of the server's user:password
    secret = base64.b64encode(os.environ["PREFECT_API_AUTH_STRING"].encode()).decode()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            page.add_init_script(f"window.localStorage.setItem('prefect-password', '{secret}')")
            try:
                yield page, prefect_server.removesuffix("/api")
            finally:
                page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()


def _menu(page: Any, item: str) -> None:
    """An item of the flow run page's menu (the ⋮ button at the top right)."""
    page.locator(".flow-run-header button, .page-heading button").last.click()
    page.get_by_text(item, exact=True).last.click()


def _shoot(page: Any, folder: Path, name: str) -> Path:
    """A screenshot of the whole page, kept in $EMGAPI_SCREENSHOTS too if set."""
    shot = folder / name
    page.screenshot(path=str(shot), full_page=True)
    if kept := os.environ.get("EMGAPI_SCREENSHOTS"):
        Path(kept).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(kept) / name)
    return shot


def test_an_operator_follows_an_artifacts_output_link_to_the_admin(
    api: Api, prefect_server: str, tmp_path: Path
) -> None:
    from django.contrib.auth import get_user_model

    calc = api.submit("obabel", {"molecules": api.upload("ui.smi", b"CC(=O)O ui\n")}, {}, use_cache=False)
    done = api.wait_for(calc.json()["id"], TERMINAL)
    assert done["state"] == "COMPLETE"
    get_user_model().objects.create_superuser("browser-staff", password="a-long-password-1")
    with dashboard_page(prefect_server, tmp_path / "last.png") as (page, dashboard):
        page.goto(f"{dashboard}/runs/flow-run/{done['flow_run_id']}", wait_until="networkidle")
        page.get_by_text(f"calc-{done['id']}").first.wait_for(timeout=30_000)
        page.get_by_text("Artifacts", exact=True).first.click()
        card = page.get_by_text("obabel 3.1.1: COMPLETE", exact=False).first
        card.wait_for(timeout=30_000)  # the artifact's card on the flow run's page
        _shoot(page, tmp_path, "1-dashboard-flow-run-artifacts.png")
        card.click()  # its page: the table itself, each file a link to its admin page
        output = page.get_by_role("link", name="molecules.sdf").first
        output.wait_for(timeout=30_000)
        _shoot(page, tmp_path, "2-dashboard-artifact-table.png")
        with page.context.expect_page() as opened:  # the dashboard opens links in a new tab
            output.click()
        admin = opened.value
        admin.wait_for_load_state()
        # not signed in to the admin yet: its login page, which returns to the output's page
        assert "/admin/login/" in admin.url
        _shoot(admin, tmp_path, "3-admin-login.png")
        admin.fill("#id_username", "browser-staff")
        admin.fill("#id_password", "a-long-password-1")
        admin.locator("input[type=submit]").click()
        admin.wait_for_load_state()
        assert "/admin/calculations/file/" in admin.url
        admin.get_by_text("1 molecule converted").first.wait_for(timeout=10_000)  # the tool's stderr
        _shoot(admin, tmp_path, "4-admin-output.png")
        with admin.expect_download() as downloading:
            admin.get_by_role("link", name="download molecules.sdf").click()
        download = downloading.value
        assert download.suggested_filename == "molecules.sdf"
        assert b"V2000" in Path(download.path()).read_bytes()
        admin.get_by_role("link", name="obabel 3.1.1").click()  # its calculation's page
        admin.wait_for_load_state()
        admin.get_by_text("Provenance", exact=True).first.wait_for(timeout=10_000)
        assert admin.get_by_text("1 molecule converted").count() >= 1
        shot = _shoot(admin, tmp_path, "5-admin-calculation.png")
    assert shot.stat().st_size > 10_000


def test_an_operator_cancels_a_running_calculation_with_the_dashboards_cancel(
    api: Api, prefect_server: str, tmp_path: Path
) -> None:
    from workflows.tests.test_operators import _long_genome

    calc = api.submit(
        "prodigal", {"contigs": api.upload("long.fna", _long_genome())}, {"mode": "meta"}, use_cache=False
    )
    running = api.wait_for(calc.json()["id"], {"RUNNING"}, timeout_seconds=60)
    with dashboard_page(prefect_server, tmp_path / "cancel.png") as (page, dashboard):
        page.goto(f"{dashboard}/runs/flow-run/{running['flow_run_id']}", wait_until="networkidle")
        page.get_by_text(f"calc-{running['id']}").first.wait_for(timeout=30_000)
        _menu(page, "Cancel")
        page.get_by_role("dialog").get_by_role("button", name="Confirm").click()  # the "Cancel Flow Run" dialog
        final = api.wait_for(running["id"], TERMINAL, timeout_seconds=30)
    assert final["state"] == "CANCELED"


def test_an_operator_resumes_a_paused_run_with_the_dashboards_form(
    api: Api, prefect_server: str, tmp_path: Path
) -> None:
    from workflows.orchestration.deployments import deploy
    from workflows.tests.test_operators import _hmmsearch_params, _uploads
    from workflows.tests.test_workflows import run_workflow, wait_run

    deploy(["choose_profile"])
    genome, profile = _uploads(api)
    run = run_workflow(api, "choose-profile", {"genomes": [genome]})
    paused = wait_run(api, run["id"], {"PAUSED", *TERMINAL}, timeout_seconds=120)
    assert paused["state"] == "PAUSED", paused["error"]
    with dashboard_page(prefect_server, tmp_path / "resume.png") as (page, dashboard):
        page.goto(f"{dashboard}/runs/flow-run/{paused['flow_run_id']}", wait_until="networkidle")
        page.get_by_text(f"wf-{run['id']}").first.wait_for(timeout=30_000)
        _menu(page, "Resume")
        dialog = page.get_by_role("dialog")
        dialog.get_by_text("Choose the", exact=False).first.wait_for(timeout=30_000)  # the pause's description
        dialog.locator("input[type=number]").first.fill("0.002")  # the form: the pause's model
        dialog.locator("textarea").first.fill(profile)
        dialog.get_by_role("button", name="Submit").click()
        final = wait_run(api, run["id"], timeout_seconds=120)
    assert final["state"] == "COMPLETE", final["error"]
    assert _hmmsearch_params(api, final)["evalue"] == 0.002
