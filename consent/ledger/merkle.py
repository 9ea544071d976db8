"""The consent ledger's Merkle tree: RFC 9162 (Certificate Transparency 2.0) section 2.1.

Hashes (SHA-256, as RFC 6962 and the C2SP tlog-checkpoint format expect):

- leaf: ``SHA-256(0x00 || entry)``; interior node: ``SHA-256(0x01 || left || right)``;
- the empty tree: ``SHA-256(b"")``;
- a list of n > 1 leaves splits at k, the largest power of two strictly less than n.

Proofs are generated from *perfect* subtree hashes only. A perfect subtree is named by
``(level, index)``: it has height ``level`` and covers the leaves
``[index * 2**level, (index + 1) * 2**level)``; ``(0, i)`` is the leaf hash of entry i.
Once such a subtree is complete its hash never changes, so storage keeps one row per
completed node and serves any root or proof at any size with O(log n) lookups through a
:data:`SubtreeHash` callback. Every left child in the RFC recursion is perfect and aligned,
and a right part that is not perfect is rebuilt from the perfect subtrees that make it up.

Entries are hashed as canonical JSON (:func:`canonical_json`), so the storage and the offline
verifier produce the same bytes for the same event.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "InMemoryTree",
    "SubtreeHash",
    "canonical_json",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root_from_frontier",
    "root_from_leaf_hashes",
    "root_hash",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
EMPTY_ROOT: bytes = hashlib.sha256(b"").digest()
"""The root hash of the tree with no leaves: ``SHA-256`` of the empty string."""

SubtreeHash = Callable[[int, int], bytes]
"""``subtree(level, index)``: the hash of the complete perfect subtree of height ``level`` at
position ``index``, covering leaves ``index * 2**level .. (index + 1) * 2**level - 1``.
Level 0 is the leaf hash itself. Called only for subtrees that are complete at the requested
tree size; an implementation may raise ``LookupError`` for any other."""


# -- entries and hashes ----------------------------------------------------------------------


def canonical_json(obj: Any) -> bytes:
    """The exact bytes a ledger entry is hashed as: sorted keys, no spaces, UTF-8.

    ``json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`` encoded as
    UTF-8. NaN and infinities are refused (``ValueError``): they are not JSON, and a verifier
    in another language could not reproduce them.
    """
    text = json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return text.encode("utf-8")


def leaf_hash(entry: bytes) -> bytes:
    """``SHA-256(0x00 || entry)``: the hash of one leaf (RFC 9162 section 2.1.1)."""
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``: the hash of an interior node."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly less than ``n`` (for n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def _is_power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


# -- roots from leaves (offline) ------------------------------------------------------------


def root_from_frontier(frontier: Sequence[bytes]) -> bytes:
    """The root of a tree from its compact range: the roots of the perfect subtrees that make
    it up, largest (leftmost) first, i.e. one per set bit of the tree size.

    The RFC split puts the largest perfect subtree on the left and recurses on the rest, so the
    root folds the frontier from the right: ``node(f[0], node(f[1], ... node(f[-2], f[-1])))``.
    An empty frontier is the empty tree.
    """
    if not frontier:
        return EMPTY_ROOT
    root = frontier[-1]
    for subtree in reversed(frontier[:-1]):
        root = node_hash(subtree, root)
    return root


def root_from_leaf_hashes(leaf_hashes: Iterable[bytes]) -> bytes:
    """The root hash over all ``leaf_hashes``, in O(n) time and O(log n) memory.

    Iterative: a stack holds the compact range (one perfect subtree per set bit of the count
    so far); appending leaf i merges the top of the stack once per trailing 1 bit of i, like a
    binary carry. Suitable for hundreds of thousands of leaves.
    """
    stack: list[bytes] = []
    push, pop, sha256 = stack.append, stack.pop, hashlib.sha256  # a tight loop: no lookups
    for index, digest in enumerate(leaf_hashes):
        current, position = digest, index
        while position & 1:
            current = sha256(b"\x01" + pop() + current).digest()
            position >>= 1
        push(current)
    return root_from_frontier(stack)


# -- roots and proofs from perfect subtrees (storage) ---------------------------------------


def _range_hash(start: int, end: int, subtree: SubtreeHash) -> bytes:
    """MTH of leaves ``[start, end)`` for a range the RFC recursion produces (``start`` is a
    multiple of the smallest power of two >= ``end - start``): at most log2 lookups."""
    parts: list[bytes] = []
    while True:
        n = end - start
        k = n if _is_power_of_two(n) else _split(n)
        level = k.bit_length() - 1
        parts.append(subtree(level, start >> level))
        if k == n:
            return root_from_frontier(parts)
        start += k


def root_hash(size: int, subtree: SubtreeHash) -> bytes:
    """MTH(D[0:size]) from perfect subtree hashes: one lookup per set bit of ``size``."""
    if size < 0:
        raise ValueError(f"tree size must not be negative, got {size}")
    if size == 0:
        return EMPTY_ROOT
    return _range_hash(0, size, subtree)


def inclusion_proof(index: int, size: int, subtree: SubtreeHash) -> list[bytes]:
    """PATH(index, D[0:size]) of RFC 9162 section 2.1.3.1, ordered from the leaf up.

    Makes at most about ``2 * log2(size)`` subtree lookups: one per level, plus the perfect
    pieces of the single non-perfect sibling on the right edge. Raises ``ValueError`` unless
    ``0 <= index < size``.
    """
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is outside a tree of size {size}")
    path: list[bytes] = []
    start, end = 0, size
    while end - start > 1:
        mid = start + _split(end - start)
        if index < mid:
            # PATH(m, D[0:k]) : MTH(D[k:n])
            path.append(_range_hash(mid, end, subtree))
            end = mid
        else:
            # PATH(m - k, D[k:n]) : MTH(D[0:k])
            path.append(_range_hash(start, mid, subtree))
            start = mid
    path.reverse()
    return path


def consistency_proof(old_size: int, new_size: int, subtree: SubtreeHash) -> list[bytes]:
    """PROOF(old_size, D[0:new_size]) of RFC 9162 section 2.1.4.1 (SUBPROOF with b = true).

    Empty when ``old_size`` is 0 or equals ``new_size`` (nothing to prove). At most about
    ``2 * log2(new_size)`` subtree lookups. Raises ``ValueError`` unless
    ``0 <= old_size <= new_size``.
    """
    if not 0 <= old_size <= new_size:
        raise ValueError(f"no consistency proof from size {old_size} to size {new_size}")
    if old_size in (0, new_size):
        return []
    proof: list[bytes] = []
    start, end, complete = 0, new_size, True
    # Invariant: start < old_size <= end; ``complete`` is SUBPROOF's b flag.
    while old_size != end:
        mid = start + _split(end - start)
        if old_size <= mid:
            # SUBPROOF(m, D[0:k], b) : MTH(D[k:n])
            proof.append(_range_hash(mid, end, subtree))
            end = mid
        else:
            # SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])
            proof.append(_range_hash(start, mid, subtree))
            start, complete = mid, False
    if not complete:
        # SUBPROOF(m, D[m], false) = {MTH(D[m])}; with b = true the verifier knows it already.
        proof.append(_range_hash(start, end, subtree))
    proof.reverse()
    return proof


class InMemoryTree:
    """A tree held in memory with every completed perfect subtree hash cached.

    Its :meth:`subtree` method is a :data:`SubtreeHash`, so it serves the same roots and proofs
    as storage does; used by tests, by exports that attach proofs, and by the offline verifier.
    Building it costs n - 1 node hashes; each later lookup is a list access.
    """

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        self._levels: list[list[bytes]] = [[]]
        for digest in leaf_hashes:
            self.append(digest)

    @property
    def size(self) -> int:
        """The number of leaves."""
        return len(self._levels[0])

    def append(self, digest: bytes) -> int:
        """Add one leaf hash; returns its index. Stores every subtree the leaf completes."""
        if len(digest) != HASH_SIZE:
            raise ValueError(f"a leaf hash is {HASH_SIZE} bytes, got {len(digest)}")
        index = len(self._levels[0])
        self._levels[0].append(digest)
        level, position, current = 0, index, digest
        while position & 1:
            current = node_hash(self._levels[level][position - 1], current)
            level += 1
            position >>= 1
            if level == len(self._levels):
                self._levels.append([])
            self._levels[level].append(current)
        return index

    def subtree(self, level: int, index: int) -> bytes:
        """The :data:`SubtreeHash` callback; ``LookupError`` if that subtree is incomplete."""
        if 0 <= level < len(self._levels) and 0 <= index < len(self._levels[level]):
            return self._levels[level][index]
        raise LookupError(f"no complete subtree at level {level}, index {index}")

    def _size(self, size: int | None) -> int:
        if size is None:
            return self.size
        if not 0 <= size <= self.size:
            raise ValueError(f"tree size {size} is outside 0..{self.size}")
        return size

    def root(self, size: int | None = None) -> bytes:
        """The root hash at ``size`` (default: all leaves)."""
        return root_hash(self._size(size), self.subtree)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """The inclusion proof of leaf ``index`` in the tree of ``size`` (default: all)."""
        return inclusion_proof(index, self._size(size), self.subtree)

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """The consistency proof from ``old_size`` to ``new_size`` (default: all)."""
        return consistency_proof(old_size, self._size(new_size), self.subtree)


# -- verification (RFC 9162 sections 2.1.3.2 and 2.1.4.2) -----------------------------------


def _well_formed(proof: Sequence[bytes]) -> bool:
    return all(isinstance(p, bytes) and len(p) == HASH_SIZE for p in proof)


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """Whether ``proof`` shows leaf ``index`` with hash ``leaf_hash`` in the tree of ``size``
    leaves whose root is ``root`` (RFC 9162 section 2.1.3.2).

    False for ``index >= size``, a proof of the wrong length, or any hash that does not match.
    As in the RFC, the root is what binds the proof; the size only shapes the path, so take
    (size, root) together from a verified checkpoint.
    """
    if not 0 <= index < size or not _well_formed(proof) or len(leaf_hash) != HASH_SIZE:
        return False
    fn, sn = index, size - 1
    r = leaf_hash
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """Whether ``proof`` shows the tree of ``new_size`` with ``new_root`` extends the tree of
    ``old_size`` with ``old_root`` (RFC 9162 section 2.1.4.2).

    Edge cases: equal sizes need an empty proof and equal roots; ``old_size == 0`` needs an
    empty proof and ``old_root == EMPTY_ROOT``; ``old_size > new_size`` is False.
    """
    if not 0 <= old_size <= new_size or not _well_formed(proof):
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    if old_size == 0:
        return not proof and old_root == EMPTY_ROOT
    # 1. An empty path fails.
    if not proof:
        return False
    path = list(proof)
    # 2. If the old size is a power of two, the old root is the first node of the path.
    if _is_power_of_two(old_size):
        path.insert(0, old_root)
    # 3.-4. fn and sn are the last leaf indexes; skip the levels where fn is a right child.
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # 5. Both running roots start at the first node.
    fr = sr = path[0]
    # 6.
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    # 7.
    return fr == old_root and sr == new_root and sn == 0
