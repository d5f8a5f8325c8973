"""The orders work written plainly on Celery 5: the same per-order function as plain_dramatiq.

``celery -A plain_celery worker --pool=threads|prefork --concurrency=C -Q plain_celery``
(benchmarks/ on PYTHONPATH; ``pip install -e .[bench]``). Acks late (a message is acked
after its task ran, as Dramatiq and backlane do), prefetch multiplier 1, no result
backend, retries on any exception with backoff like Dramatiq's. The task body is
:func:`plain_dramatiq.place_order`: one SELECT, POST /orders, GET /orders/{id}, one UPDATE.
"""

from __future__ import annotations

import os

from celery import Celery

QUEUE = "plain_celery"
TASK = "plain_celery.celery_order"

app = Celery("plain_celery", broker=os.environ.get("BACKLANE_BROKER__URL", "amqp://guest:guest@127.0.0.1:5672//"))
app.conf.update(
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    task_default_queue=QUEUE,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    worker_send_task_events=False,
    task_send_sent_event=False,
    worker_enable_remote_control=False,  # no pidbox queue per worker: the work queue only
    broker_heartbeat=0,
)


@app.task(name=TASK, bind=True, max_retries=10, acks_late=True)  # type: ignore[untyped-decorator]
def celery_order(self, order_id: int) -> None:  # type: ignore[no-untyped-def]
    from plain_dramatiq import place_order

    try:
        place_order(order_id)
    except Exception as exc:
        raise self.retry(exc=exc, countdown=min(15 * 2**self.request.retries, 900)) from exc
