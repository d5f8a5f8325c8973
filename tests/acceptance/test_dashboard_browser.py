"""The dashboard in Debian's Chromium, driven by Playwright, against the real system: a
private RabbitMQ node, PostgreSQL, the simulator, a real worker and ``backlane dashboard``.

What an operator does with it: read the counts the database holds, find a failed order's
reason, requeue its dead letter once the cause is fixed and watch the order settle, refresh
a catalog section now, see the items the worker finished and the dead letter on the
pipeline's charts; and what it refuses: a POST without the CSRF token or without
credentials. A reason holding HTML is shown as text. With BACKLANE_DASHBOARD_SCREENSHOTS
set to a directory, the pages are saved there as PNG (the README's screenshots).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect, sync_playwright
from sqlalchemy import select, update

from actors.catalog.models import CatalogSection
from actors.orders.models import Order
from backlane.core.clock import SystemClock
from devtools.browser import MissingChromium, launch_chromium
from devtools.infra.ports import free_port
from devtools.sample import create_orders
from tests.acceptance.conftest import System
from tests.waiting import wait_until

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)

PASSWORD = "correct-horse-battery"
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'
SCREENSHOTS = os.environ.get("BACKLANE_DASHBOARD_SCREENSHOTS")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_playwright() as playwright:
        try:
            chromium = launch_chromium(playwright)
        except MissingChromium as missing:
            pytest.fail(str(missing), pytrace=False)
        yield chromium
        chromium.close()


@pytest.fixture
def dashboard(system: System) -> str:
    system.stack.env.update(
        # The worker serves /metrics there, where the dashboard reads its counters for the charts.
        BACKLANE_WORKER__METRICS_PORT=str(free_port()),
        BACKLANE_CATALOG__BASE_URL=system.simulator_url,
        BACKLANE_DASHBOARD__PASSWORD=PASSWORD,
        BACKLANE_DASHBOARD__REFRESH_SECONDS="1",
        BACKLANE_DASHBOARD__MANAGEMENT_CACHE_SECONDS="1",
    )
    _, url = system.stack.start_dashboard()
    return url


@pytest.fixture
def page(browser: Any) -> Iterator[Page]:
    context = browser.new_context(
        http_credentials={"username": "backlane", "password": PASSWORD}, viewport={"width": 1440, "height": 900}
    )
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    yield page
    context.close()
    assert not dialogs, f"a script ran in the page: {dialogs}"


def order_counts(system: System) -> Counter[str]:
    with system.db.transaction() as session:
        return Counter(session.scalars(select(Order.status)))


def metrics_answer(system: System) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{system.stack.env['BACKLANE_WORKER__METRICS_PORT']}/metrics").is_success
    except httpx.HTTPError:
        return False


def chart(page: Page, name: str, mark: str) -> dict[str, list[float]]:
    """The values a chart of the page draws (``mark``: rect.bar or circle.point), by series, oldest first."""
    drawn: list[list[Any]] = page.evaluate(
        """([name, mark]) => [...document.querySelectorAll(`figure[data-chart="${name}"] ${mark}`)]
            .map(e => [e.dataset.series, Number(e.dataset.value)])""",
        [name, mark],
    )
    by_series: dict[str, list[float]] = {}
    for series, value in drawn:
        by_series.setdefault(series, []).append(value)
    return by_series


def shoot(page: Page, name: str) -> None:
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOTS) / f"dashboard-{name}.png"), full_page=True)


def test_an_operator_finds_a_failed_order_requeues_it_and_sees_it_settle(
    system: System, dashboard: str, page: Page
) -> None:
    good = system.create_orders(12)
    # An order the order API rejects for good (422: no items): failed with the reason, dead-lettered.
    [bad] = create_orders(system.db, 1, SystemClock().now(), payload={"items": []})
    system.stack.start_worker(processes=1, threads=4)
    # The charts count from the dashboard's first look at the worker's counters: it must answer by then.
    wait_until(lambda: metrics_answer(system), timeout=60, what="the worker's /metrics")

    page.goto(dashboard + "/")
    page.locator('tr[data-pipeline="orders"] button', has_text="Trigger now").click()
    expect(page.locator(".notice")).to_have_text("discover for orders queued on 'discover'")
    wait_until(lambda: order_counts(system) == Counter(succeeded=12, failed=1), timeout=60, what="orders settled")

    # The overview shows what the database holds (it refreshes itself every second).
    row = page.locator('tr[data-pipeline="orders"]')
    expect(row.locator('[data-count="done"]')).to_have_text("12", timeout=15_000)
    expect(row.locator('[data-count="failed"]')).to_have_text("1")
    expect(row.locator('[data-count="due"]')).to_have_text("0")
    expect(row.locator('[data-count="in_flight"]')).to_have_text("0")
    expect(row.locator('[data-depth="dead_lettered"]')).to_have_text("1", timeout=20_000)
    # Its sparkline: the 13 items finished in the last hour, from the worker's counters.
    expect(row.get_by_role("img", name="orders: items finished per minute, last hour")).to_be_visible()
    expect(row.locator("svg.spark desc")).to_have_text("13 in the last 60 minutes", timeout=15_000)
    shoot(page, "overview")

    # The failed order, first on its pipeline's page, with its reason.
    page.goto(f"{dashboard}/pipelines/orders")
    failed = page.locator("table.items", has_text="Failed, newest first").locator(f'tr[data-id="{bad}"]')
    expect(failed.locator("td.reason")).to_contain_text("an order needs a non-empty list of items")

    # Its charts: the 12 done and the 1 failed for good among the last hour's bars (from the
    # worker's counters, sampled by the dashboard), the dead letter on the depth line.
    items = page.get_by_role("img", name="orders: items per minute, last hour (UTC)")
    expect(items).to_be_visible()
    wait_until(
        lambda: (
            {k: sum(v) for k, v in chart(page, "items", "rect.bar").items() if k != "retried"}
            == {"succeeded": 12, "failed": 1}
        ),
        timeout=20,
        what="12 succeeded and 1 failed on the chart",
    )
    bars = chart(page, "items", "rect.bar")
    box = items.bounding_box()
    assert box is not None and box["width"] > 300 and box["height"] > 80
    started = page.locator("figure[data-chart=items] svg").get_attribute("data-slots")
    assert started == "60"
    # At most one bar per series per minute since the dashboard started (the test spans a few).
    assert all(1 <= len(values) <= 5 for values in bars.values()), bars
    depth = page.get_by_role("img", name="orders: queue depth, last hour (UTC)")
    expect(depth).to_be_visible()
    wait_until(
        lambda: chart(page, "depths", "circle.point").get("dead lettered", [None])[-1] == 1,
        timeout=20,
        what="the dead letter on the depth chart",
    )
    points = chart(page, "depths", "circle.point")
    assert set(points) == {"ready", "unacked", "delayed", "dead lettered"}
    assert len({len(values) for values in points.values()}) == 1  # one point per sampled minute, every series
    assert 1 <= len(points["ready"]) <= 5
    expect(page.locator("figure[data-chart=items] desc")).to_contain_text("succeeded")
    shoot(page, "pipeline")

    # Fix the cause, then requeue its dead letter: the order settles, seen on the page.
    with system.db.transaction() as session:
        fixed = {"items": [{"sku": "SKU-1", "quantity": 1}]}
        session.execute(update(Order).where(Order.id == bad).values(payload=fixed))
    page.goto(f"{dashboard}/dead-letters")
    letter = page.locator('section[data-queue="orders"] tr[data-message-id]')
    expect(letter).to_have_count(1)
    expect(letter.locator("td.reason")).to_contain_text("non-empty list of items")
    expect(letter.get_by_role("link", name=str(bad))).to_have_attribute("href", f"/pipelines/orders?q={bad}")
    shoot(page, "dead-letters")
    letter.get_by_role("button", name="Requeue").click()
    expect(page.locator(".notice")).to_contain_text("requeued 1 message(s) of 1 dead letter(s)")
    page.goto(f"{dashboard}/pipelines/orders?q={bad}")
    expect(page.locator(f'tr[data-id="{bad}"]')).to_contain_text("succeeded", timeout=30_000)
    assert order_counts(system) == Counter(succeeded=13)

    # A reason holding HTML is text, never markup (the page fixture fails on any dialog).
    with system.db.transaction() as session:
        session.execute(update(Order).where(Order.id == good[0]).values(status="failed", failure_reason=HOSTILE))
    page.goto(f"{dashboard}/pipelines/orders")
    shown = page.locator(f'table.items >> tr[data-id="{good[0]}"] >> td.reason').first
    expect(shown).to_have_text(HOSTILE)
    assert page.locator("img[src=x]").count() == 0


def test_refresh_now_on_a_catalog_section_and_what_the_dashboard_refuses(
    system: System, dashboard: str, page: Page, browser: Any
) -> None:
    system.stack.start_worker(processes=1, threads=4)
    page.goto(f"{dashboard}/pipelines/catalog")
    section = page.locator('tr[data-row="erp_stock"]')
    expect(section.locator(".health")).to_have_text("unhealthy")  # never refreshed
    section.get_by_role("button", name="Trigger now").click()
    expect(page.locator(".notice")).to_have_text("catalog erp_stock: 1 item(s) queued")
    expect(page.locator('tr[data-row="erp_stock"] .health')).to_have_text("healthy", timeout=30_000)
    with system.db.transaction() as session:
        refreshed = session.scalar(select(CatalogSection.last_success_at).where(CatalogSection.name == "erp_stock"))
    assert refreshed is not None

    # A POST without the CSRF token: refused, though logged in.
    refused = page.request.post(f"{dashboard}/pipelines/orders/trigger", form={"back": "pipeline"})
    assert refused.status == 403 and "CSRF" in refused.text()
    # Without credentials: refused, before anything else is looked at.
    stranger = browser.new_context()
    try:
        assert stranger.request.post(f"{dashboard}/pipelines/orders/trigger", form={"csrf": "x"}).status == 401
        assert stranger.request.get(f"{dashboard}/").status == 401
    finally:
        stranger.close()


def test_a_page_on_another_site_cannot_act_even_in_a_logged_in_browser(
    system: System, dashboard: str, page: Page, browser: Any
) -> None:
    # The operator's own page works: a button on it posts with the browser's Origin.
    page.goto(f"{dashboard}/")
    page.locator('tr[data-pipeline="orders"] button', has_text="Trigger now").click()
    expect(page.locator(".notice")).to_have_text("discover for orders queued on 'discover'")

    # The same logged-in browser opens a hostile page that submits a purge of every queue.
    form = (
        f'<form method="post" action="{dashboard}/dead-letters/purge">'
        '<input name="confirm" value="purge-all"><input name="csrf" value="guessed"></form>'
        "<script>document.forms[0].submit()</script>"
    )
    hostile = page.context.new_page()
    hostile.route("http://evil.example/", lambda route: route.fulfill(content_type="text/html", body=form))
    with hostile.expect_response(f"{dashboard}/dead-letters/purge") as answered:
        hostile.goto("http://evil.example/")
    response = answered.value
    assert response.status == 403, response.status
    assert "another site" in response.text()
    hostile.close()


def test_an_operator_pauses_a_section_and_a_pipeline_and_finds_it_all_in_the_audit_trail(
    system: System, dashboard: str, page: Page
) -> None:
    system.stack.start_worker(processes=1, threads=4)
    # A catalog section paused from its own page: shown paused on the pipeline's page.
    page.goto(f"{dashboard}/pipelines/catalog/parts/erp_stock")
    page.get_by_label("Reason").fill("ERP maintenance tonight")
    page.get_by_role("button", name="Pause erp_stock").click()
    expect(page.locator(".notice")).to_contain_text("catalog erp_stock paused")
    page.goto(f"{dashboard}/pipelines/catalog")
    expect(page.locator('tr[data-row="erp_stock"] .health')).to_have_text("paused")
    # Resumed and refreshed now: its refresh is a run on its page.
    page.goto(f"{dashboard}/pipelines/catalog/parts/erp_stock")
    page.get_by_role("button", name="Resume erp_stock").click()
    expect(page.locator(".notice")).to_contain_text("catalog erp_stock resumed")
    page.goto(f"{dashboard}/pipelines/catalog")
    page.locator('tr[data-row="erp_stock"]').get_by_role("button", name="Trigger now").click()
    expect(page.locator('tr[data-row="erp_stock"] .health')).to_have_text("healthy", timeout=30_000)
    page.goto(f"{dashboard}/pipelines/catalog/parts/erp_stock")
    expect(page.locator('table.runs tr[data-outcome="succeeded"]')).to_have_count(1)
    shoot(page, "part")

    # The whole orders pipeline, with a reason holding HTML: shown as text.
    page.goto(f"{dashboard}/pipelines/orders")
    page.locator("section.controls").get_by_label("Reason").fill(HOSTILE)
    page.get_by_role("button", name="Pause", exact=True).click()
    expect(page.locator('p.paused[data-paused="orders"]')).to_contain_text("paused by dashboard:backlane")
    expect(page.locator('p.paused[data-paused="orders"]')).to_contain_text(HOSTILE)
    expect(page.locator("h1 .health")).to_have_text("paused")
    shoot(page, "pause")
    page.get_by_role("button", name="Resume", exact=True).click()
    expect(page.locator(".notice")).to_contain_text("orders resumed")

    page.goto(f"{dashboard}/audit")
    actions = page.locator("table.audit tbody tr")
    expect(actions).to_have_count(5)  # pause, resume, trigger of erp_stock, pause, resume
    expect(page.locator('tr[data-action="pause"]').first).to_contain_text("dashboard:backlane")
    expect(page.locator('tr[data-action="trigger"]')).to_contain_text("catalog erp_stock")
    shoot(page, "audit")
