"""OAuth2 client credentials (backlane/clients/auth.py) against the simulator's real token endpoint
(devtools/simulator/identity.py) over loopback HTTP; the client's clock is injected."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from backlane.clients.auth import ClientCredentials, client_credentials
from backlane.clients.http import request_json
from backlane.errors import CredentialsRejected, RateLimited, TransientError, Unavailable, classify
from backlane.settings import ApiSettings, OAuthSettings, SettingsError, describe_validation
from devtools.simulator import Simulator, identity, register_route, unregister_route
from devtools.simulator.identity import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET

SETTING = "BACKLANE_ORDERS__OAUTH"


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator() as simulator:
        yield simulator


def oauth(sim: Simulator, **changes: Any) -> OAuthSettings:
    values: dict[str, Any] = {
        "token_url": f"{sim.url}/connect/token",
        "client_id": DEMO_CLIENT_ID,
        "client_secret": DEMO_CLIENT_SECRET,
        "scope": "orders.api",
        "renew_margin_seconds": 10,
        "timeout": 2,
    }
    return OAuthSettings.model_validate({**values, **changes})


def credentials(sim: Simulator, clock: Clock | None = None, **changes: Any) -> ClientCredentials:
    return ClientCredentials(oauth(sim, **changes), SETTING, now=clock or Clock())


def stats(sim: Simulator) -> dict[str, Any]:
    return dict(sim.state.stats()["identity"])


def token_requests(sim: Simulator) -> int:
    return sum(stats(sim)["token_requests"].values())


# -- the client ----------------------------------------------------------------------------------


def test_threads_that_need_a_token_at_once_send_one_request(sim: Simulator) -> None:
    sim.configure(latency_ms=200)  # every thread arrives while the first request is in flight
    auth = credentials(sim)
    tokens: list[str] = []
    start = threading.Barrier(16)

    def take() -> None:
        start.wait()
        tokens.append(auth.token().value)

    threads = [threading.Thread(target=take) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(tokens) == 16 and len(set(tokens)) == 1
    assert token_requests(sim) == 1 and auth.requests == 1


def test_a_token_is_renewed_its_margin_before_it_expires(sim: Simulator) -> None:
    identity.configure(sim.state, token_lifetime_seconds=100)
    clock = Clock()
    auth = credentials(sim, clock, renew_margin_seconds=10)
    first = auth.token()

    clock.t += 89.9
    assert auth.token() is first
    clock.t += 0.1
    second = auth.token()

    assert second.value != first.value
    assert token_requests(sim) == 2
    clock.t += 89.9
    assert auth.token() is second and token_requests(sim) == 2


def test_the_margin_is_at_most_half_the_lifetime(sim: Simulator) -> None:
    identity.configure(sim.state, token_lifetime_seconds=4)
    clock = Clock()
    auth = credentials(sim, clock, renew_margin_seconds=60)  # larger than the lifetime itself
    first = auth.token()
    clock.t += 1.9
    assert auth.token() is first
    clock.t += 0.1
    assert auth.token() is not first and token_requests(sim) == 2


def api_client(sim: Simulator, auth: ClientCredentials) -> httpx.Client:
    return httpx.Client(base_url=sim.url, auth=auth, timeout=5)


def test_a_401_renews_the_token_once_and_the_request_succeeds(sim: Simulator) -> None:
    identity.configure(sim.state, required={"products": "products.api"}, token_lifetime_seconds=3600)
    auth = credentials(sim, scope="products.api")
    http = api_client(sim, auth)
    assert request_json(http, "GET", "/products", params={"page": 1})["page"] == 1
    # The identity server's clock jumps past the token's hour: the API refuses the token the client
    # still believes in, the client fetches one fresh token and the same request goes through.
    identity.configure(sim.state, clock_offset_seconds=7200)

    assert request_json(http, "GET", "/products", params={"page": 2})["page"] == 2
    assert token_requests(sim) == 2
    assert stats(sim)["api_refusals"] == {"expired": 1}


def test_a_second_401_to_a_fresh_token_fails_naming_the_scope(sim: Simulator) -> None:
    identity.configure(sim.state, required={"products": "products.api"})
    auth = credentials(sim, scope="orders.api")  # a valid token, of the wrong API
    http = api_client(sim, auth)

    with pytest.raises(CredentialsRejected) as failure:
        request_json(http, "GET", "/products")

    assert f"{SETTING}__SCOPE (orders.api)" in failure.value.reason
    assert "\n" not in failure.value.reason
    assert token_requests(sim) == 2, "one token, then exactly one renewal"
    assert stats(sim)["api_refusals"] == {"insufficient_scope": 2}
    assert isinstance(classify(failure.value), Unavailable), "an item waits, its retries untouched"


@pytest.mark.parametrize("method", ["basic", "post"])
def test_a_wrong_secret_is_one_line_naming_the_settings(sim: Simulator, method: str) -> None:
    auth = credentials(sim, client_secret="not-the-secret-123", auth_method=method)

    with pytest.raises(CredentialsRejected) as failure:
        auth.token()

    line = failure.value.reason
    assert f"{SETTING}__CLIENT_ID" in line and f"{SETTING}__CLIENT_SECRET" in line
    assert "invalid_client" in line and "\n" not in line
    assert "not-the-secret-123" not in line and "not-the-secret-123" not in repr(failure.value)
    assert stats(sim)["refused"] == {"invalid_client": 1}


def test_an_unknown_scope_names_the_scope_setting(sim: Simulator) -> None:
    with pytest.raises(CredentialsRejected, match=rf"invalid_scope.*{SETTING}__SCOPE \(admin.api\)"):
        credentials(sim, scope="admin.api").token()


def test_an_identity_server_down_is_transient_and_waiting_threads_share_the_failure(sim: Simulator) -> None:
    sim.configure(outage=["identity"], latency_ms=300)
    auth = credentials(sim)
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def take() -> None:
        start.wait()
        try:
            auth.token()
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=take) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(errors) == 8 and all(type(e) is TransientError for e in errors)
    assert "answered 503" in str(errors[0])
    assert sim.state.stats()["requests"]["identity.token"] == 1, "one request, its failure shared"
    sim.configure(outage=[], latency_ms=0)
    assert auth.token().value, "a thread that comes after the failure tries again"
    assert sim.state.stats()["requests"]["identity.token"] == 2


def test_the_token_endpoint_unreachable_slow_or_limited_is_transient(sim: Simulator) -> None:
    url = sim.url
    clock = Clock()
    sim.stop()
    with pytest.raises(TransientError, match="unreachable: ConnectError"):
        ClientCredentials(oauth(sim), SETTING, now=clock).token()
    sim.start()
    sim.configure(latency_ms=600)
    with pytest.raises(TransientError, match="unreachable: ReadTimeout"):
        credentials(sim, Clock(), timeout=0.2).token()
    sim.configure(latency_ms=0, rate_limits={"identity": [1, 60]})
    route = register_route("POST", r"/limited-token", "identity", "identity", identity.token, name="limited")
    try:
        limited = ClientCredentials(oauth(sim, token_url=f"{url}/limited-token"), SETTING, now=Clock())
        limited.token()
        with pytest.raises(RateLimited):
            ClientCredentials(oauth(sim, token_url=f"{url}/limited-token"), SETTING, now=Clock()).token()
    finally:
        unregister_route(route)


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ((200, {"token_type": "Bearer", "expires_in": 60}), "without a usable access_token"),
        ((200, {"access_token": "a b\nc", "token_type": "Bearer"}), "without a usable access_token"),
        ((200, {"access_token": "x" * 20_000, "token_type": "Bearer"}), "without a usable access_token"),
        ((200, {"access_token": "abc", "token_type": "mac"}), "of type 'mac', not Bearer"),
        ((200, ["not", "an", "object"]), "without a JSON token reply"),
        ((500, {"error": "server_error"}), "answered 500"),
        ((404, {"error": "not found"}), f"is {SETTING}__TOKEN_URL the identity server's token endpoint"),
        ((400, {"error": "unsupported_grant_type"}), "must allow the client_credentials grant"),
        ((400, {"error": "invalid_client\r\nX-Injected: 1"}), "(HTTP 400, 400)"),
    ],
)
def test_hostile_token_replies_are_classified_and_never_echoed(
    sim: Simulator, reply: tuple[int, Any], expected: str
) -> None:
    route = register_route("POST", r"/hostile-token", "identity", None, lambda *a: (*reply, {}), name="hostile")
    try:
        auth = ClientCredentials(oauth(sim, token_url=f"{sim.url}/hostile-token"), SETTING, now=Clock())
        with pytest.raises((TransientError, CredentialsRejected)) as failure:
            auth.token()
    finally:
        unregister_route(route)
    assert expected in failure.value.reason
    assert "\n" not in failure.value.reason and "xxxxxxxx" not in failure.value.reason


@pytest.mark.parametrize(
    ("expires_in", "renewed_after"), [(None, 290.0), (-5, 0.5), ("600", 590.0), (1e308, 86390.0), ("soon", 290.0)]
)
def test_a_lifetime_the_server_names_badly_is_bounded(sim: Simulator, expires_in: Any, renewed_after: float) -> None:
    body: dict[str, Any] = {"access_token": "opaque-token", "token_type": "bearer"}
    if expires_in is not None:
        body["expires_in"] = expires_in
    route = register_route("POST", r"/odd-token", "identity", None, lambda *a: (200, body, {}), name="odd")
    try:
        clock = Clock()
        auth = ClientCredentials(oauth(sim, token_url=f"{sim.url}/odd-token"), SETTING, now=clock)
        first = auth.token()
        assert first.renew_at == pytest.approx(clock.t + renewed_after)
    finally:
        unregister_route(route)


def test_neither_the_secret_nor_the_token_shows_in_a_repr(sim: Simulator) -> None:
    auth = credentials(sim)
    token = auth.token()
    for text in (repr(auth), str(auth), repr(token), repr(oauth(sim)), str(oauth(sim).model_dump())):
        assert DEMO_CLIENT_SECRET not in text and token.value not in text


def test_one_credentials_per_process_for_equal_settings(sim: Simulator) -> None:
    first = client_credentials(oauth(sim), SETTING)
    assert first is client_credentials(oauth(sim).model_copy(), SETTING)
    assert first is not client_credentials(oauth(sim, scope="products.api"), SETTING)
    assert client_credentials(OAuthSettings(), SETTING) is None


# -- settings --------------------------------------------------------------------------------------


def settings_problems(**values: Any) -> list[str]:
    try:
        ApiSettings.model_validate(values)
    except Exception as exc:
        return describe_validation(exc, ("orders",))  # type: ignore[arg-type]
    return []


def test_a_token_url_without_its_client_is_named() -> None:
    [problem] = settings_problems(oauth={"token_url": "https://id.example.com/connect/token"})
    assert problem.startswith("BACKLANE_ORDERS__OAUTH: ") and "client_id and client_secret" in problem


def test_a_static_key_and_oauth_at_once_are_refused() -> None:
    oauth_values = {"token_url": "https://id.example.com/connect/token", "client_id": "a", "client_secret": "s"}
    [problem] = settings_problems(api_key="static", oauth=oauth_values)
    assert "either api_key" in problem


def test_bad_oauth_values_are_named_without_their_secret() -> None:
    problems = settings_problems(oauth={"token_url": "ftp://x", "client_id": "a", "client_secret": "s", "scope": 'a"b'})
    assert any(p.startswith("BACKLANE_ORDERS__OAUTH__TOKEN_URL: not an http(s) URL") for p in problems)
    assert any(p.startswith("BACKLANE_ORDERS__OAUTH__SCOPE") for p in problems)
    assert "ftp://x" not in " ".join(problems)
    assert isinstance(SettingsError("x"), Exception)


def test_the_static_api_key_still_works(sim: Simulator) -> None:
    from backlane.clients.http import api_client

    settings = ApiSettings(base_url=sim.url, api_key=SecretStr("static-key"))
    http = api_client(settings, "BACKLANE_ORDERS")
    assert http.headers["Authorization"] == "Bearer static-key" and http.auth is None


# -- the simulated identity server -----------------------------------------------------------------


def post_token(sim: Simulator, **kwargs: Any) -> httpx.Response:
    return httpx.post(f"{sim.url}/connect/token", timeout=5, **kwargs)


def claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def test_the_token_endpoint_issues_expiring_jwts_with_scope_and_client(sim: Simulator) -> None:
    identity.configure(sim.state, token_lifetime_seconds=60)
    reply = post_token(
        sim, data={"grant_type": "client_credentials", "scope": "orders.api"}, auth=(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)
    )
    assert reply.status_code == 200 and reply.headers["Cache-Control"] == "no-store"
    body = reply.json()
    assert (body["token_type"], body["expires_in"], body["scope"]) == ("Bearer", 60, "orders.api")
    decoded = claims(body["access_token"])
    assert decoded["exp"] - decoded["iat"] in (60, 61)  # exp is rounded up to a whole second
    assert (decoded["client_id"], decoded["scope"]) == (DEMO_CLIENT_ID, ["orders.api"])
    assert stats(sim)["token_requests"] == {DEMO_CLIENT_ID: 1} and stats(sim)["issued"] == {DEMO_CLIENT_ID: 1}


def test_the_token_endpoint_answers_rfc_6749_errors(sim: Simulator) -> None:
    grant = {"grant_type": "client_credentials"}
    wrong_basic = post_token(sim, data=grant, auth=(DEMO_CLIENT_ID, "wrong"))
    assert wrong_basic.status_code == 401 and wrong_basic.headers["WWW-Authenticate"] == "Basic"
    assert wrong_basic.json()["error"] == "invalid_client"
    wrong_form = post_token(sim, data={**grant, "client_id": "nobody", "client_secret": "x"})
    assert (wrong_form.status_code, wrong_form.json()["error"]) == (400, "invalid_client")
    scope = post_token(sim, data={**grant, "scope": "admin"}, auth=(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET))
    assert (scope.status_code, scope.json()["error"]) == (400, "invalid_scope")
    password = post_token(sim, data={"grant_type": "password"}, auth=(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET))
    assert password.json()["error"] == "unsupported_grant_type"
    as_json = post_token(sim, json=grant, auth=(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET))
    assert as_json.json()["error"] == "invalid_request"
    both = post_token(sim, data={**grant, "client_id": DEMO_CLIENT_ID}, auth=(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET))
    assert both.json()["error"] == "invalid_request"
    assert httpx.get(f"{sim.url}/connect/token", timeout=5).status_code == 405
    assert stats(sim)["token_requests"] == {DEMO_CLIENT_ID: 5, "nobody": 1}


def test_a_protected_api_wants_a_valid_unexpired_token_with_its_scope(sim: Simulator) -> None:
    identity.configure(sim.state, required={"products": "products.api"}, token_lifetime_seconds=60)
    granted = post_token(
        sim,
        data={"grant_type": "client_credentials", "scope": "products.api"},
        auth=(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET),
    ).json()["access_token"]
    other = post_token(
        sim, data={"grant_type": "client_credentials", "scope": "orders.api"}, auth=(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)
    ).json()["access_token"]

    def get(token: str | None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.get(f"{sim.url}/products", headers=headers, timeout=5)

    assert get(granted).status_code == 200
    missing = get(None)
    assert missing.status_code == 401 and missing.headers["WWW-Authenticate"].startswith("Bearer")
    assert get(other).headers["WWW-Authenticate"] == 'Bearer error="insufficient_scope", scope="products.api"'
    forged = granted[:-4] + ("AAAA" if not granted.endswith("AAAA") else "BBBB")
    assert "invalid_token" in get(forged).headers["WWW-Authenticate"]
    assert httpx.get(f"{sim.url}/health", timeout=5).status_code == 401, "health behind the token too"
    identity.configure(sim.state, clock_offset_seconds=61)
    assert 'error_description="expired"' in get(granted).headers["WWW-Authenticate"]
    assert stats(sim)["api_refusals"] == {"missing": 2, "insufficient_scope": 1, "invalid": 1, "expired": 1}


def test_bad_identity_knobs_are_refused(sim: Simulator) -> None:
    for bad in ({"token_lifetime_seconds": 0}, {"required": ["orders"]}, {"nope": 1}, {"clients": {"a": {}}}):
        reply = httpx.post(f"{sim.url}/_admin/identity", json=bad, timeout=5)
        assert reply.status_code == 400, bad
    assert stats(sim)["token_lifetime_seconds"] == 3600


def test_the_documented_admin_call_configures_the_identity_server(sim: Simulator) -> None:
    """docs/identity.md's curl example, sent as it is written (to this simulator's port)."""
    import shlex

    from tests import docs

    argv = shlex.split(docs.block("docs/identity.md", "sh", "/_admin/identity"))
    assert argv[:3] == ["curl", "-X", "POST"]
    url = argv[3].replace("http://127.0.0.1:8085", sim.url)
    reply = httpx.post(url, content=argv[argv.index("-d") + 1], timeout=5)

    assert reply.status_code == 200
    assert (stats(sim)["required"], stats(sim)["token_lifetime_seconds"]) == ({"orders": "orders.api"}, 60)
