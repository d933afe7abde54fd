from __future__ import annotations

import io
import json
import logging

from django_tenants.utils import tenant_context

from config.logging import (
    CardNumberRedactionFilter,
    ContextFilter,
    DevFormatter,
    JsonFormatter,
    request_id_var,
)


def capture(formatter: logging.Formatter) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ContextFilter())
    handler.setFormatter(formatter)
    logger = logging.getLogger(f"test.{id(stream)}")
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, stream


def test_json_lines_carry_request_id_and_tenant_schema(in_tenant_a):
    logger, stream = capture(JsonFormatter())
    token = request_id_var.set("req_test_123")
    try:
        logger.info("payment confirmed", extra={"payment": "pay_1"})
    finally:
        request_id_var.reset(token)

    line = json.loads(stream.getvalue())
    assert (line["message"], line["request_id"], line["tenant"], line["payment"]) == (
        "payment confirmed",
        "req_test_123",
        "alpha",
        "pay_1",
    )


def test_dev_lines_are_readable_and_carry_the_same_context(tenant_b, db):
    logger, stream = capture(DevFormatter())
    with tenant_context(tenant_b):
        logger.warning("gateway slow")
    assert "WARNING" in stream.getvalue() and "[beta] [-] " in stream.getvalue()


def test_card_numbers_are_redacted_from_every_part_of_a_log_line(db):
    for formatter in (JsonFormatter(), DevFormatter(), logging.Formatter("%(message)s %(note)s")):
        logger, stream = capture(formatter)
        logger.handlers[0].addFilter(CardNumberRedactionFilter())
        try:
            raise ValueError("No such PaymentMethod: '4242 4242 4242 4242'")
        except ValueError:
            logger.exception(
                "vendor %s invited", "Shop 5555-5555-5555-4444", extra={"note": "card 378282246310005"}
            )

        out = stream.getvalue()
        assert "vendor Shop [card number redacted] invited" in out
        for digits in ("4242 4242 4242 4242", "5555-5555-5555-4444", "378282246310005"):
            assert digits not in out, (formatter, out)


def test_the_settings_put_the_redaction_on_the_console_handler():
    from config import settings

    assert "card_numbers" in settings.LOGGING["handlers"]["console"]["filters"]  # type: ignore[index]


def test_an_incoming_request_id_that_holds_a_card_number_is_replaced(db, host_client):
    response = host_client("alpha.localhost").get("/healthz", HTTP_X_REQUEST_ID="4242-4242-4242-4242")
    sane = host_client("alpha.localhost").get("/healthz", HTTP_X_REQUEST_ID="req_from_the_proxy_1")

    assert response["Request-Id"].startswith("req_") and "4242" not in response["Request-Id"]
    assert sane["Request-Id"] == "req_from_the_proxy_1"


def _handlers_reached(name: str) -> list[logging.Handler]:
    """Every handler a record logged to ``name`` goes through (its logger's, then its parents'
    while the record propagates)."""
    logger: logging.Logger | None = logging.getLogger(name)
    handlers: list[logging.Handler] = []
    while logger is not None:
        handlers.extend(logger.handlers)
        if not logger.propagate:
            break
        logger = logger.parent
    return handlers


def test_djangos_own_loggers_go_through_the_one_redacting_console_handler():
    for name in ("django.server", "django.request", "django.security.csrf"):
        handlers = [h for h in _handlers_reached(name) if not type(h).__module__.startswith("_pytest")]

        assert len(handlers) == 1, (name, handlers)  # no second, unformatted copy
        assert any(isinstance(f, CardNumberRedactionFilter) for f in handlers[0].filters)


def test_the_dev_server_and_request_lines_are_redacted_through_every_handler(db):
    # Django's own calls, as the dev server and the request handler make them.
    calls = [
        (
            "django.server",
            '"%s" %s %s',
            ("GET /api/v1/payments?customer=4242424242424242 HTTP/1.1", "400", "191"),
        ),
        ("django.request", "%s: %s", ("Bad Request", "/api/v1/payments/4242 4242 4242 4242")),
        (
            "django.server",
            '"%s" %s %s',
            ("GET /admin/customers/customer/?q=4242424242424242 HTTP/1.1", "200", "9"),
        ),
        # as a URL carries it: encoded spaces, no-break spaces, full-width digits
        (
            "django.server",
            '"%s" %s %s',
            ("GET /api/v1/payments?customer=4242+4242+4242+4242 HTTP/1.1", "400", "191"),
        ),
        ("django.request", "%s: %s", ("Bad Request", "/api/v1/payments/4242%C2%A04242%C2%A04242%C2%A04242")),
        (
            "django.server",
            '"%s" %s %s',
            ("GET /api/v1/payments?customer=" + "%EF%BC%94%EF%BC%92" * 8 + " HTTP/1.1", "400", "9"),
        ),
    ]
    for name, msg, args in calls:
        stream = io.StringIO()
        foreign = logging.StreamHandler(stream)  # a handler no setting of ours configured
        foreign.setFormatter(logging.Formatter("%(message)s"))
        logger = logging.getLogger(name)
        logger.addHandler(foreign)
        try:
            record = logger.makeRecord(name, logging.WARNING, __file__, 1, msg, args, None)
            logger.handle(record)
            lines = [stream.getvalue()] + [h.format(record) for h in _handlers_reached(name)]
        finally:
            logger.removeHandler(foreign)

        for line in lines:
            assert "[card number redacted]" in line, line
            assert "4242" not in line, line


def test_an_exception_text_is_redacted_for_every_handler(db):
    stream = io.StringIO()
    foreign = logging.StreamHandler(stream)
    logger = logging.getLogger("test.foreign_handler")
    logger.addHandler(foreign)
    logger.propagate = False
    try:
        raise ValueError("No such customer: 5555 5555 5555 4444")
    except ValueError:
        logger.exception("lookup failed")
    finally:
        logger.removeHandler(foreign)

    assert "lookup failed" in stream.getvalue()
    assert "5555 5555 5555 4444" not in stream.getvalue()
