"""A stateful Stripe Connect at the HTTP layer, for fault tests of the funds flow.

It answers what the official SDK sends through ``requests`` (via ``responses``) with Stripe's own
example objects (fixtures/), and behaves as Stripe documents where the tests need it:

- a POST with an ``Idempotency-Key`` seen in the last 24 hours gets the first answer again, and
  makes nothing new; after 24 hours the key is forgotten (Stripe prunes keys after 24 h);
- list endpoints (``GET /v1/transfers?destination=&transfer_group=``, ``GET /v1/payouts`` with
  ``Stripe-Account``, ``GET /v1/transfers/<id>/reversals``) return what exists, newest first.

Faults are queued per operation (``fault("transfer_create", "lost")``): ``lost`` does the work,
then the answer is lost (a read timeout); ``down`` fails before Stripe is reached (connection
refused). Every request records how many atomic blocks were open on the test's database
connection beyond the test's own (``depths``), so a test can prove no transaction was open
across a call.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import requests
import responses
from django.db import connection

FIXTURES = Path(__file__).parent / "fixtures"
API = "https://stripe.test"
KEY_TTL_SECONDS = 24 * 3600


def _fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def _form(request: Any) -> dict[str, str]:
    body = request.body
    return dict(parse_qsl(body.decode() if isinstance(body, bytes) else (body or "")))


def _metadata(form: dict[str, str]) -> dict[str, str]:
    return {k[len("metadata[") : -1]: v for k, v in form.items() if k.startswith("metadata[")}


class FakeConnect:
    def __init__(self, rsps: responses.RequestsMock):
        self.baseline = len(connection.atomic_blocks)
        self.depths: list[tuple[str, int]] = []
        self.transfers: list[dict[str, Any]] = []
        self.payouts: list[dict[str, Any]] = []  # each with "_account"
        self.reversals: list[dict[str, Any]] = []
        self.faults: dict[str, list[str]] = {}
        self._keys: dict[str, tuple[float, dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        transfers = re.compile(rf"^{re.escape(API)}/v1/transfers(\?.*)?$")
        reversals = re.compile(rf"^{re.escape(API)}/v1/transfers/(?P<id>[^/?]+)/reversals(\?.*)?$")
        payouts = re.compile(rf"^{re.escape(API)}/v1/payouts(\?.*)?$")
        rsps.add_callback(responses.POST, transfers, callback=self._transfer_create)
        rsps.add_callback(responses.GET, transfers, callback=self._transfer_list)
        rsps.add_callback(responses.POST, reversals, callback=self._reversal_create)
        rsps.add_callback(responses.GET, reversals, callback=self._reversal_list)
        rsps.add_callback(responses.POST, payouts, callback=self._payout_create)
        rsps.add_callback(responses.GET, payouts, callback=self._payout_list)

    def fault(self, operation: str, *kinds: str) -> None:
        self.faults.setdefault(operation, []).extend(kinds)

    # ----------------------------------------------------------------- plumbing

    def _enter(self, operation: str) -> str | None:
        self.depths.append((operation, len(connection.atomic_blocks) - self.baseline))
        queued = self.faults.get(operation) or []
        kind = queued.pop(0) if queued else None
        if kind == "down":
            raise requests.exceptions.ConnectionError("connection refused (fake)")
        return kind

    def _idempotent(self, request: Any, operation: str, make) -> tuple[int, dict, str]:
        kind = self._enter(operation)
        key = request.headers.get("Idempotency-Key")
        now = time.time()
        seen = self._keys.get(key) if key else None
        if seen is not None and now - seen[0] < KEY_TTL_SECONDS:
            body = seen[1]
        else:
            body = make(_form(request))
            if key:
                self._keys[key] = (now, body)
        if kind == "lost":
            raise requests.exceptions.ReadTimeout("read timed out (fake): the answer was lost")
        return 200, {"Request-Id": f"req_{next(self._ids)}"}, json.dumps(body)

    def _list(self, url: str, items: list[dict[str, Any]]) -> tuple[int, dict, str]:
        data = [{k: v for k, v in i.items() if not k.startswith("_")} for i in reversed(items)]
        body = {"object": "list", "data": data, "has_more": False, "url": urlsplit(url).path}
        return 200, {}, json.dumps(body)

    # ----------------------------------------------------------------- transfers

    def _transfer_create(self, request: Any) -> tuple[int, dict, str]:
        def make(form: dict[str, str]) -> dict[str, Any]:
            obj = copy.deepcopy(_fixture("transfer"))
            n = next(self._ids)
            obj.update(
                id=f"tr_fake{n}",
                amount=int(form["amount"]),
                currency=form["currency"],
                destination=form["destination"],
                transfer_group=form.get("transfer_group"),
                source_transaction=form.get("source_transaction"),
                metadata=_metadata(form),
            )
            obj["reversals"]["url"] = f"/v1/transfers/{obj['id']}/reversals"
            self.transfers.append(obj)
            return obj

        return self._idempotent(request, "transfer_create", make)

    def _transfer_list(self, request: Any) -> tuple[int, dict, str]:
        self._enter("transfer_list")
        query = dict(parse_qsl(urlsplit(request.url).query))
        found = [
            t
            for t in self.transfers
            if t["destination"] == query.get("destination", t["destination"])
            and t["transfer_group"] == query.get("transfer_group", t["transfer_group"])
        ]
        return self._list(request.url, found)

    # ----------------------------------------------------------------- reversals

    def _reversal_create(self, request: Any) -> tuple[int, dict, str]:
        transfer_id = urlsplit(request.url).path.split("/")[3]

        def make(form: dict[str, str]) -> dict[str, Any]:
            obj = copy.deepcopy(_fixture("transfer_reversal"))
            obj.update(
                id=f"trr_fake{next(self._ids)}",
                amount=int(form["amount"]),
                transfer=transfer_id,
                metadata=_metadata(form),
            )
            self.reversals.append(obj)
            return obj

        return self._idempotent(request, "transfer_reverse", make)

    def _reversal_list(self, request: Any) -> tuple[int, dict, str]:
        self._enter("transfer_reversal_list")
        transfer_id = urlsplit(request.url).path.split("/")[3]
        return self._list(request.url, [r for r in self.reversals if r["transfer"] == transfer_id])

    # ----------------------------------------------------------------- payouts

    def _payout_create(self, request: Any) -> tuple[int, dict, str]:
        account = request.headers.get("Stripe-Account")

        def make(form: dict[str, str]) -> dict[str, Any]:
            obj = copy.deepcopy(_fixture("payout"))
            obj.update(
                id=f"po_fake{next(self._ids)}",
                amount=int(form["amount"]),
                currency=form["currency"],
                metadata=_metadata(form),
                created=int(time.time()),
                _account=account,
            )
            self.payouts.append(obj)
            return {k: v for k, v in obj.items() if not k.startswith("_")}

        return self._idempotent(request, "payout_create", make)

    def _payout_list(self, request: Any) -> tuple[int, dict, str]:
        self._enter("payout_list")
        account = request.headers.get("Stripe-Account")
        query = dict(parse_qsl(urlsplit(request.url).query))
        since = int(query.get("created[gte]", 0))
        return self._list(
            request.url, [p for p in self.payouts if p["_account"] == account and p["created"] >= since]
        )
