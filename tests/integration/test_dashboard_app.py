"""The dashboard's app against the real broker and database, in process: what it shows
(escaped), who may act (login, CSRF token, read-only) and what an action does."""

from __future__ import annotations

import base64
import re
import uuid
import warnings
from collections.abc import Iterator
from typing import Any

import pika
import pytest
from pydantic import SecretStr
from sqlalchemy import select, update

with warnings.catch_warnings():  # Starlette >= 1.x would rather have httpx2; httpx is what backlane uses
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from actors.orders.models import Order
from backlane.app import App as LoadedApp
from backlane.core import attempts
from backlane.core.registry import REGISTRY
from backlane.db.models import AuditEvent
from backlane.operations.dashboard import create_app
from backlane.operations.jobs import OPERATIONS_QUEUE, create_job, run_job
from backlane.settings import DashboardSettings
from contracts.orders import ORDER_CREATED_QUEUE
from devtools.sample import create_orders
from tests.integration.conftest import App
from tests.integration.test_dead_letter_admin import dead_letter, declare, depth, publish

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def dashboard(app: App, **settings: Any) -> TestClient:
    loaded = LoadedApp(REGISTRY, app.runtime)
    return TestClient(
        create_app(loaded, DashboardSettings(refresh_seconds=0, **settings)),
        follow_redirects=False,
        base_url="http://127.0.0.1",
    )


@pytest.fixture
def client(app: App) -> Iterator[TestClient]:
    with dashboard(app) as client:
        yield client


def csrf_of(client: TestClient, path: str = "/") -> str:
    page = client.get(path)
    assert page.status_code == 200, page.text
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, "no CSRF token in the page"
    return found.group(1)


def purge_queue(app: App, queue: str) -> None:
    """Empty one queue (not its .DQ and .XQ, as the broker's flush would)."""
    connection = pika.BlockingConnection(pika.URLParameters(app.rabbitmq.amqp_url))
    try:
        connection.channel().queue_purge(queue)
    finally:
        connection.close()


def failed_order(app: App, reason: str) -> int:
    [order_id] = create_orders(app.db, 1, app.clock.now())
    with app.db.transaction() as session:
        session.execute(update(Order).where(Order.id == order_id).values(status="failed", failure_reason=reason))
    return order_id


def test_the_overview_shows_the_databases_counts_and_unknown_depths_as_question_marks(
    app: App, client: TestClient
) -> None:
    create_orders(app.db, 3, app.clock.now())
    failed_order(app, "rejected")
    page = client.get("/").text
    row = re.search(r'<tr data-pipeline="orders">(.*?)</tr>', page, re.S)
    assert row, page
    counts = dict(re.findall(r'data-count="(\w+)">([^<]*)<', row.group(1)))
    assert counts == {"due": "3", "in_flight": "0", "done": "0", "failed": "1"}
    depths = dict(re.findall(r'data-depth="(\w+)">([^<]*)<', row.group(1)))
    assert depths["ready"] == "0" and depths["dead_lettered"] == "0"

    app.configure("broker", management_url="http://127.0.0.1:9")  # nothing listens there
    with dashboard(app, management_cache_seconds=0) as other:
        page = other.get("/")
    assert page.status_code == 200
    row = re.search(r'<tr data-pipeline="orders">(.*?)</tr>', page.text, re.S)
    assert row and set(dict(re.findall(r'data-depth="(\w+)">([^<]*)<', row.group(1))).values()) == {"?"}
    assert "management API at http://127.0.0.1:9 is unreachable" in page.text
    assert "Traceback" not in page.text


def test_a_reason_holding_html_is_shown_as_text(app: App, client: TestClient) -> None:
    order_id = failed_order(app, HOSTILE)
    page = client.get("/pipelines/orders").text
    assert HOSTILE not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;" in page
    assert f'data-id="{order_id}"' in page
    assert page.index("Failed, newest first") < page.index("All, newest first")


def item_cells(page: str) -> dict[str, dict[str, str]]:
    """The "All" table's cells by row id and column name."""
    table = page[page.index("All, newest first") :]
    names = re.findall(r"<th>([^<]*)</th>", table[: table.index("</thead>")])
    rows = re.findall(r'<tr data-id="(\d+)">(.*?)</tr>', table, re.S)
    return {i: dict(zip(names, re.findall(r"<td[^>]*>(.*?)</td>", cells, re.S), strict=True)) for i, cells in rows}


def test_each_row_shows_its_attempts_and_last_outcome_and_a_lease_only_while_due(app: App, client: TestClient) -> None:
    first_try, retried, pending, gave_up, old_failure = create_orders(app.db, 5, app.clock.now())
    now = app.clock.now()
    lease = now.replace(year=now.year + 1)
    with app.db.transaction() as session:
        session.execute(update(Order).values(lease_until=lease))
        session.execute(update(Order).where(Order.id.in_([first_try, retried])).values(status="succeeded"))
        for order_id, reason in ((gave_up, "gave up after 4 attempts: 503"), (old_failure, "rejected")):
            session.execute(update(Order).where(Order.id == order_id).values(status="failed", failure_reason=reason))
    attempts.write(app.db, "orders", retried, "retrying", 2, "503 from the order API", now)
    attempts.write(app.db, "orders", retried, "succeeded", 3, None, now)
    attempts.write(app.db, "orders", pending, "retrying", 1, HOSTILE, now)
    attempts.write(app.db, "orders", gave_up, "failed", 4, "gave up after 4 attempts: 503", now)

    page = client.get("/pipelines/orders").text
    cells = item_cells(page)
    shown = {i: (c["attempts"], c["last outcome"]) for i, c in cells.items()}
    assert shown == {
        str(first_try): ("1", "succeeded"),
        str(retried): ("3", "succeeded (last failure: 503 from the order API)"),
        str(pending): (
            "1",
            "retrying: &lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;",
        ),
        str(gave_up): ("4", "failed"),  # its reason is the row's failure_reason, shown once
        str(old_failure): ("—", "failed"),  # failed before attempts were recorded
    }
    assert HOSTILE not in page
    leases = {i: c["lease_until"] for i, c in cells.items()}
    assert leases[str(pending)] == lease.strftime("%Y-%m-%d %H:%M:%S")
    assert {leases[str(i)] for i in (first_try, retried, gave_up, old_failure)} == {""}


def test_an_order_is_found_by_its_request_id_or_external_id(app: App, client: TestClient) -> None:
    ids = create_orders(app.db, 5, app.clock.now())
    with app.db.transaction() as session:
        session.execute(update(Order).where(Order.id == ids[2]).values(external_order_id="EXT-42"))
    request_id = client.get(f"/pipelines/orders?q={ids[1]}").text
    for query, wanted in ((str(ids[1]), ids[1]), ("EXT-42", ids[2])):
        page = client.get("/pipelines/orders", params={"q": query}).text
        assert re.findall(r'data-id="(\d+)"', page) == [str(wanted)], query
    assert "Matching" in request_id


def test_a_post_needs_the_csrf_token_of_the_cookie(app: App, client: TestClient) -> None:
    assert client.post("/pipelines/orders/trigger").status_code == 403
    assert client.post("/pipelines/orders/trigger", data={"csrf": "forged"}).status_code == 403
    token = csrf_of(client)
    done = client.post("/pipelines/orders/trigger", data={"csrf": token})
    assert done.status_code == 303
    assert "discover+for+orders+queued" in done.headers["location"]


def test_with_a_password_every_request_needs_the_login(app: App) -> None:
    with dashboard(app, password=SecretStr("hunter2-hunter2")) as client:
        assert client.get("/").status_code == 401
        assert client.get("/").headers["www-authenticate"].startswith("Basic")
        wrong = "Basic " + base64.b64encode(b"backlane:nope").decode()
        assert client.get("/", headers={"Authorization": wrong}).status_code == 401
        assert client.post("/pipelines/orders/trigger", data={"csrf": "x"}).status_code == 401
        client.headers["Authorization"] = "Basic " + base64.b64encode(b"backlane:hunter2-hunter2").decode()
        page = client.get("/")
        assert page.status_code == 200 and "hunter2-hunter2" not in page.text
        assert client.post("/pipelines/orders/trigger").status_code == 403  # logged in, but no token


def test_read_only_hides_every_action_and_refuses_posts(app: App) -> None:
    declare(app)
    publish(app, f"{ORDER_CREATED_QUEUE}.XQ", dead_letter(str(uuid.uuid4()), {"version": 1, "order_id": 9}))
    with dashboard(app, read_only=True) as client:
        for path in ("/", "/pipelines/orders", "/pipelines/catalog", "/dead-letters"):
            page = client.get(path).text
            assert 'method="post"' not in page, path
            assert not re.search(r"Trigger now|Refresh now|Requeue|Purge", page), path
        token = client.cookies.get("backlane_csrf")
        assert token
        refused = client.post("/pipelines/orders/trigger", data={"csrf": token})
        assert refused.status_code == 403 and "read-only" in refused.text


def test_requeue_one_dead_letter_exactly(app: App, client: TestClient) -> None:
    declare(app)
    xq = f"{ORDER_CREATED_QUEUE}.XQ"
    ids = [str(uuid.uuid4()) for _ in range(3)]
    for message_id in ids:
        publish(app, xq, dead_letter(message_id, {"version": 1, "order_id": 999}, reason=HOSTILE))
    page = client.get("/dead-letters").text
    assert HOSTILE not in page and "&lt;script&gt;" in page
    assert all(f'data-message-id="{message_id}"' in page for message_id in ids)
    token = csrf_of(client, "/dead-letters")
    done = client.post(
        "/dead-letters/requeue", data={"csrf": token, "queue": ORDER_CREATED_QUEUE, "message_id": ids[1]}
    )
    assert done.status_code == 303, done.text
    assert "requeued+1+message" in done.headers["location"]
    assert depth(app, xq) == 2
    page = client.get("/dead-letters").text
    assert f'data-message-id="{ids[1]}"' not in page and f'data-message-id="{ids[0]}"' in page


def test_refresh_now_on_a_catalog_section(app: App, client: TestClient) -> None:
    token = csrf_of(client, "/pipelines/catalog")
    done = client.post("/pipelines/catalog/trigger", data={"csrf": token, "target": "brands", "back": "pipeline"})
    assert done.status_code == 303
    assert done.headers["location"].startswith("/pipelines/catalog?notice=catalog+brands")
    unknown = client.post("/pipelines/catalog/trigger", data={"csrf": token, "target": "nope", "back": "pipeline"})
    assert "not+done" in unknown.headers["location"]


def test_an_unmigrated_database_is_said_on_the_page(app: App, tmp_path: Any) -> None:
    from backlane.db.engine import Database

    app.runtime._database = Database(f"sqlite:///{tmp_path}/empty.db")
    with dashboard(app) as client:
        for path in ("/", "/pipelines/orders"):
            page = client.get(path)
            assert page.status_code == 200, path
            assert "run `backlane migrate`" in page.text.replace("&#96;", "`"), path


def test_rows_still_due_are_listed_in_claim_order_page_by_page(app: App) -> None:
    ids = create_orders(app.db, 3, app.clock.now())  # the first is the newest: claimed last
    with dashboard(app, page_size=2) as client:
        first = client.get("/pipelines/orders", params={"state": "due"}).text
        assert re.findall(r'data-id="(\d+)"', first) == [str(ids[2]), str(ids[1])]
        assert "in the order discover claims them" in first
        next_link = re.search(r'href="(/pipelines/orders\?state=due[^"]*page=1)"', first)
        assert next_link, first
        second = client.get(next_link.group(1).replace("&amp;", "&")).text
        assert re.findall(r'data-id="(\d+)"', second) == [str(ids[0])]
        newest = client.get("/pipelines/orders", params={"state": "all"}).text
        assert re.findall(r'data-id="(\d+)"', newest) == [str(ids[2]), str(ids[1])]  # by id, newest first
        older = re.search(r'href="(/pipelines/orders\?state=all[^"]*before=\d+)"', newest)
        assert older and re.findall(r'data-id="(\d+)"', client.get(older.group(1).replace("&amp;", "&")).text) == [
            str(ids[0])
        ]


def test_requeue_selected_then_all_and_purge_only_when_confirmed(app: App, client: TestClient) -> None:
    declare(app)
    xq = f"{ORDER_CREATED_QUEUE}.XQ"
    ids = [str(uuid.uuid4()) for _ in range(5)]
    for message_id in ids:
        publish(app, xq, dead_letter(message_id, {"version": 1, "order_id": 999}))
    token = csrf_of(client, "/dead-letters")
    form = {"csrf": token, "queue": ORDER_CREATED_QUEUE}
    selected = client.post("/dead-letters/requeue", data={**form, "message_id": ids[:2]})
    assert "requeued+2+message%28s%29+of+5" in selected.headers["location"], selected.headers["location"]
    assert depth(app, xq) == 3
    purge_queue(app, ORDER_CREATED_QUEUE)  # nobody works them here: keep the requeued ones out of the way
    # Requeue all and purge are jobs handed to the workers: the browser goes to the job's page at once.
    everything = client.post("/dead-letters/requeue", data={**form, "all": "1"})
    job_id = job_at(everything.headers["location"])
    assert depth(app, xq) == 3 and depth(app, OPERATIONS_QUEUE) == 1, "nothing done in the request"
    run_job(app.runtime, job_id)  # what the worker that takes the message does
    assert client.get(f"/jobs/{job_id}/progress").json()["report"].startswith("requeued 3 message(s) of 3")
    assert depth(app, xq) == 0

    publish(app, xq, dead_letter(str(uuid.uuid4()), {"version": 1, "order_id": 999}))
    unconfirmed = client.post("/dead-letters/purge", data=form)
    assert "nothing+purged" in unconfirmed.headers["location"] and depth(app, xq) == 1
    purged = client.post("/dead-letters/purge", data={**form, "confirm": "purge"})
    run_job(app.runtime, job_at(purged.headers["location"]))
    assert client.get(f"/jobs/{job_at(purged.headers['location'])}/progress").json()["report"] == (
        "purged 1 from orders_inbox.XQ"
    )
    assert depth(app, xq) == 0
    unknown = client.post("/dead-letters/purge", data={**form, "queue": "nope", "confirm": "purge"})
    assert "not+done" in unknown.headers["location"]


def job_at(location: str) -> int:
    """The job id of a redirect to its page (``/jobs/12?notice=...``)."""
    found = re.search(r"/jobs/(\d+)\?", location)
    assert found, location
    return int(found.group(1))


def test_a_job_page_shows_progress_and_stops_and_resumes_it_with_the_users_name(app: App) -> None:
    declare(app)
    xq = f"{ORDER_CREATED_QUEUE}.XQ"
    for _ in range(4):
        publish(app, xq, dead_letter(str(uuid.uuid4()), {"version": 1, "order_id": 999}))
    login = {"Authorization": "Basic " + base64.b64encode(b"ops-anna:" + b"a-long-password-1").decode()}
    with dashboard(app, user="ops-anna", password=SecretStr("a-long-password-1")) as client:
        client.headers.update(login)
        token = csrf_of(client, "/dead-letters")
        started = client.post("/dead-letters/requeue", data={"csrf": token, "queue": ORDER_CREATED_QUEUE, "all": "1"})
        job_id = job_at(started.headers["location"])
        page = client.get(f"/jobs/{job_id}")
        assert page.status_code == 200 and "queued" in page.text and f"/jobs/{job_id}/stop" in page.text
        stopped = client.post(f"/jobs/{job_id}/stop", data={"csrf": token})
        assert "stopped" in stopped.headers["location"]
        assert client.get(f"/jobs/{job_id}/progress").json()["status"] == "stopped"
        assert f"/jobs/{job_id}/resume" in client.get(f"/jobs/{job_id}").text
        forged = client.post(f"/jobs/{job_id}/resume", data={"csrf": "forged"})
        assert forged.status_code == 403
        resumed = client.post(f"/jobs/{job_id}/resume", data={"csrf": token})
        assert "resumed" in resumed.headers["location"]
        assert run_job(app.runtime, job_id).status == "done"
        shown = client.get(f"/jobs/{job_id}/progress").json()
        assert (shown["status"], shown["done"], shown["total"], shown["percent"]) == ("done", 4, 4, 100.0)
        listing = client.get("/jobs")
        assert listing.status_code == 200 and f'href="/jobs/{job_id}"' in listing.text
        assert client.get("/jobs/999999").status_code == 404
    with app.db.transaction() as session:
        rows = [(r.actor, r.action) for r in session.scalars(select(AuditEvent).order_by(AuditEvent.id))]
    assert rows[:3] == [
        ("dashboard:ops-anna", "requeue"),
        ("dashboard:ops-anna", "job-stop"),
        ("dashboard:ops-anna", "job-resume"),
    ], rows


def test_a_job_page_escapes_what_it_shows(app: App, client: TestClient) -> None:
    job_id = create_job(app.db, app.clock.now(), "requeue", {"queue": HOSTILE}, HOSTILE)
    page = client.get(f"/jobs/{job_id}")
    assert page.status_code == 200 and HOSTILE not in page.text and "&lt;script&gt;" in page.text
    assert HOSTILE not in client.get("/jobs").text


def test_mounted_in_an_operators_own_app_its_links_follow_the_mount(app: App) -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount

    inner = create_app(LoadedApp(REGISTRY, app.runtime), DashboardSettings(refresh_seconds=0))
    with TestClient(
        Starlette(routes=[Mount("/ops/backlane", app=inner)]), follow_redirects=False, base_url="http://127.0.0.1"
    ) as client:
        page = client.get("/ops/backlane/")
        assert page.status_code == 200
        assert 'href="/ops/backlane/pipelines/orders"' in page.text
        assert 'href="/ops/backlane/static/dashboard.css"' in page.text
        assert client.get("/ops/backlane/static/live.js").status_code == 200
        assert "Path=/ops/backlane" in page.headers["set-cookie"]
        token = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert token
        done = client.post("/ops/backlane/pipelines/orders/trigger", data={"csrf": token.group(1)})
        assert done.status_code == 303 and done.headers["location"].startswith("/ops/backlane/?notice=")
        assert app.rabbitmq.amqp_url not in page.text  # no secret on a page


def test_the_health_page_asks_each_worker_and_says_which_cannot_be_reached(app: App) -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from devtools.infra.ports import free_port

    class Worker(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b'{"status": "degraded", "broker": {"health": "healthy"}, "database": {"health": "healthy"}}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Worker)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    away = f"http://127.0.0.1:{free_port()}/health"
    here = f"http://127.0.0.1:{server.server_address[1]}/health"
    try:
        with dashboard(app, workers=f"{here},{away}") as client:
            page = client.get("/health").text
    finally:
        server.shutdown()
    assert re.search(rf"{re.escape(here)}</td><td><span class=\"health degraded\">degraded</span></td><td>200", page)
    assert re.search(rf"{re.escape(away)}</td><td><span class=\"health unknown\">\?</span></td><td>not reachable", page)
    assert "RabbitMQ" in page and "Traceback" not in page
