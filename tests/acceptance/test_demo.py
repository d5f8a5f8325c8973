"""The demo (`python -m devtools.demo`, what scripts/demo runs) shows every pipeline, explains its
failures, checks its options before starting anything, and stops cleanly on Ctrl-C."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools.stack import SOURCE_ROOT
from tests.acceptance.conftest import _purge_all
from tests.acceptance.test_status_health import _pty_run


def demo_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKLANE_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SOURCE_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**env, **extra}


def demo(*args: str) -> list[str]:
    return [sys.executable, "-m", "devtools.demo", *args]


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--threads", "0"], "--threads"),
        (["--orders", "-5"], "--orders"),
        (["--processes", "many"], "--processes"),
        (["--failure-rate", "1.5"], "--failure-rate"),
        (["--timeout", "0"], "--timeout"),
    ],
)
def test_the_demo_checks_its_options_before_starting_anything(args: list[str], named: str, tmp_path: Path) -> None:
    started = time.monotonic()
    result = subprocess.run(demo(*args), cwd=tmp_path, env=demo_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert time.monotonic() - started < 5
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("scripts/demo: error: argument") and named in error, result.stderr
    assert "Traceback" not in result.stderr and not result.stdout
    assert not (tmp_path / ".backlane").exists(), "nothing was started"


def _beam_processes_under(path: Path) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(path) in cmdline:
            found.append(int(proc.name))
    return found


def test_ctrl_c_while_the_demo_starts_rabbitmq_stops_it_with_130_and_no_traceback(tmp_path: Path) -> None:
    from devtools.infra.ports import is_listening

    if is_listening(5672):
        pytest.fail(
            "a RabbitMQ is listening on localhost:5672, so the demo would use it instead of starting "
            "its own node: stop it (e.g. systemctl stop rabbitmq-server) to run this test",
            pytrace=False,
        )
    code, output = _pty_run(demo(), demo_env(), seconds=3)
    assert "starting a private node" in output, output
    assert code == 130, output
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output
    node_dir = tmp_path.resolve() / ".backlane" / "demo" / "rabbitmq"
    deadline = time.monotonic() + 15
    while _beam_processes_under(node_dir) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _beam_processes_under(node_dir), "the half-started RabbitMQ node was stopped"


@pytest.fixture
def shared_broker(rabbitmq: Any) -> Iterator[Any]:
    if not rabbitmq.is_running():
        rabbitmq.start()
    _purge_all(rabbitmq)
    yield rabbitmq
    _purge_all(rabbitmq)


def _run_demo(shared_broker: Any, tmp_path: Path, *args: str) -> str:
    """The demo on the session's broker (one worker process, 240 s at most) in ``tmp_path``: its
    output, once it exited 0."""
    env = demo_env(
        BACKLANE_BROKER__URL=shared_broker.amqp_url, BACKLANE_BROKER__MANAGEMENT_URL=shared_broker.management_url
    )
    result = subprocess.run(
        demo(*args, "--processes", "1", "--timeout", "240"),
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


def test_the_demo_shows_every_pipeline_and_explains_its_failures(shared_broker: Any, tmp_path: Path) -> None:
    output = _run_demo(shared_broker, tmp_path, "--orders", "30")
    assert "Traceback" not in output
    for expected in (
        # what a second terminal needs
        f"export BACKLANE_BROKER__URL='{shared_broker.amqp_url}'",
        "status --watch",
        # the dashboard it runs
        "dashboard: http://127.0.0.1:",
        "or on the dashboard's Dead letters page",
        # every pipeline's result
        "orders:  all 30 settled",
        "twice: 0",
        "catalog: 12/12 sections refreshed from the simulator",
        "the catalog provider answered 2 call(s) of its 2 an hour",
        "tracks:  20 deleted tracks removed with their 40 stored objects; 5 tracks not due kept with their 10 objects",
        "products.csv written: 250 products",
        "products.jsonl written: 250 products",
        "staging: acme 8 completed, 1 failed",
        "globex 15 completed, 0 failed",
        "photos most similar to product_photos photo",  # its own nearest first, else the demo fails
        "photos most similar to delivery_photos photo",
        "stale objects deleted under search-images/",
        "beside the prefix kept",
        # every failure explained, and how to requeue it
        "escapes the storage root",
        "answered 422: a scrape batch needs a non-empty list of urls",
        "backlane dead-letters requeue --all --queue staging_acme",
        "backlane dead-letters requeue --all --queue tracks",
    ):
        assert expected in output, f"{expected!r} missing from the demo's output:\n{output}"
    assert (tmp_path / ".backlane" / "demo" / "exports" / "products.csv").exists()


def test_the_demo_on_s3_seeds_reads_and_deletes_every_object_there(shared_broker: Any, tmp_path: Path) -> None:
    """``--storage s3``: the photos, tracks and stale objects are seeded on the private S3 server
    the workers read and delete from (the photos were once seeded in the directory instead, and
    every one failed with "not in s3://...")."""
    output = _run_demo(shared_broker, tmp_path, "--orders", "10", "--storage", "s3")
    assert "BACKLANE_STORAGE__KIND=s3" in output
    for expected in (
        "product_photos 15 vectorized, 1 failed; delivery_photos 8 vectorized, 0 failed",
        "photos most similar to product_photos photo",
        "tracks:  20 deleted tracks removed with their 40 stored objects",
        "stale objects deleted under search-images/",
    ):
        assert expected in output, f"{expected!r} missing from the demo's output:\n{output}"
    assert "is not in s3://" not in output
