"""Structured logging: every line carries the request id and the tenant schema, and no line
carries a card number (redacted by ``apps.core.pan``'s rule: a second line of defence behind the
refusals at the edge).

The redaction is done where every record is made (``logging_configure`` installs a record
factory), so it holds for every handler, ours or not: Django's own ``django.server`` and
``django.request`` loggers, a third party's handler, pytest's capture. The handlers' filter
(``CardNumberRedactionFilter``) adds what a factory cannot see: extras, given after a record is
made."""

from __future__ import annotations

import contextvars
import json
import logging
import logging.config
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import unquote_plus

from apps.core.pan import find_card_number, redact_card_numbers


def log_text_redact(text: str) -> str:
    """``text`` with its card numbers redacted, as written and as a URL would decode it (a path
    or query logged as requested: ``4242+4242+...``, ``%C2%A0``): when only the decoded text
    holds one, the line is logged decoded, with it redacted."""
    clean = redact_card_numbers(text)
    if "%" in clean or "+" in clean:
        decoded = unquote_plus(clean)
        if decoded != clean and find_card_number(decoded):
            return redact_card_numbers(decoded)
    return clean


request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

_RESERVED = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "request_id", "tenant"}


def current_schema() -> str:
    try:
        from django.db import connection

        return getattr(connection, "schema_name", "-") or "-"
    except Exception:  # logging must never raise, e.g. before settings are ready
        return "-"


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get()
        if not hasattr(record, "tenant"):
            record.tenant = current_schema()
        return True


def record_redact(record: logging.LogRecord) -> None:
    """Redact card numbers from ``record``'s message (its arguments merged in) and its exception
    text, in place. Never raises."""
    try:
        message = record.getMessage()
    except Exception:  # a bad format string: leave the record to the formatter's own report
        message = None
    if message is not None:
        clean = log_text_redact(message)
        if clean != message:
            record.msg, record.args = clean, ()
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = log_text_redact(record.exc_text)


# Set on a record the factory redacted, so the handlers' filter does not redact its message again.
_REDACTED_AT_CREATION = "_card_numbers_redacted"


def _redacting_factory(make: Callable[..., logging.LogRecord]) -> Callable[..., logging.LogRecord]:
    def factory(*args, **kwargs) -> logging.LogRecord:
        record = make(*args, **kwargs)
        record_redact(record)
        setattr(record, _REDACTED_AT_CREATION, True)
        return record

    factory.redacts_card_numbers = True  # type: ignore[attr-defined]
    return factory


def logging_configure(config: dict) -> None:
    """``LOGGING_CONFIG``: apply ``config`` and make every log record redacted as it is made.
    Idempotent (Django and Celery may both configure logging)."""
    logging.config.dictConfig(config)
    make = logging.getLogRecordFactory()
    if not getattr(make, "redacts_card_numbers", False):
        logging.setLogRecordFactory(_redacting_factory(make))


class CardNumberRedactionFilter(logging.Filter):
    """Redacts card numbers from the message (its arguments merged in), string extras and the
    exception text. Never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, _REDACTED_AT_CREATION, False):  # not made by the redacting factory
            record_redact(record)
        for name, value in _extras(record).items():
            if isinstance(value, str):
                setattr(record, name, log_text_redact(value))
        return True


def _exception_text(formatter: logging.Formatter, record: logging.LogRecord) -> str:
    return record.exc_text or formatter.formatException(record.exc_info)  # type: ignore[arg-type]


def _extras(record: logging.LogRecord) -> dict:
    return {k: v for k, v in record.__dict__.items() if k not in _RESERVED and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
            "tenant": getattr(record, "tenant", "-"),
        }
        payload.update(_extras(record))
        if record.exc_info:
            payload["exc"] = _exception_text(self, record)
        return log_text_redact(json.dumps(payload, default=str))


class DevFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        extras = " ".join(f"{k}={v}" for k, v in _extras(record).items())
        line = (
            f"{ts} {record.levelname:<7} [{getattr(record, 'tenant', '-')}] "
            f"[{getattr(record, 'request_id', '-')}] {record.name}: {record.getMessage()}"
        )
        if extras:
            line += f"  {extras}"
        if record.exc_info:
            line += "\n" + _exception_text(self, record)
        return log_text_redact(line)
