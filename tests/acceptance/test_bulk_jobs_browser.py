"""A bulk job in Chromium: the operator presses *Requeue all* on the dead-letters page, lands
at once on the job's page, and watches it (refreshing itself) reach done on a real worker;
the page shows done of total, percent, rate and the report. With BACKLANE_DASHBOARD_SCREENSHOTS
set, the job page is saved as dashboard-job.png."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from contracts.orders import ORDER_CREATED_QUEUE
from tests.acceptance.conftest import System
from tests.acceptance.test_bulk_jobs_processes import fill_xq
from tests.acceptance.test_dashboard_browser import browser, dashboard, page, shoot  # noqa: F401  fixtures

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


def test_requeue_all_in_the_browser_goes_to_the_job_page_which_follows_it_to_done(
    system: System,
    dashboard: str,  # noqa: F811
    page: Page,  # noqa: F811
) -> None:
    fill_xq(system, 2000)
    system.stack.start_worker(processes=1, threads=4)
    page.goto(f"{dashboard}/dead-letters")
    section = page.locator(f'section.xq[data-queue="{ORDER_CREATED_QUEUE}"]')
    section.get_by_role("button", name=re.compile(r"Requeue all")).click()
    expect(page).to_have_url(re.compile(r"/jobs/\d+"), timeout=10_000)
    expect(page.locator("nav a", has_text="Jobs")).to_be_visible()
    expect(page.locator("td.job-status")).to_have_text("done", timeout=60_000)  # the page refreshes itself
    expect(page.locator("span.progress")).to_contain_text("2,000 of 2,000 (100.0%)")
    expect(page.locator("td.report")).to_contain_text("requeued 2,000 message(s) of 2,000 dead letter(s)")
    expect(page.locator("td.rate")).to_contain_text("per second")
    shoot(page, "job")
    page.get_by_role("link", name="every job").click()
    expect(page.locator("table.jobs tbody tr")).to_have_count(1)
