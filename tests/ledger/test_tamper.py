"""Sealing, inclusion proofs and tamper evidence.

The attacker here is a database superuser who turns the append-only triggers off
(``session_replication_role = replica``) and edits rows directly, often covering their tracks
(fixing balances, payloads and entries so every other check still adds up). Verification must
still name the event that was touched."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command
from django.db import transaction

from apps.ledger import integrity, services
from apps.ledger.models import ChainLink, Seal
from tests.ledger.observe import scalar, seal_everything, triggers_off

CHANGED = "was changed after sealing: its content no longer matches its sealed hash"


def post_adjustments(amounts: list[int]) -> list[services.Recorded]:
    """One committed manual adjustment (Dr suspense / Cr platform_revenue) per amount."""
    return [
        services.ledger_post_manual(
            debit="suspense", credit="platform_revenue", amount=amount, currency="USD", reason=f"r{i}"
        )
        for i, amount in enumerate(amounts)
    ]


def link_of(recorded: services.Recorded) -> int:
    return ChainLink.objects.get(event_id=recorded.event.pk).seq


# --------------------------------------------------------------------------- sealing


def test_sealing_chains_finished_events_in_blocks_and_is_idempotent(ledger_tenant):
    # given five events, each written by its own transaction
    events = post_adjustments([100, 200, 300, 400, 500])

    # when
    first = seal_everything(max_events=2)
    again = integrity.ledger_seal(max_events=2)

    # then
    assert (first.blocks, first.events) == (3, 5)
    assert (again.blocks, again.events) == (0, 0)
    assert [link_of(r) for r in events] == [1, 2, 3, 4, 5]
    assert list(Seal.objects.values_list("number", "first_seq", "last_seq", "event_count")) == [
        (1, 1, 2, 2),
        (2, 3, 4, 2),
        (3, 5, 5, 1),
    ]
    seals = list(Seal.objects.all())
    assert [s.prev_hash for s in seals] == [integrity.GENESIS, seals[0].hash, seals[1].hash]
    assert first.digest == again.digest == integrity.ledger_digest()
    assert first.digest is not None
    assert (first.digest["block"], first.digest["hash"], first.digest["last_seq"]) == (3, seals[2].hash, 5)
    report = integrity.ledger_verify(digest=first.digest)
    assert (report.ok, report.events, report.sealed, report.problems) == (True, 5, 5, [])
    # a digest published for this block that the ledger does not match
    forged = integrity.ledger_verify(digest={**first.digest, "hash": "ab" * 32})
    assert forged.problems == ["published digest for block 3 does not match the ledger"]


def test_one_transaction_larger_than_a_block_is_sealed_whole(ledger_tenant):
    # given three events written by one transaction
    with transaction.atomic():
        for i in (1, 2, 3):
            services.ledger_record(
                event_type="ManualAdjustment",
                stream=f"b{i}",
                payload={
                    "debit": "suspense",
                    "credit": "fx",
                    "amount": i,
                    "currency": "USD",
                    "reason": "one transaction",
                },
                idempotency_key=f"b{i}",
            )
    post_adjustments([7])

    # when
    result = seal_everything(max_events=2)

    # then: the horizon never cuts through a transaction
    assert (result.blocks, result.events) == (2, 4)
    assert list(Seal.objects.values_list("number", "event_count")) == [(1, 3), (2, 1)]
    assert integrity.ledger_verify().ok


def test_an_inclusion_proof_checks_against_the_published_digest_and_fails_against_another(ledger_tenant):
    # given events in two blocks, the second one odd-sized
    early = post_adjustments([100, 200, 300])
    seal_everything()
    late = post_adjustments([400, 500, 600])
    seal_everything()
    digest = integrity.ledger_digest()
    assert digest is not None and digest["block"] == 2

    # when
    proofs = {r.event.public_id: integrity.ledger_prove(public_id=r.event.public_id) for r in early + late}

    # then
    assert all(integrity.proof_check(proof, digest) for proof in proofs.values())
    proof = proofs[late[2].event.public_id]
    assert (proof["seq"], proof["leaf_index"], [b["number"] for b in proof["blocks"]]) == (6, 2, [2])
    assert [b["number"] for b in proofs[early[0].event.public_id]["blocks"]] == [1, 2]
    assert integrity.proof_check(proof, {**digest, "hash": "0" * 64}) is False
    assert integrity.proof_check(proof, {**digest, "block": 1}) is False
    assert integrity.proof_check({**proof, "event_hash": "f" * 64}, digest) is False
    other = proofs[late[0].event.public_id]
    assert integrity.proof_check({**proof, "merkle_path": other["merkle_path"]}, digest) is False
    with pytest.raises(LookupError, match="no ledger event evt_nope"):
        integrity.ledger_prove(public_id="evt_nope")


# --------------------------------------------------------------------------- tampering


def test_changing_an_entrys_amount_is_named_and_the_verify_command_fails(ledger_tenant):
    # given
    events = post_adjustments([100, 200, 300, 400])
    seal_everything()
    target = events[2]

    # when
    with triggers_off() as cur:
        cur.execute(
            "UPDATE ledger_entry SET amount = 301 WHERE event_id = %s AND side = 'D'", [target.event.pk]
        )
    report = integrity.ledger_verify()

    # then: the chain names it first; the other checks see the consequences
    assert report.problems == [
        f"event {target.event.public_id} (chain link 3) {CHANGED}",
        f"journal transaction {target.transaction_id} of event {target.event.public_id} does not balance in USD",
        "all entries in USD do not net to zero (off by 1)",
        f"event {target.event.public_id}: stored entries differ from what its posting rule gives",
    ]
    with pytest.raises(CommandError) as err:
        call_command("ledger", "verify", "--tenant", ledger_tenant.schema_name)
    assert str(err.value) == f"verify failed: {report.problems[0]}"


def test_a_consistent_rewrite_of_a_sealed_event_is_caught_by_the_chain_alone(ledger_tenant):
    # given
    events = post_adjustments([100, 200, 300])
    seal_everything()
    target = events[1]

    # when: payload, both entries and both balances are changed together
    with triggers_off() as cur:
        cur.execute(
            "UPDATE ledger_event SET payload = jsonb_set(payload, '{amount}', '20000') WHERE id = %s",
            [target.event.pk],
        )
        cur.execute("UPDATE ledger_entry SET amount = 20000 WHERE event_id = %s", [target.event.pk])
        cur.execute(
            "UPDATE ledger_balance b SET debits = b.debits + 19800 FROM ledger_account a "
            "WHERE a.id = b.account_id AND a.code = 'suspense' AND a.currency = 'USD'"
        )
        cur.execute(
            "UPDATE ledger_balance b SET credits = b.credits + 19800 FROM ledger_account a "
            "WHERE a.id = b.account_id AND a.code = 'platform_revenue' AND a.currency = 'USD'"
        )
    report = integrity.ledger_verify()

    # then
    assert report.problems == [f"event {target.event.public_id} (chain link 2) {CHANGED}"]


def test_deleting_a_sealed_event_is_named_and_so_is_removing_its_link(ledger_tenant):
    # given
    events = post_adjustments([100, 200, 300])
    seal_everything()
    target = events[1]

    # when: the event, its journal transaction and entries go, and the balances are fixed up
    with triggers_off() as cur:
        cur.execute("DELETE FROM ledger_entry WHERE event_id = %s", [target.event.pk])
        cur.execute("DELETE FROM ledger_transaction WHERE event_id = %s", [target.event.pk])
        cur.execute("DELETE FROM ledger_event WHERE id = %s", [target.event.pk])
        cur.execute(
            "UPDATE ledger_balance SET debits = debits - 200 WHERE account_id = "
            "(SELECT id FROM ledger_account WHERE code = 'suspense' AND currency = 'USD')"
        )
        cur.execute(
            "UPDATE ledger_balance SET credits = credits - 200 WHERE account_id = "
            "(SELECT id FROM ledger_account WHERE code = 'platform_revenue' AND currency = 'USD')"
        )
    deleted = integrity.ledger_verify()
    with triggers_off() as cur:
        cur.execute("DELETE FROM ledger_chain_link WHERE event_id = %s", [target.event.pk])
    unlinked = integrity.ledger_verify()

    # then
    assert deleted.problems == [f"event id {target.event.pk} (chain link 2) is missing: it was deleted"]
    assert unlinked.problems == [
        "chain gap: expected link 2, found 3 (a link was removed)",
        "block 1: its links no longer match the seal",
    ]


def test_an_event_inserted_into_sealed_history_is_named(ledger_tenant):
    # given
    events = post_adjustments([100, 200, 300])
    seal_everything()
    neighbour = events[1].event
    neighbour_txid = scalar("SELECT txid FROM ledger_event WHERE id = %s", [neighbour.pk])

    # when: a balanced, rule-abiding adjustment is slipped in with its neighbour's txid
    with triggers_off() as cur:
        cur.execute(
            "INSERT INTO ledger_event (public_id, type, stream, version, idempotency_key, payload, occurred_at, "
            "txid) SELECT 'evt_slipped_in', type, 'adj_slipped', 1, 'slipped', "
            "jsonb_set(payload, '{amount}', '999'), occurred_at, txid FROM ledger_event WHERE id = %s "
            "RETURNING id",
            [neighbour.pk],
        )
        inserted = cur.fetchone()[0]
        cur.execute("INSERT INTO ledger_transaction (event_id) VALUES (%s) RETURNING id", [inserted])
        txn = cur.fetchone()[0]
        cur.execute(
            "INSERT INTO ledger_entry (transaction_id, event_id, account_id, currency, side, amount) "
            "SELECT %s, %s, account_id, currency, side, 999 FROM ledger_entry WHERE event_id = %s",
            [txn, inserted, neighbour.pk],
        )
        cur.execute(
            "UPDATE ledger_balance SET debits = debits + CASE WHEN debits > 0 THEN 999 ELSE 0 END, "
            "credits = credits + CASE WHEN credits > 0 THEN 999 ELSE 0 END WHERE debits > 0 OR credits > 0"
        )
    report = integrity.ledger_verify()

    # then
    assert scalar("SELECT txid FROM ledger_event WHERE id = %s", [inserted]) == neighbour_txid
    assert report.problems == [
        "event evt_slipped_in was inserted into sealed history (it is not in the chain)"
    ]


def test_reordering_sealed_events_is_named(ledger_tenant):
    # given
    events = post_adjustments([100, 200, 300, 400])
    seal_everything()
    second, third = events[1].event, events[2].event

    # when: links 2 and 3 swap their events
    with triggers_off() as cur:
        cur.execute(
            "UPDATE ledger_chain_link SET event_id = -1 WHERE seq = 2"
        )  # the unique index still holds
        cur.execute("UPDATE ledger_chain_link SET event_id = %s WHERE seq = 3", [second.pk])
        cur.execute("UPDATE ledger_chain_link SET event_id = %s WHERE seq = 2", [third.pk])
    swapped = integrity.ledger_verify()
    # and then the attacker swaps the stored event hashes too, so each link matches its event
    with triggers_off() as cur:
        cur.execute(
            "UPDATE ledger_chain_link l SET event_hash = o.event_hash FROM ledger_chain_link o "
            "WHERE (l.seq, o.seq) IN ((2, 3), (3, 2))"
        )
    rehashed = integrity.ledger_verify()

    # then
    assert swapped.problems == [f"event {third.public_id} (chain link 2) {CHANGED}"]
    assert rehashed.problems == [
        f"chain broken at link 2 ({third.public_id}): links were reordered or rewritten",
        "block 1: Merkle root mismatch",
    ]
