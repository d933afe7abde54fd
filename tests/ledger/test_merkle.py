"""The Merkle tree format (apps.ledger.merkle): v2 is RFC 6962 (domain-separated leaves and nodes,
no duplicated odd leaf), v1 blocks sealed before still verify and prove, and forged proofs fail:
an interior node presented as an event hash, a leaf duplicated to fill an odd level, an index
outside the block, a block relabelled to the other format."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from apps.ledger import integrity
from apps.ledger.merkle import (
    MERKLE_VERSION,
    ProofError,
    block_hash,
    leaf_hash_v2,
    merkle_path_check,
    merkle_proof,
    merkle_root,
    node_hash_v2,
)
from apps.ledger.models import ChainLink, Seal
from tests.ledger.observe import seal_everything, triggers_off
from tests.ledger.test_tamper import post_adjustments
from tests.support import BASE, database_url_for_tests


def leaves(n: int) -> list[str]:
    return [hashlib.sha256(str(i).encode()).hexdigest() for i in range(n)]


# RFC 6962 section 2.1, written from the text (recursive), to hold the bottom-up code to it.
def rfc_mth(d: list[str]) -> bytes:
    if len(d) == 1:
        return leaf_hash_v2(d[0])
    k = 1 << ((len(d) - 1).bit_length() - 1)  # the largest power of two smaller than n
    return node_hash_v2(rfc_mth(d[:k]), rfc_mth(d[k:]))


def rfc_path(m: int, d: list[str]) -> list[str]:
    if len(d) == 1:
        return []
    k = 1 << ((len(d) - 1).bit_length() - 1)
    if m < k:
        return [*rfc_path(m, d[:k]), rfc_mth(d[k:]).hex()]
    return [*rfc_path(m - k, d[k:]), rfc_mth(d[:k]).hex()]


def check(event_hash: str, index: int, path: list, tree: list[str], version: int = 2) -> bool:
    root = merkle_root(tree, version=version)
    return merkle_path_check(
        event_hash=event_hash, index=index, size=len(tree), path=path, root=root, version=version
    )


# --------------------------------------------------------------------------- the format


def test_v2_is_rfc_6962_for_every_size_and_every_leaf():
    for n in range(1, 34):
        tree = leaves(n)
        assert merkle_root(tree) == rfc_mth(tree).hex(), n
        for m in range(n):
            path = merkle_proof(tree, m)
            assert path == rfc_path(m, tree), (n, m)
            assert check(tree[m], m, path, tree), (n, m)


def test_v1_roots_block_hashes_and_proofs_are_unchanged_for_old_seals():
    # values computed with the code that made the v1 seals
    tree = leaves(5)
    assert merkle_root(tree, version=1) == "9b679d1bcaaf2096f50316a9d653329ec7ec314c2b5dff40e5a7e02cf4577618"
    assert merkle_root(tree[:1], version=1) == tree[0]
    root = merkle_root(tree, version=1)
    assert (
        block_hash(
            number=1, prev_hash="0" * 64, merkle=root, last_chain_hash="ab" * 32, count=5, merkle_version=1
        )
        == "7f38db75b7820a749dae614645ab4f03f38c7dbacfa4fa0da1af95f4cee16792"
    )
    assert merkle_proof(tree, 4, version=1) == [
        ("R", "4b227777d4dd1fc61c6f884f48641d02b4d121d3fd328cb08b5531fcacdabf8a"),
        ("R", "87cfb049079123deeb200527e667e5951035c9fee44c6e4b9f225358ac3cf8d8"),
        ("L", "c010dcd407f91c0cb9840a261ad8d56fb6fde703bc920a5f09ee6913046c717d"),
    ]
    assert all(check(tree[m], m, merkle_proof(tree, m, version=1), tree, version=1) for m in range(5))


def test_the_block_hash_binds_the_tree_format():
    def of(version: int) -> str:
        return block_hash(
            number=3,
            prev_hash="1" * 64,
            merkle="2" * 64,
            last_chain_hash="3" * 64,
            count=4,
            merkle_version=version,
        )

    assert of(1) != of(2)


# --------------------------------------------------------------------------- forgeries


def test_an_interior_node_presented_as_an_event_hash_fails():
    # given a block of four events and the real proof of its first
    tree = leaves(4)
    path = merkle_proof(tree, 0)
    interior = node_hash_v2(leaf_hash_v2(tree[0]), leaf_hash_v2(tree[1])).hex()

    # when the node over events 0 and 1 is passed off as an event, with the rest of the path
    forged = check(interior, 0, path[1:], tree)

    # then
    assert check(tree[0], 0, path, tree) is True
    assert forged is False


def test_the_old_interior_node_forgery_fails_on_v1_blocks_too():
    # given a v1 block: a naive fold (what proof_check did) accepts the interior node
    tree = leaves(4)
    path = merkle_proof(tree, 0, version=1)
    interior = hashlib.sha256(f"{tree[0]}|{tree[1]}".encode()).hexdigest()
    node = interior
    for side, sibling in path[1:]:
        node = hashlib.sha256(
            (f"{sibling}|{node}" if side == "L" else f"{node}|{sibling}").encode()
        ).hexdigest()
    assert node == merkle_root(tree, version=1)

    # when / then: the path must be as deep as the block's tree
    assert check(interior, 0, path[1:], tree, version=1) is False


def test_duplicating_an_odd_last_leaf_makes_another_tree_and_its_proof_fails():
    # given three events, and a fourth position forged by repeating the last (CVE-2012-2459)
    tree = leaves(3)
    padded = [*tree, tree[2]]

    # then: v1 could not tell the two trees apart; v2 can, and no proof reaches past the block
    assert merkle_root(tree, version=1) == merkle_root(padded, version=1)
    assert merkle_root(tree) != merkle_root(padded)
    for version in (1, 2):
        forged_path = merkle_proof(padded, 3, version=version)
        root = merkle_root(tree, version=version)
        assert (
            merkle_path_check(
                event_hash=tree[2], index=3, size=3, path=forged_path, root=root, version=version
            )
            is False
        )
        assert check(tree[2], 2, merkle_proof(tree, 2, version=version), tree, version) is True


@pytest.mark.parametrize("index", [-1, 3, True, "0"])
def test_no_proof_for_an_index_outside_the_block(index):
    with pytest.raises(ProofError, match="is not in a block of 3 events"):
        merkle_proof(leaves(3), index)


@pytest.mark.parametrize(
    "path",
    [["zz"], [None], "abc", [["R", "00"]], [1, 2]],
    ids=["not-hex", "none", "a-string", "v1-shaped", "numbers"],
)
def test_a_malformed_path_is_refused_without_raising(path):
    tree = leaves(2)
    assert check(tree[0], 0, path, tree) is False
    assert check(tree[0], 0, path, tree, version=1) is False


# --------------------------------------------------------------------------- sealed ledgers


def test_new_seals_use_v2_and_their_proofs_check(ledger_tenant):
    # given
    events = post_adjustments([100, 200, 300])

    # when
    seal_everything()
    digest = integrity.ledger_digest()
    proofs = [integrity.ledger_prove(public_id=r.event.public_id) for r in events]

    # then
    assert list(Seal.objects.values_list("number", "merkle_version")) == [(1, MERKLE_VERSION)] == [(1, 2)]
    assert digest is not None and digest["merkle_version"] == 2
    assert [(p["merkle_version"], p["leaf_index"], len(p["merkle_path"])) for p in proofs] == [
        (2, 0, 2),
        (2, 1, 2),
        (2, 2, 1),  # the odd last event is promoted: one sibling, not a copy of itself
    ]
    assert all(integrity.proof_check(p, digest) for p in proofs)
    assert integrity.ledger_verify().ok


def test_a_ledger_sealed_in_the_old_format_still_verifies_and_proves(ledger_tenant, monkeypatch):
    # given a block sealed as before versioning (v1), then one sealed now (v2)
    old = post_adjustments([100, 200, 300])
    with monkeypatch.context() as m:
        m.setattr(integrity, "MERKLE_VERSION", 1)
        seal_everything()
    new = post_adjustments([400, 500])
    seal_everything()
    digest = integrity.ledger_digest()
    assert digest is not None

    # when
    report = integrity.ledger_verify(digest=digest)
    proofs = {r.event.public_id: integrity.ledger_prove(public_id=r.event.public_id) for r in old + new}

    # then
    first = Seal.objects.get(number=1)
    first_leaves = list(
        ChainLink.objects.filter(block=1).order_by("seq").values_list("event_hash", flat=True)
    )
    assert list(Seal.objects.values_list("number", "merkle_version")) == [(1, 1), (2, 2)]
    assert first.merkle_root == merkle_root(first_leaves, version=1)
    assert (report.ok, report.problems) == (True, [])
    assert [p["merkle_version"] for p in proofs.values()] == [1, 1, 1, 2, 2]
    assert all(integrity.proof_check(p, digest) for p in proofs.values())
    old_proof = proofs[old[0].event.public_id]
    assert [(b["number"], b["merkle_version"]) for b in old_proof["blocks"]] == [(1, 1), (2, 2)]

    # and a proof that relabels its block's format fails
    relabelled = {
        **old_proof,
        "blocks": [{**old_proof["blocks"][0], "merkle_version": 2}, old_proof["blocks"][1]],
    }
    assert integrity.proof_check(relabelled, digest) is False


def test_relabelling_a_seals_tree_format_is_caught_by_verify(ledger_tenant):
    # given
    post_adjustments([100, 200, 300])
    seal_everything()

    # when an attacker with the triggers off marks the v2 seal as v1
    with triggers_off() as cur:
        cur.execute("UPDATE ledger_seal SET merkle_version = 1 WHERE number = 1")

    # then
    assert integrity.ledger_verify().problems[:1] == ["block 1: Merkle root mismatch"]


def test_prove_refuses_an_event_not_sealed_yet_and_an_unknown_one_with_one_line(ledger_tenant):
    # given an event that is recorded but not sealed
    (recorded,) = post_adjustments([100])
    public_id = recorded.event.public_id
    tenant = ledger_tenant.schema_name

    # when
    with pytest.raises(CommandError) as unsealed:
        call_command("ledger", "prove", "--tenant", tenant, "--event", public_id)
    env = {**os.environ, "DATABASE_URL": database_url_for_tests(), "REDIS_URL": settings.REDIS_URL}
    unknown = subprocess.run(
        [sys.executable, "manage.py", "ledger", "prove", "--tenant", tenant, "--event", "evt_nope"],
        cwd=BASE,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    # then
    assert str(unsealed.value) == (
        f"event {public_id} is not sealed yet; run `ledger seal` (or wait for the next seal)"
    )
    assert (unknown.returncode, unknown.stdout, unknown.stderr) == (
        1,
        "",
        "CommandError: no ledger event evt_nope\n",
    )

    # and once sealed it proves
    seal_everything()
    out = json.loads(_call("prove", "--tenant", tenant, "--event", public_id))
    assert (out["leaf_index"], out["merkle_path"], out["merkle_version"]) == (0, [], 2)


def _call(*args: str) -> str:
    stdout = io.StringIO()
    call_command("ledger", *args, stdout=stdout)
    return stdout.getvalue()
