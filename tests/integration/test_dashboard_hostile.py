"""The dashboard against a hostile page and a hostile network: a DNS-rebinding request, a
cross-site POST, a purge that names no queue, numbers that are not numbers, text in the URL."""

from __future__ import annotations

import uuid

import pytest

from backlane.operations.jobs import run_job
from contracts.orders import ORDER_CREATED_QUEUE
from tests.integration.conftest import App
from tests.integration.test_dashboard_app import csrf_of, dashboard, job_at
from tests.integration.test_dead_letter_admin import dead_letter, declare, depth, publish

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def test_a_foreign_host_gets_nothing_not_even_a_token(app: App) -> None:
    with dashboard(app) as client:
        for path in ("/", "/dead-letters", "/pipelines/orders", "/health"):
            answer = client.get(path, headers={"Host": "evil.example:8090"})
            assert answer.status_code == 421, path
            assert "csrf" not in answer.text and "set-cookie" not in answer.headers
        refused = client.post("/dead-letters/purge", headers={"Host": "evil.example"}, data={"confirm": "purge-all"})
        assert refused.status_code == 421


def test_a_cross_site_post_is_refused_even_with_the_token(app: App) -> None:
    declare(app)
    xq = f"{ORDER_CREATED_QUEUE}.XQ"
    publish(app, xq, dead_letter(str(uuid.uuid4()), {"version": 1, "order_id": 9}))
    with dashboard(app) as client:
        token = csrf_of(client)
        form = {"csrf": token, "queue": ORDER_CREATED_QUEUE, "confirm": "purge"}
        for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}, {"Origin": "null"}):
            refused = client.post("/dead-letters/purge", data=form, headers=headers)
            assert refused.status_code == 403 and "another site" in refused.text, headers
        assert depth(app, xq) == 1


def test_a_purge_must_name_its_queue(app: App) -> None:
    declare(app)
    xq = f"{ORDER_CREATED_QUEUE}.XQ"
    publish(app, xq, dead_letter(str(uuid.uuid4()), {"version": 1, "order_id": 9}))
    with dashboard(app) as client:
        token = csrf_of(client)
        done = client.post("/dead-letters/purge", data={"csrf": token, "confirm": "purge"})
        assert done.status_code == 303 and "nothing+purged" in done.headers["location"]
        assert depth(app, xq) == 1
        same_origin = {"Origin": "http://127.0.0.1", "Sec-Fetch-Site": "same-origin"}
        named = client.post(
            "/dead-letters/purge",
            data={"csrf": token, "confirm": "purge", "queue": ORDER_CREATED_QUEUE},
            headers=same_origin,
        )
        assert named.status_code == 303 and depth(app, xq) == 1, "a job: handed to the workers"
        run_job(app.runtime, job_at(named.headers["location"]))
        assert depth(app, xq) == 0


def test_a_forged_token_or_another_logins_token_is_refused(app: App) -> None:
    with dashboard(app) as client:
        client.cookies.set("backlane_csrf", "planted")
        refused = client.post("/pipelines/orders/trigger", data={"csrf": "planted"})
        assert refused.status_code == 403


@pytest.mark.parametrize(
    "query", ["page=%C2%B2", "before=%C2%B2", "q=%C2%B2", "q=%00", "before=99999999999999999999999"]
)
def test_numbers_that_are_not_numbers_are_not_errors(app: App, query: str) -> None:
    with dashboard(app) as client:
        answer = client.get(f"/pipelines/orders?{query}")
        assert answer.status_code == 200, answer.text


def test_no_page_text_from_the_url(app: App) -> None:
    with dashboard(app) as client:
        page = client.get("/?notice=Your+session+expired%2C+call+0800-EVIL").text
        assert "0800-EVIL" not in page
        token = csrf_of(client)
        done = client.post("/pipelines/orders/trigger", data={"csrf": token})
        said = client.get(done.headers["location"]).text
        assert "discover for orders queued" in said


def test_purge_all_is_its_own_confirmed_action(app: App) -> None:
    declare(app)
    xq = f"{ORDER_CREATED_QUEUE}.XQ"
    publish(app, xq, dead_letter(str(uuid.uuid4()), {"version": 1, "order_id": 9}))
    with dashboard(app) as client:
        page = client.get("/dead-letters").text
        assert 'value="purge-all"' in page and "Purge all queues" in page
        token = csrf_of(client, "/dead-letters")
        mixed = client.post("/dead-letters/purge", data={"csrf": token, "confirm": "purge-all", "queue": "orders"})
        assert "nothing+purged" in mixed.headers["location"] and depth(app, xq) == 1
        same_origin = {"Origin": "http://127.0.0.1", "Sec-Fetch-Site": "same-origin"}
        done = client.post("/dead-letters/purge", data={"csrf": token, "confirm": "purge-all"}, headers=same_origin)
        assert done.status_code == 303 and "purge+of+every+queue" in done.headers["location"]
        assert depth(app, xq) == 1, "a job on the workers: nothing done in the request"
        assert "purged 1 from orders_inbox.XQ" in run_job(app.runtime, job_at(done.headers["location"])).line
        assert depth(app, xq) == 0


def test_a_requeue_must_name_its_queue(app: App) -> None:
    declare(app)
    xq = f"{ORDER_CREATED_QUEUE}.XQ"
    publish(app, xq, dead_letter(str(uuid.uuid4()), {"version": 1, "order_id": 9}))
    with dashboard(app) as client:
        token = csrf_of(client)
        done = client.post("/dead-letters/requeue", data={"csrf": token, "all": "1"})
        assert "nothing+requeued" in done.headers["location"] and depth(app, xq) == 1


def test_an_origin_of_the_other_scheme_is_another_site(app: App) -> None:
    with dashboard(app) as client:
        token = csrf_of(client)
        refused = client.post(
            "/pipelines/orders/trigger", data={"csrf": token}, headers={"Origin": "https://127.0.0.1"}
        )
        assert refused.status_code == 403 and "another site" in refused.text


def test_over_https_the_cookie_is_host_prefixed_and_still_works(app: App) -> None:
    from tests.integration.test_dashboard_app import REGISTRY, DashboardSettings, LoadedApp, TestClient, create_app

    inner = create_app(LoadedApp(REGISTRY, app.runtime), DashboardSettings(refresh_seconds=0))
    with TestClient(inner, base_url="https://127.0.0.1", follow_redirects=False) as client:
        page = client.get("/")
        cookie = page.headers["set-cookie"]
        assert cookie.startswith("__Host-backlane_csrf=")
        assert "Secure" in cookie and "Path=/" in cookie and "SameSite=strict" in cookie and "Domain" not in cookie
        token = csrf_of(client)
        done = client.post("/pipelines/orders/trigger", data={"csrf": token}, headers={"Origin": "https://127.0.0.1"})
        assert done.status_code == 303, done.text
        client.cookies.set("backlane_csrf", token)  # the plain cookie is not what HTTPS reads
        del client.cookies["__Host-backlane_csrf"]
        assert client.post("/pipelines/orders/trigger", data={"csrf": token}).status_code == 403


def test_a_missing_pipeline_does_not_repeat_its_name(app: App) -> None:
    with dashboard(app) as client:
        answer = client.get("/pipelines/Your%20session%20expired%2C%20call%200800-EVIL")
        assert answer.status_code == 404 and "0800-EVIL" not in answer.text
