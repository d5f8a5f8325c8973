"""A bulk job as an operator runs it: the dashboard's Requeue all (a real `backlane dashboard`
process) hands a job to a real `dramatiq` worker process, which runs it to done while the page
follows its progress; the request returns at once."""

from __future__ import annotations

import re
import time
import uuid

import httpx
import pika
import pytest

from contracts.orders import ORDER_CREATED_QUEUE
from tests.acceptance.conftest import System
from tests.integration.test_dead_letter_admin import dead_letter
from tests.waiting import wait_until

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)

XQ = f"{ORDER_CREATED_QUEUE}.XQ"


def fill_xq(system: System, count: int) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(system.rabbitmq.amqp_url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        for n in range(count):
            message_id = uuid.uuid4().hex
            body = dead_letter(message_id, {"version": 1, "order_id": 900_000 + n})
            channel.basic_publish("", XQ, body, pika.BasicProperties(delivery_mode=2, message_id=message_id))
    finally:
        connection.close()


def test_requeue_all_from_the_dashboard_runs_on_a_worker_to_done(system: System) -> None:
    fill_xq(system, 500)
    system.stack.start_worker(processes=1, threads=4)
    _proc, url = system.stack.start_dashboard()
    with httpx.Client(base_url=url, timeout=10) as client:
        page = client.get("/dead-letters")
        token = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert token, page.text[:500]
        started = time.monotonic()
        answer = client.post(
            "/dead-letters/requeue", data={"csrf": token.group(1), "queue": ORDER_CREATED_QUEUE, "all": "1"}
        )
        assert time.monotonic() - started < 5, "the request never waits for the job"
        assert answer.status_code == 303, answer.text
        found = re.search(r"/jobs/(\d+)\?", answer.headers["location"])
        assert found, answer.headers["location"]
        job_id = int(found.group(1))
        assert "Job" in client.get(f"/jobs/{job_id}").text

        def finished() -> dict | None:
            shown = client.get(f"/jobs/{job_id}/progress").json()
            return shown if shown["status"] in ("done", "failed") else None

        shown = wait_until(finished, timeout=60, what="the worker to finish the job")
    assert shown["status"] == "done", shown
    assert (shown["done"], shown["total"]) == (500, 500), shown
    assert shown["report"].startswith("requeued 500 message(s) of 500 dead letter(s)"), shown["report"]
    assert shown["created_by"] == "dashboard:(no login)"
