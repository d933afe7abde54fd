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
