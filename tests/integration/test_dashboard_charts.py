"""The charts of a pipeline's page against the real broker and database: the items finished
between two page views (from the rows, or from the workers' counters when their /metrics
answer), the queue's depth as RabbitMQ's management API reads it, and what the page says
when the management API is away."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import update

from actors.orders.models import Order
from backlane.core.registry import REGISTRY
from backlane.operations.management import ManagementClient
from devtools.sample import create_orders
from tests.integration.conftest import App
from tests.integration.test_dashboard_app import dashboard
from tests.integration.test_dead_letter_admin import publish
from tests.waiting import wait_until

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def figure(page: str, chart: str) -> str:
    found = re.search(rf'<figure class="chart" data-chart="{chart}">(.*?)</figure>', page, re.S)
    assert found, page
    return found.group(1)


def bars(svg: str) -> list[tuple[str, str]]:
    """(series, value) of each bar, oldest minute first."""
    return re.findall(r'<rect class="bar s\d"[^>]*data-series="([^"]+)"[^>]*data-value="([^"]+)"', svg)


def points(svg: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for series, value in re.findall(
        r'<circle class="point s\d"[^>]*data-series="([^"]+)"[^>]*data-value="([^"]+)"', svg
    ):
        found.setdefault(series, []).append(value)
    return found


def totals(svg: str) -> dict[str, int]:
    summed: dict[str, int] = {}
    for series, value in bars(svg):
        summed[series] = summed.get(series, 0) + int(value)
    return summed


def test_the_items_finished_between_two_views_and_the_queues_depth_are_charted(app: App) -> None:
    ids = create_orders(app.db, 6, app.clock.now())
    queue = REGISTRY.get("orders").pipeline.queue_name
    with dashboard(app, workers="", management_cache_seconds=0) as client:
        first = client.get("/pipelines/orders").text  # the baseline: what was done before is no work of this hour
        assert totals(figure(first, "items")) == {}
        assert "Items in the hour: 0 succeeded, 0 failed, ? retried." in first  # no retries in the rows

        with app.db.transaction() as session:
            session.execute(update(Order).where(Order.id.in_(ids[:5])).values(status="succeeded"))
            session.execute(update(Order).where(Order.id == ids[5]).values(status="failed", failure_reason="no"))
        app.broker.declare_queue(queue, ensure=True)  # with its .DQ and .XQ
        for _ in range(3):  # no worker consumes them: 3 ready, as the management API will say
            publish(app, queue, b'{"not": "a message a worker will see"}')
        management = ManagementClient(app.runtime.settings.broker)
        try:
            wait_until(lambda: management.queues()[queue].ready == 3, timeout=30, what="the management API's depth")
        finally:
            management.close()

        page = client.get("/pipelines/orders").text
        overview = client.get("/").text
    items, depths = figure(page, "items"), figure(page, "depths")
    assert totals(items) == {"succeeded": 5, "failed": 1}
    assert "Items in the hour: 5 succeeded, 1 failed, ? retried." in page
    assert re.search(r"<desc>items per minute: \d\d:\d\d: succeeded 5, failed 1, retried \?", items)
    assert points(depths)["ready"][-1] == "3"
    assert points(depths)["dead lettered"][-1] == "0"
    assert 'data-slots="60"' in items and 'data-slots="60"' in depths
    row = re.search(r'<tr data-pipeline="orders">(.*?)</tr>', overview, re.S)
    assert row and re.search(r'<svg class="spark".*data-value="6"', row.group(1))
    assert "style=" not in page and "<script>" not in page.split("</head>")[1]


class Worker(BaseHTTPRequestHandler):
    """A worker's /metrics: backlane_items_total as the workers' Prometheus text says it."""

    counts: dict[str, int] = {}

    def do_GET(self) -> None:
        lines = ["# TYPE backlane_items_total counter"]
        for outcome, value in self.counts.items():
            lines.append(f'backlane_items_total{{pipeline="orders",outcome="{outcome}",error_class=""}} {value}')
        body = ("\n".join(lines) + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def worker() -> Iterator[tuple[ThreadingHTTPServer, str]]:
    Worker.counts = {"succeeded": 40, "failed": 2, "retry": 9, "waiting": 1}
    server = ThreadingHTTPServer(("127.0.0.1", 0), Worker)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server, f"http://127.0.0.1:{server.server_address[1]}/health"
    server.shutdown()


def test_with_the_workers_counters_retries_are_charted_and_a_worker_away_invents_nothing(
    app: App, worker: tuple[ThreadingHTTPServer, str]
) -> None:
    server, url = worker
    with dashboard(app, workers=url, management_cache_seconds=0) as client:
        client.get("/pipelines/orders")  # the baseline: 40, 2, 9
        Worker.counts = {"succeeded": 47, "failed": 3, "retry": 13, "waiting": 5}  # waits are not charted
        page = client.get("/pipelines/orders").text
        assert totals(figure(page, "items")) == {"succeeded": 7, "failed": 1, "retried": 4}
        server.shutdown()  # the worker is away: the rows' counts from now on, a new baseline
        create_orders(app.db, 2, app.clock.now())
        later = client.get("/pipelines/orders").text
    assert totals(figure(later, "items")) == {"succeeded": 7, "failed": 1, "retried": 4}
    assert "Traceback" not in later


def test_with_the_management_api_away_the_depth_chart_says_unknown_and_the_page_renders(app: App) -> None:
    app.configure("broker", management_url="http://127.0.0.1:9")  # nothing listens there
    with dashboard(app, workers="", management_cache_seconds=0) as client:
        page = client.get("/pipelines/orders")
        overview = client.get("/")
    assert page.status_code == 200 and overview.status_code == 200
    assert "queue depths unknown: the management API is unreachable" in page.text
    depths = figure(page.text, "depths")
    assert points(depths) == {} and "<desc>messages: no data</desc>" in depths and "no data yet" in depths
    assert "Traceback" not in page.text + overview.text


def test_with_the_database_broker_and_management_api_away_every_page_renders_its_charts(
    app: App, tmp_path: Any
) -> None:
    from pydantic import SecretStr

    from backlane.db.engine import Database
    from devtools.infra.ports import free_port

    app.runtime._database = Database(f"sqlite:///{tmp_path}/no-such-dir/backlane.db")
    dead = f"127.0.0.1:{free_port()}"
    app.configure("broker", url=SecretStr(f"amqp://guest:guest@{dead}/%2F"), management_url=f"http://{dead}")
    with dashboard(app, workers=f"http://{dead}/health", management_cache_seconds=0) as client:
        pages = {path: client.get(path) for path in ("/", "/pipelines/orders", "/pipelines/catalog", "/health")}
        pages["/dead-letters"] = client.get("/dead-letters")
    for path, page in pages.items():
        assert page.status_code == 200, (path, page.text)
        assert "Traceback" not in page.text, path
    for path in ("/pipelines/orders", "/pipelines/catalog"):
        text = pages[path].text
        assert "<desc>items per minute: no data</desc>" in figure(text, "items"), path
        assert "<desc>messages: no data</desc>" in figure(text, "depths"), path
        assert "Items in the hour: ? succeeded, ? failed, ? retried." in text, path
    assert re.search(r'<tr data-pipeline="orders">.*?<svg class="spark"', pages["/"].text, re.S)
