from __future__ import annotations

import httpx
import pydantic
import pytest
import sqlalchemy.exc

from backlane.errors import (
    MalformedMessage,
    PermanentError,
    RateLimited,
    TransientError,
    classify,
    classify_response,
    delay_ms,
)
from contracts.orders import OrderCreated


def response(status: int, body: str = "", headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, text=body, headers=headers, request=httpx.Request("POST", "http://api/orders"))


def test_success_is_no_error() -> None:
    assert classify_response(response(201)) is None


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408])
def test_server_errors_are_transient(status: int) -> None:
    assert type(classify_response(response(status))) is TransientError


@pytest.mark.parametrize("status", [400, 401, 404, 409, 422])
def test_client_errors_are_permanent(status: int) -> None:
    error = classify_response(response(status, '{"error": "no such thing"}'))
    assert isinstance(error, PermanentError)
    assert "no such thing" in error.reason and str(status) in error.reason


def test_retry_after_header_is_the_delay() -> None:
    error = classify_response(response(429, headers={"Retry-After": "17"}))
    assert isinstance(error, RateLimited) and error.delay_seconds == 17


def test_wait_for_x_seconds_body_is_the_delay() -> None:
    error = classify_response(response(429, '{"message": "wait for 1234.5 seconds"}'))
    assert isinstance(error, RateLimited) and delay_ms(error) == 1_234_500


def test_network_errors_and_timeouts_are_transient() -> None:
    request = httpx.Request("GET", "http://api")
    assert isinstance(classify(httpx.ConnectError("refused", request=request)), TransientError)
    assert isinstance(classify(httpx.ReadTimeout("slow", request=request)), TransientError)


def test_validation_errors_are_malformed_messages_with_the_field() -> None:
    with pytest.raises(pydantic.ValidationError) as raised:
        OrderCreated.model_validate({"version": 2, "order_id": 1})
    error = classify(raised.value)
    assert isinstance(error, MalformedMessage)
    assert "version" in error.reason


def test_database_unavailable_is_transient() -> None:
    exc = sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("connection refused"))
    assert isinstance(classify(exc), TransientError)


def test_unknown_exceptions_are_transient_so_work_is_never_dropped() -> None:
    assert isinstance(classify(ZeroDivisionError("oops")), TransientError)


# -- one vocabulary ---------------------------------------------------------------


def _exception_classes() -> list[type[BaseException]]:
    import importlib
    import pkgutil

    import backlane

    found = []
    for info in pkgutil.walk_packages(backlane.__path__, "backlane."):
        module = importlib.import_module(info.name)
        found += [
            obj
            for obj in vars(module).values()
            if isinstance(obj, type) and issubclass(obj, BaseException) and obj.__module__ == module.__name__
        ]
    return found


def test_every_error_backlane_defines_is_a_backlane_error() -> None:
    from backlane.errors import BacklaneError

    strays = [
        f"{cls.__module__}.{cls.__qualname__}" for cls in _exception_classes() if not issubclass(cls, BacklaneError)
    ]
    assert not strays, f"derive these from backlane.errors.BacklaneError: {strays}"


def test_errors_keep_the_names_they_were_imported_by() -> None:
    from backlane import errors
    from backlane.core import processing, registry
    from backlane.messaging import broker_faults, publishing
    from backlane.settings import SettingsError

    assert SettingsError is errors.SettingsError
    assert registry.RegistrationError is errors.RegistrationError
    assert processing.FinalFailure is errors.FinalFailure
    assert publishing.UnroutableMessages is errors.UnroutableMessages
    assert broker_faults.redact_url is errors.redact_url


def test_setup_errors_stop_a_process_and_unroutable_messages_are_retried() -> None:
    from backlane.errors import (
        Problem,
        RegistrationError,
        SettingsError,
        SetupError,
        UnroutableMessages,
    )
    from backlane.problems import broker_refused

    for error in (SettingsError("BACKLANE_X: bad"), RegistrationError("duplicate")):
        assert isinstance(error, SetupError) and classify(error) is error
    unroutable = UnroutableMessages({"m1": "NO_ROUTE"})
    assert isinstance(classify(unroutable), TransientError) and unroutable.kind == "unroutable"
    assert unroutable.reason == "1 message(s) not accepted by RabbitMQ (m1: NO_ROUTE)"
    refused = broker_refused("amqp://guest:hunter2@h:5672/%2F", "ACCESS_REFUSED")
    assert isinstance(refused, Problem) and classify(refused) is refused
    assert "hunter2" not in refused.reason and "(ACCESS_REFUSED)" in refused.line
    assert SettingsError("one line").problems == ["one line"]
