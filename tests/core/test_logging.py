from __future__ import annotations

import io
import json
import logging

from django_tenants.utils import tenant_context

from config.logging import ContextFilter, DevFormatter, JsonFormatter, request_id_var


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
