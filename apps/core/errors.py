"""The one error shape every JSON endpoint answers with (the REST API and the processor webhook
endpoints alike): ``{"error": {"type", "code", "message", "param"}}``."""

from __future__ import annotations


def error_body(type_: str, code: str, message: str, param: str | None = None) -> dict:
    return {"error": {"type": type_, "code": code, "message": message, "param": param}}
