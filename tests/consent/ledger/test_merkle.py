"""The Merkle tree against an independent reference written straight from RFC 6962 section 2.1.

The reference (``mth``, ``path``, ``proof``) recurses over lists of entries exactly as the RFC
defines MTH, PATH and PROOF/SUBPROOF; it shares no code with ``consent.ledger.merkle``.
"""

from __future__ import annotations

import hashlib
import math

import pytest

from consent.ledger.merkle import (
    EMPTY_ROOT,
    InMemoryTree,
    canonical_json,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_from_frontier,
    root_from_leaf_hashes,
    root_hash,
    verify_consistency,
    verify_inclusion,
)

# -- the reference: RFC 6962 section 2.1, recursive over lists --------------------------------


def _k(n: int) -> int:
    """The largest power of two smaller than n."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(d: list[bytes]) -> bytes:
    n = len(d)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + d[0]).digest()
    k = _k(n)
    return hashlib.sha256(b"\x01" + mth(d[:k]) + mth(d[k:])).digest()


def path(m: int, d: list[bytes]) -> list[bytes]:
    n = len(d)
    if n == 1:
        return []
    k = _k(n)
    if m < k:
        return [*path(m, d[:k]), mth(d[k:])]
    return [*path(m - k, d[k:]), mth(d[:k])]


def subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [mth(d)]
    k = _k(n)
    if m <= k:
        return [*subproof(m, d[:k], b), mth(d[k:])]
    return [*subproof(m - k, d[k:], False), mth(d[:k])]


def proof(m: int, d: list[bytes]) -> list[bytes]:
    return subproof(m, d, True)


def entries(n: int) -> list[bytes]:
    return [f"entry {i}".encode() for i in range(n)]


def tree_of(n: int) -> InMemoryTree:
    return InMemoryTree(leaf_hash(e) for e in entries(n))


def flipped(hashes: list[bytes], i: int) -> list[bytes]:
    out = list(hashes)
    out[i] = bytes([out[i][0] ^ 1]) + out[i][1:]
    return out


MAX_N = 40
D = entries(MAX_N)
TREE = tree_of(MAX_N)
ROOTS = [mth(D[:n]) for n in range(MAX_N + 1)]


# -- hashes -----------------------------------------------------------------------------------


def test_hashes_use_rfc_domain_separation() -> None:
    assert leaf_hash(b"abc") == hashlib.sha256(b"\x00abc").digest()
    assert (
        node_hash(b"L" * 32, b"R" * 32) == hashlib.sha256(b"\x01" + b"L" * 32 + b"R" * 32).digest()
    )
    assert hashlib.sha256(b"").digest() == EMPTY_ROOT


def test_known_vectors_from_rfc6962_test_data() -> None:
    # The empty tree and the one-leaf tree of the empty entry, as in CT's reference tests.
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert root_from_leaf_hashes([leaf_hash(b"")]).hex() == (
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    )


def test_canonical_json_is_sorted_compact_utf8() -> None:
    assert (
        canonical_json({"b": 1, "a": ["é", None, True]}) == '{"a":["é",null,true],"b":1}'.encode()
    )


def test_canonical_json_refuses_nan() -> None:
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})


# -- roots ------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [*range(71), 1000, 1023, 1024, 1025])
def test_roots_match_reference_mth(n: int) -> None:
    d = entries(n)
    want = mth(d)
    tree = InMemoryTree(leaf_hash(e) for e in d)
    assert root_hash(n, tree.subtree) == want
    assert root_from_leaf_hashes([leaf_hash(e) for e in d]) == want


def test_root_at_every_earlier_size_from_one_tree() -> None:
    for n in range(MAX_N + 1):
        assert TREE.root(n) == ROOTS[n]


def test_root_from_frontier_folds_from_the_right() -> None:
    a, b, c = (bytes([i]) * 32 for i in range(3))
    assert root_from_frontier([a, b, c]) == node_hash(a, node_hash(b, c))
    assert root_from_frontier([]) == EMPTY_ROOT


def test_in_memory_tree_refuses_incomplete_subtrees() -> None:
    tree = tree_of(5)
    assert tree.subtree(2, 0) == mth(entries(4))
    with pytest.raises(LookupError):
        tree.subtree(1, 2)  # leaves 4..5: only leaf 4 exists
    with pytest.raises(LookupError):
        tree.subtree(3, 0)


# -- inclusion --------------------------------------------------------------------------------

PAIRS = [(m, n) for n in range(1, MAX_N + 1) for m in range(n)]


@pytest.mark.parametrize("n", range(1, MAX_N + 1))
def test_inclusion_proofs_match_reference_path(n: int) -> None:
    for m in range(n):
        assert inclusion_proof(m, n, TREE.subtree) == path(m, D[:n]), (m, n)


@pytest.mark.parametrize("n", range(1, MAX_N + 1))
def test_verify_inclusion_accepts_and_rejects(n: int) -> None:
    for m in range(n):
        p = path(m, D[:n])
        leaf = leaf_hash(D[m])
        assert verify_inclusion(leaf, m, n, p, ROOTS[n])
        # a flipped byte anywhere: in the leaf, in any proof hash, in the root
        assert not verify_inclusion(leaf_hash(D[m] + b"!"), m, n, p, ROOTS[n])
        for i in range(len(p)):
            assert not verify_inclusion(leaf, m, n, flipped(p, i), ROOTS[n])
        assert not verify_inclusion(leaf, m, n, p, flipped([ROOTS[n]], 0)[0])
        # a wrong index, anywhere in the tree or past its end
        for other in range(n + 2):
            if other != m:
                assert not verify_inclusion(leaf, other, n, p, ROOTS[n]), (m, other, n)
        # a wrong size (with that size's genuine root)
        for size in (n - 1, n + 1):
            if m < size <= MAX_N:
                assert not verify_inclusion(leaf, m, size, p, ROOTS[size]), (m, n, size)
        # a truncated or extended proof
        if p:
            assert not verify_inclusion(leaf, m, n, p[:-1], ROOTS[n])
            assert not verify_inclusion(leaf, m, n, p[1:], ROOTS[n])
        assert not verify_inclusion(leaf, m, n, [*p, ROOTS[n]], ROOTS[n])
        assert not verify_inclusion(leaf, m, n, [ROOTS[n], *p], ROOTS[n])


def test_verify_inclusion_rejects_out_of_range_and_malformed() -> None:
    leaf = leaf_hash(D[0])
    assert verify_inclusion(leaf, 0, 1, [], ROOTS[1])
    assert not verify_inclusion(leaf, 1, 1, [], ROOTS[1])
    assert not verify_inclusion(leaf, -1, 1, [], ROOTS[1])
    assert not verify_inclusion(leaf, 0, 0, [], EMPTY_ROOT)
    assert not verify_inclusion(leaf, 0, 2, [leaf_hash(D[1])[:31]], ROOTS[2])


def test_inclusion_proof_refuses_index_outside_tree() -> None:
    with pytest.raises(ValueError):
        inclusion_proof(3, 3, TREE.subtree)
    with pytest.raises(ValueError):
        inclusion_proof(0, 0, TREE.subtree)


# -- consistency ------------------------------------------------------------------------------


@pytest.mark.parametrize("n", range(1, MAX_N + 1))
def test_consistency_proofs_match_reference_proof(n: int) -> None:
    for m in range(1, n + 1):
        want = [] if m == n else proof(m, D[:n])
        assert consistency_proof(m, n, TREE.subtree) == want, (m, n)


@pytest.mark.parametrize("n", range(1, MAX_N + 1))
def test_verify_consistency_accepts_and_rejects(n: int) -> None:
    for m in range(1, n + 1):
        p = consistency_proof(m, n, TREE.subtree)
        assert verify_consistency(m, n, ROOTS[m], ROOTS[n], p), (m, n)
        for i in range(len(p)):
            assert not verify_consistency(m, n, ROOTS[m], ROOTS[n], flipped(p, i)), (m, n, i)
        assert not verify_consistency(m, n, flipped([ROOTS[m]], 0)[0], ROOTS[n], p)
        assert not verify_consistency(m, n, ROOTS[m], flipped([ROOTS[n]], 0)[0], p)
        # wrong sizes, each with its genuine root
        for old in (m - 1, m + 1):
            if 1 <= old <= n and old != m:
                assert not verify_consistency(old, n, ROOTS[old], ROOTS[n], p), (m, old, n)
        for new in (n - 1, n + 1):
            if m <= new <= MAX_N and new != n:
                assert not verify_consistency(m, new, ROOTS[m], ROOTS[new], p), (m, n, new)
        # truncated or extended
        if p:
            assert not verify_consistency(m, n, ROOTS[m], ROOTS[n], p[:-1])
            assert not verify_consistency(m, n, ROOTS[m], ROOTS[n], p[1:])
        assert not verify_consistency(m, n, ROOTS[m], ROOTS[n], [*p, ROOTS[0]])
        assert not verify_consistency(m, n, ROOTS[m], ROOTS[n], [ROOTS[m], *p])


def test_consistency_edge_cases() -> None:
    # same size: empty proof and equal roots
    assert verify_consistency(7, 7, ROOTS[7], ROOTS[7], [])
    assert not verify_consistency(7, 7, ROOTS[7], ROOTS[8], [])
    assert not verify_consistency(7, 7, ROOTS[7], ROOTS[7], [ROOTS[7]])
    # from the empty tree: empty proof, the empty root
    assert consistency_proof(0, 9, TREE.subtree) == []
    assert verify_consistency(0, 9, EMPTY_ROOT, ROOTS[9], [])
    assert not verify_consistency(0, 9, ROOTS[1], ROOTS[9], [])
    assert not verify_consistency(0, 9, EMPTY_ROOT, ROOTS[9], [ROOTS[9]])
    # shrinking, negative
    assert not verify_consistency(9, 7, ROOTS[9], ROOTS[7], [])
    assert not verify_consistency(-1, 7, EMPTY_ROOT, ROOTS[7], [])
    # a proof from a different history
    other = InMemoryTree(leaf_hash(b"other " + e) for e in D)
    assert not verify_consistency(
        5, 9, other.root(5), ROOTS[9], consistency_proof(5, 9, TREE.subtree)
    )
    with pytest.raises(ValueError):
        consistency_proof(9, 7, TREE.subtree)


# -- cost: proofs from storage need O(log n) lookups ------------------------------------------


def test_proofs_make_logarithmic_subtree_lookups() -> None:
    n = 2**17 + 12345
    leaves = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(n)]
    tree = InMemoryTree(leaves)
    root = root_from_leaf_hashes(leaves)
    calls = 0

    def counted(level: int, index: int) -> bytes:
        nonlocal calls
        calls += 1
        return tree.subtree(level, index)

    bound = 2 * math.ceil(math.log2(n)) + 2  # one per level, plus one non-perfect edge
    assert root_hash(n, counted) == root
    assert calls <= bound
    for index in (0, 1, 2**16 + 3, 2**17 - 1, 2**17, n - 2, n - 1):
        calls = 0
        p = inclusion_proof(index, n, counted)
        assert calls <= bound, (index, calls)
        assert verify_inclusion(leaves[index], index, n, p, root)
    for old in (1, 3, 2**16, 2**17 - 1, 2**17, 2**17 + 1, n - 1):
        calls = 0
        p = consistency_proof(old, n, counted)
        assert calls <= bound, (old, calls)
        assert verify_consistency(old, n, tree.root(old), root, p)
