"""The Merkle tree over a sealed block's event hashes, and inclusion proofs. Pure functions.

Each seal records the tree format it was made with (``Seal.merkle_version``); a block is checked
with its own format, and its block hash binds the format (a v2 block's hash covers ``merkle-v2``),
so a proof cannot present one format's block as the other's.

**v2** (every seal since the format was versioned; RFC 6962 / RFC 9162 section 2.1):

- leaf = SHA-256(0x00 || event hash), node = SHA-256(0x01 || left || right) over raw 32-byte
  digests: a leaf and an interior node are hashed in different domains, so an interior node can
  never be passed off as an event hash.
- n leaves split at the largest power of two below n; computed bottom-up, the last node of an odd
  level is promoted unchanged, never paired with itself. So [a, b, c] and [a, b, c, c] have
  different roots (the CVE-2012-2459 shape is impossible).
- a proof is the audit path (sibling hashes, bottom-up) with the leaf index; it is checked with
  RFC 9162's algorithm against the block's event count, which fixes where every sibling sits.

**v1** (seals made before; never written again, still verified): leaves are the event hashes
themselves, node = SHA-256(hex(left) "|" hex(right)), an odd last node is paired with itself, and a
proof step names its sibling's side ('L' or 'R'). Its proofs are checked strictly: the path must be
as long as the tree is deep and its sides must spell the leaf index, which is below the block's
event count; that closes the interior-node and duplicated-leaf forgeries for old blocks too.
"""

from __future__ import annotations

import hashlib

MERKLE_VERSION = 2  # the format new seals use
MERKLE_VERSIONS = (1, 2)
EMPTY_ROOT = "0" * 64  # a block never is empty; kept for the degenerate case


class ProofError(ValueError):
    """No inclusion proof can be made (the index is not a leaf of the tree)."""


# --------------------------------------------------------------------------- v2 (RFC 6962)


def leaf_hash_v2(event_hash: str) -> bytes:
    return hashlib.sha256(b"\x00" + bytes.fromhex(event_hash)).digest()


def node_hash_v2(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _next_level_v2(level: list[bytes]) -> list[bytes]:
    sha256 = hashlib.sha256
    paired = [sha256(b"\x01" + a + b).digest() for a, b in zip(level[0::2], level[1::2], strict=False)]
    return [*paired, level[-1]] if len(level) % 2 else paired  # an odd last node is promoted


def _root_v2(leaves: list[str]) -> str:
    sha256 = hashlib.sha256
    level = [sha256(b"\x00" + bytes.fromhex(h)).digest() for h in leaves]
    while len(level) > 1:
        level = _next_level_v2(level)
    return level[0].hex()


def _proof_v2(leaves: list[str], index: int) -> list[str]:
    level = [leaf_hash_v2(h) for h in leaves]
    path = []
    while len(level) > 1:
        sibling = index ^ 1
        if sibling < len(level):  # else this node is promoted: no sibling at this level
            path.append(level[sibling].hex())
        level = _next_level_v2(level)
        index //= 2
    return path


def _check_v2(event_hash: str, index: int, size: int, path: list, root: str) -> bool:
    """RFC 9162 section 2.1.3.2: the audit path of leaf ``index`` in a tree of ``size`` leaves."""
    if not 0 <= index < size or not all(isinstance(p, str) for p in path):
        return False
    try:
        node = leaf_hash_v2(event_hash)
        siblings = [bytes.fromhex(p) for p in path]
    except (TypeError, ValueError):
        return False
    fn, sn = index, size - 1
    for sibling in siblings:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            node = node_hash_v2(sibling, node)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            node = node_hash_v2(node, sibling)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and node.hex() == root


# --------------------------------------------------------------------------- v1 (old seals)


def _node_v1(left: str, right: str) -> str:
    return hashlib.sha256(f"{left}|{right}".encode()).hexdigest()


def _root_v1(leaves: list[str]) -> str:
    sha256 = hashlib.sha256
    level = leaves
    while len(level) > 1:
        if len(level) % 2:
            level = [*level, level[-1]]
        # _node_v1(left, right), inlined: verify hashes a million of these.
        level = [
            sha256(f"{a}|{b}".encode()).hexdigest() for a, b in zip(level[::2], level[1::2], strict=True)
        ]
    return level[0]


def _proof_v1(leaves: list[str], index: int) -> list[tuple[str, str]]:
    proof = []
    level = leaves
    while len(level) > 1:
        if len(level) % 2:
            level = [*level, level[-1]]
        sibling = index ^ 1
        proof.append(("L" if sibling < index else "R", level[sibling]))
        level = [_node_v1(level[i], level[i + 1]) for i in range(0, len(level), 2)]
        index //= 2
    return proof


def _depth(size: int) -> int:
    return (size - 1).bit_length()  # levels above the leaves: 0 for one leaf, ceil(log2(size)) else


def _check_v1(event_hash: str, index: int, size: int, path: list, root: str) -> bool:
    if not 0 <= index < size or len(path) != _depth(size):
        return False
    node = event_hash
    for level, step in enumerate(path):
        if not (isinstance(step, list | tuple) and len(step) == 2 and isinstance(step[1], str)):
            return False
        side, sibling = step
        if side != ("L" if (index >> level) & 1 else "R"):
            return False
        node = _node_v1(sibling, node) if side == "L" else _node_v1(node, sibling)
    return node == root


# --------------------------------------------------------------------------- by version


def merkle_root(leaves: list[str], *, version: int = MERKLE_VERSION) -> str:
    """The root of the tree over ``leaves`` (hex event hashes, in chain order)."""
    if not leaves:
        return EMPTY_ROOT
    if version == 2:
        return _root_v2(leaves)
    if version == 1:
        return _root_v1(leaves)
    raise ValueError(f"unknown Merkle tree version {version}")


def merkle_proof(leaves: list[str], index: int, *, version: int = MERKLE_VERSION) -> list:
    """The inclusion path of ``leaves[index]``: v2 a list of sibling hashes, v1 [(side, hash)].
    Raises ProofError unless ``0 <= index < len(leaves)``."""
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(leaves):
        raise ProofError(f"leaf index {index} is not in a block of {len(leaves)} events")
    if version == 2:
        return _proof_v2(leaves, index)
    if version == 1:
        return _proof_v1(leaves, index)
    raise ValueError(f"unknown Merkle tree version {version}")


def merkle_path_check(*, event_hash: str, index: int, size: int, path: list, root: str, version: int) -> bool:
    """Whether ``path`` proves ``event_hash`` is leaf ``index`` of the ``size``-leaf tree whose root
    is ``root``. Never raises for malformed input."""
    if isinstance(index, bool) or not isinstance(index, int) or not isinstance(size, int):
        return False
    if not isinstance(path, list) or not isinstance(event_hash, str):
        return False
    if version == 2:
        return _check_v2(event_hash, index, size, path, root)
    if version == 1:
        return _check_v1(event_hash, index, size, path, root)
    return False


def block_hash(
    *, number: int, prev_hash: str, merkle: str, last_chain_hash: str, count: int, merkle_version: int
) -> str:
    """A block's hash: its number, the previous block's hash, its Merkle root, its last chain hash,
    its event count and (from v2 on) its tree format."""
    parts = [str(number), prev_hash, merkle, last_chain_hash, str(count)]
    if merkle_version != 1:
        parts.append(f"merkle-v{merkle_version}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()
