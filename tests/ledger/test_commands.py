"""The ``ledger`` management command's contract, run as operators run it: ``manage.py`` in its own
process against the test database. Exit 0 when all is well; 1 with one line on stderr otherwise.
Independent processes start together to keep the wall-clock time down; the rest of the
contract is checked in-process with ``call_command`` (same handler, no interpreter start-up)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django_tenants.utils import tenant_context

from apps.ledger import integrity, selectors, services
from apps.ledger.models import LedgerEvent
from tests.ledger.observe import row_counts, wait_for_seal_horizon
from tests.support import BASE, database_url_for_tests


def run_all(*commands: list[str]) -> list[subprocess.CompletedProcess]:
    """Run ``manage.py ledger <args>`` for each command at once; results in the same order."""
    env = {**os.environ, "DATABASE_URL": database_url_for_tests(), "REDIS_URL": settings.REDIS_URL}
    procs = [
        subprocess.Popen(
            [sys.executable, "manage.py", "ledger", *args],
            cwd=BASE,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for args in commands
    ]
    results = []
    for proc, args in zip(procs, commands, strict=True):
        out, err = proc.communicate(timeout=120)
        results.append(subprocess.CompletedProcess(args, proc.returncode, out, err))
    return results


def outcome(result: subprocess.CompletedProcess) -> tuple[int, list[str], list[str]]:
    return result.returncode, result.stdout.splitlines(), result.stderr.splitlines()


def post_args(tenant: str, **overrides: str) -> list[str]:
    options = {
        "debit": "suspense",
        "credit": "platform_revenue",
        "amount": "1234",
        "currency": "usd",
        "reason": "unexplained deposit",
        "idempotency_key": "dep-1",
        **overrides,
    }
    args = ["post", "--tenant", tenant]
    for name, value in options.items():
        args += ["--" + name.replace("_", "-"), value]
    return args


def call(*args: str) -> str:
    out = io.StringIO()
    call_command("ledger", *args, stdout=out)
    return out.getvalue()


def test_post_twice_at_once_records_one_event_and_bad_input_exits_1_with_one_line(ledger_tenant):
    t = ledger_tenant.schema_name
    post = post_args(t)

    # when: the same post twice at once, and the ways a post can be refused
    first, second, *refused = run_all(
        post,
        post,
        post_args("nope"),
        post_args(t, debit="petty_cash", idempotency_key="dep-2"),
        post_args(t, amount="12.5", idempotency_key="dep-3"),
    )

    # then: one event, whichever process got there first
    event = LedgerEvent.objects.get()
    line = f"{event.public_id}: Dr suspense / Cr platform_revenue 12.34 USD"
    assert sorted([outcome(first), outcome(second)]) == [
        (0, [f"already recorded (same idempotency key); nothing new posted: {line}"], []),
        (0, [f"recorded {line}"], []),
    ]
    assert event.payload == {
        "debit": "suspense",
        "credit": "platform_revenue",
        "amount": 1234,
        "currency": "USD",
        "reason": "unexplained deposit",
        "actor": "cli",
    }
    assert [outcome(r) for r in refused] == [
        (1, [], ["CommandError: no marketplace 'nope'"]),
        (1, [], ["CommandError: unknown account 'petty_cash': not in the chart of accounts"]),
        (1, [], ["CommandError: amount must be an integer number of minor units, got '12.5'"]),
    ]
    assert row_counts()["ledger_event"] == 1
    assert selectors.balance_get(code="suspense", currency="USD") == 1234


def test_balances_seal_verify_replay_digest_and_prove(ledger_tenant):
    # given
    t = ledger_tenant.schema_name
    posted = call(*post_args(t))
    event = LedgerEvent.objects.get()
    again = call(*post_args(t))

    # when / then: nothing sealed yet
    with pytest.raises(CommandError) as err:
        call("digest", "--tenant", t)
    assert str(err.value) == "nothing is sealed yet; run `ledger seal` first"
    wait_for_seal_horizon()
    sealed = call("seal", "--tenant", t)
    digest = integrity.ledger_digest()
    assert digest is not None

    # when
    balances = json.loads(call("balances", "--tenant", t, "--json"))
    eur = json.loads(call("balances", "--tenant", t, "--json", "--currency", "eur"))
    verified = call("verify", "--tenant", t)
    with_digest = call("verify", "--tenant", t, "--digest", json.dumps(digest))
    replayed = call("replay", "--tenant", t)
    printed = json.loads(call("digest", "--tenant", t))
    proof = json.loads(call("prove", "--tenant", t, "--event", event.public_id))

    # then
    line = f"{event.public_id}: Dr suspense / Cr platform_revenue 12.34 USD"
    assert posted == f"recorded {line}\n"
    assert again == f"already recorded (same idempotency key); nothing new posted: {line}\n"
    assert sealed == f"sealed 1 events in 1 blocks; latest block 1 {digest['hash']}\n"
    assert balances == [
        {"account": "connected_balances", "currency": "USD", "balance": 0},
        {"account": "disputes", "currency": "USD", "balance": 0},
        {"account": "fx", "currency": "USD", "balance": 0},
        {"account": "platform_revenue", "currency": "USD", "balance": 1234},
        {"account": "processor_fees", "currency": "USD", "balance": 0},
        {"account": "refunds", "currency": "USD", "balance": 0},
        {"account": "suspense", "currency": "USD", "balance": 1234},
    ]
    assert eur == []
    ok = "ok: 1 events, 1 sealed; chain, seals, double entry, postings and balances all check out\n"
    assert verified == with_digest == ok
    assert replayed == "replayed 1 events into 2 balances\n"
    assert printed == digest
    assert integrity.proof_check(proof, digest) is True
    assert row_counts()["ledger_event"] == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["balances", "--tenant", "tenant_template"], "no marketplace 'tenant_template'"),
        (["balances", "--tenant", "public"], "no marketplace 'public'"),
        (["balances", "--tenant", "alpha", "--currency", "XYZ"], "unknown currency 'XYZ'"),
        (
            ["verify", "--tenant", "alpha", "--digest", "[1]"],
            "--digest must be the JSON printed by `ledger digest`",
        ),
        (
            ["verify", "--tenant", "alpha", "--digest", "{"],
            "--digest must be the JSON printed by `ledger digest`",
        ),
        (
            ["prove", "--tenant", "alpha", "--event", "evt_nope"],
            "no ledger event evt_nope",
        ),
        (
            [
                "post",
                "--tenant",
                "alpha",
                "--debit",
                "suspense",
                "--credit",
                "fx",
                "--amount",
                "-5",
                "--currency",
                "USD",
                "--reason",
                "r",
            ],
            "amount must be positive, got -5",
        ),
    ],
)
def test_a_refused_command_raises_one_readable_line(db, tenant_a, args, message):
    # given
    with tenant_context(tenant_a):
        before = row_counts()

    # when / then
    with pytest.raises(CommandError) as err:
        call(*args)
    assert str(err.value) == message
    with tenant_context(tenant_a):
        assert row_counts() == before


def test_verify_knows_every_app_s_event_types_in_a_process_that_loads_no_urls(ledger_tenant):
    # given events of the payments' and the vendors' posting rules (registered by their apps at
    # start-up, not by whichever module a process happens to import)
    charge = {
        "gateway_account": "sim",
        "amount": 1000,
        "currency": "USD",
        "fee": 30,
        "allocations": [
            {"account": "platform_revenue", "amount": 100},
            {"account": "vendor_pending:v1", "amount": 900},
        ],
    }
    services.ledger_record(event_type="ChargeCaptured", stream="pay_1", payload=charge, idempotency_key="c-1")
    services.ledger_record(
        event_type="TransferHeld",
        stream="tr_1",
        payload={"vendor": "v1", "amount": 900, "currency": "USD"},
        idempotency_key="t-1",
    )
    services.ledger_record(event_type="AttemptStarted", stream="pay_1", payload={}, idempotency_key="a-1")

    # when `ledger verify` runs in its own process without the system checks (which load the URLs)
    env = {**os.environ, "DATABASE_URL": database_url_for_tests(), "REDIS_URL": settings.REDIS_URL}
    verify = ["ledger", "--skip-checks", "verify", "--tenant", ledger_tenant.schema_name]
    result = subprocess.run(
        [sys.executable, "manage.py", *verify],
        cwd=BASE,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    # then
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.startswith("ok: 3 events")


def test_the_rule_registry_is_complete_once_django_is_set_up():
    code = (
        "import sys, django; django.setup(); "
        "from apps.ledger.rules import registered_event_types; "
        "print(' '.join(registered_event_types())); "
        "print(' '.join(m for m in sys.modules if m.startswith('config.urls')) or '-')"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"}

    result = subprocess.run([sys.executable, "-c", code], cwd=BASE, env=env, capture_output=True, text=True)

    assert result.returncode == 0, result.stderr
    types, urlconfs = result.stdout.splitlines()
    assert {"ManualAdjustment", "ChargeCaptured", "AttemptStarted", "DisputeLost", "TransferHeld"} <= set(
        types.split()
    )
    assert urlconfs == "-"
