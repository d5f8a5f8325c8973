"""The dashboard's pure rules: where it may listen, logins, CSRF tokens, caching, throughput."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
from pydantic import SecretStr

from backlane.operations.dashboard.cache import Cached, Throughput
from backlane.operations.dashboard.security import (
    bind_problem,
    credentials_ok,
    cross_site,
    csrf_ok,
    host_allowed,
    is_loopback,
    new_csrf_token,
    notice_of,
    sign_notice,
)
from backlane.operations.dashboard.views import next_tick
from backlane.problems import EXIT_CONFIG
from backlane.settings import DashboardSettings


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost", "LOCALHOST"])
def test_loopback_addresses(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.5", "dashboard.example", "192.168.1.1"])
def test_addresses_others_can_reach(host: str) -> None:
    assert not is_loopback(host)


def test_a_reachable_address_needs_a_password() -> None:
    assert bind_problem(DashboardSettings()) is None
    problem = bind_problem(DashboardSettings(host="0.0.0.0"))
    assert problem is not None and problem.status == EXIT_CONFIG
    assert "BACKLANE_DASHBOARD__PASSWORD" in problem.line and "\n" not in problem.line
    assert bind_problem(DashboardSettings(host="0.0.0.0", password=SecretStr("s3cret-s3cret"))) is None


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_credentials() -> None:
    assert credentials_ok(_basic("backlane", "pw:with:colons"), "backlane", "pw:with:colons")
    assert not credentials_ok(_basic("backlane", "wrong"), "backlane", "pw")
    assert not credentials_ok(_basic("admin", "pw"), "backlane", "pw")
    assert not credentials_ok(None, "backlane", "pw")
    assert not credentials_ok("Bearer abc", "backlane", "pw")
    assert not credentials_ok("Basic !!!not-base64", "backlane", "pw")


def test_csrf_tokens_must_match_and_be_present() -> None:
    token = new_csrf_token()
    assert csrf_ok(token, token)
    assert not csrf_ok("abc", "abc")  # equal, but not issued by this process
    assert not csrf_ok(token, token + "x")
    bound = new_csrf_token("Basic YWxpY2U6cHc=")
    assert csrf_ok(bound, bound, "Basic YWxpY2U6cHc=")
    assert not csrf_ok(bound, bound, "Basic Ym9iOnB3")  # issued to another login
    assert not csrf_ok(None, "abc")
    assert not csrf_ok("abc", None)
    assert not csrf_ok("", "")


def test_cached_reads_once_per_period() -> None:
    now = [0.0]
    reads: list[int] = []
    cached = Cached(lambda: reads.append(1) or len(reads), seconds=5, clock=lambda: now[0])
    assert [cached.get() for _ in range(10)] == [1] * 10
    now[0] = 4.9
    assert cached.get() == 1
    now[0] = 5.0
    assert cached.get() == 2 and len(reads) == 2


def test_throughput_per_minute() -> None:
    now = [100.0]
    rate = Throughput(clock=lambda: now[0])
    assert rate.per_minute("orders", 10) is None  # one sample: unknown
    now[0] = 130.0
    assert rate.per_minute("orders", 40) == pytest.approx(60.0)
    assert rate.per_minute("orders", None) is None
    now[0] = 160.0
    assert rate.per_minute("orders", 40) == pytest.approx(30.0 * 60 / 60)


def test_next_tick_follows_the_cron_spec() -> None:
    now = datetime(2026, 11, 25, 10, 7, 30, tzinfo=UTC)
    assert next_tick("*/5 * * * *", now) == datetime(2026, 11, 25, 10, 10, tzinfo=UTC)
    assert next_tick("* * * * *", now) == datetime(2026, 11, 25, 10, 8, tzinfo=UTC)


def test_items_finished_are_read_from_the_workers_counters() -> None:
    from backlane.operations.dashboard.views import finished_from_metrics

    text = """# HELP backlane_items_total Per-item attempts by outcome and error class.
# TYPE backlane_items_total counter
backlane_items_total{error_class="",outcome="succeeded",pipeline="orders"} 40.0
backlane_items_total{error_class="permanent",outcome="failed",pipeline="orders"} 2.0
backlane_items_total{error_class="transient",outcome="retry",pipeline="orders"} 9.0
backlane_items_total{error_class="",outcome="succeeded",pipeline="tracks"} 5.0
# HELP dramatiq_messages_total The total number of messages processed.
# TYPE dramatiq_messages_total counter
dramatiq_messages_total{actor_name="process_orders",queue_name="orders"} 51.0
"""
    assert finished_from_metrics(text) == {"orders": 42.0, "tracks": 5.0}


@pytest.mark.parametrize("password", ["", "short", "elevenchars"])
def test_a_blank_or_short_password_refuses_to_start(password: str) -> None:
    for host in ("127.0.0.1", "0.0.0.0"):
        problem = bind_problem(DashboardSettings(host=host, password=SecretStr(password)))
        assert problem is not None and problem.status == EXIT_CONFIG
        assert "BACKLANE_DASHBOARD__PASSWORD" in problem.line
        assert not password or password not in problem.line  # never shown


@pytest.mark.parametrize(
    "host", ["127.0.0.1:8090", "localhost", "LOCALHOST:1", "[::1]:8090", "ops.example.com", "ops.example.com:443"]
)
def test_hosts_served(host: str) -> None:
    assert host_allowed(host, ("ops.example.com",))


@pytest.mark.parametrize(
    "host",
    [
        None,
        "",
        "evil.example",
        "evil.example:8090",
        "127.0.0.1.evil.example",
        "127.0.0.1:x",
        "a@127.0.0.1",
        "[::1",
        "localhost/x",
    ],
)
def test_hosts_refused(host: str | None) -> None:
    assert not host_allowed(host, ("ops.example.com",))


def test_cross_site_posts() -> None:
    assert cross_site("127.0.0.1:8090", None, None) is None  # curl: the CSRF token decides
    assert cross_site("127.0.0.1:8090", "http://127.0.0.1:8090", "same-origin") is None
    assert cross_site("127.0.0.1:8090", None, "none") is None  # typed in the address bar
    assert cross_site("127.0.0.1:8090", "https://evil.example", None)
    assert cross_site("127.0.0.1:8090", "null", None)
    assert cross_site("127.0.0.1:8090", None, "cross-site")
    assert cross_site("127.0.0.1:8090", None, "same-site")  # a sibling subdomain is another site too
    assert cross_site("127.0.0.1:8090", "http://127.0.0.1:9999", "same-origin")


def test_notices_only_when_signed() -> None:
    assert notice_of("requeued 1", sign_notice("requeued 1")) == "requeued 1"
    assert notice_of("you were hacked", None) is None
    assert notice_of("you were hacked", sign_notice("requeued 1")) is None


def test_an_origin_must_have_the_dashboards_scheme() -> None:
    assert cross_site("127.0.0.1:8090", "http://127.0.0.1:8090", None, scheme="http") is None
    assert cross_site("ops.example.com", "https://ops.example.com", "same-origin", scheme="https") is None
    assert cross_site("127.0.0.1:8090", "https://127.0.0.1:8090", None, scheme="http")
