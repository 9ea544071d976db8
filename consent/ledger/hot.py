"""Proofs for an auditor's API token in the event loop, on PostgreSQL (``vault.pgasync``).

The threaded path (a worker thread, a SQLAlchemy session and unit of work, the token and its
account loaded as ORM objects, the proof's query built and compiled for each request) cost
several times the proof itself (``bench/ledger.py --scenario scale --http``, ``py-spy
--gil``). Here a proof request with a bearer token is two statements on an async connection
from the app's own pool, each its own transaction, both compiled once:

1. the token by its keyed hash, with its account's role and status and the tree's size (one
   row; nothing when the token is unknown). Nothing is cached: a revoked token, a disabled
   account or a changed role is refused by the next request, whichever process committed it;
2. every hash the root and the proof need (coordinates computed from the index and sizes
   alone), leaves from the entries and the rest from the nodes, as array parameters.

``last_used_at`` is written by a third statement at most once a minute, as the threaded path
does. Requests without a bearer token (a portal session) and every request on SQLite (or a
test's single shared connection) take the threaded path; the checks and answers are the same.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Integer,
    any_,
    bindparam,
    cast,
    func,
    literal,
    select,
    union_all,
    update,
)

from consent.ledger.models import LedgerEntry, LedgerHead, LedgerNode
from vault.accounts.models import Account, ApiToken, Role
from vault.accounts.tokens import is_live, lookup_hash, touch_due
from vault.base import utcnow
from vault.errors import Forbidden, NotAuthenticated
from vault.pgasync import AsyncPostgres, compiled
from vault.runtime import Runtime

_HEAD_ID = 1

_AUDITOR = compiled(
    select(
        ApiToken.id,
        ApiToken.revoked_at,
        ApiToken.expires_at,
        ApiToken.last_used_at,
        Account.role,
        Account.status,
        select(LedgerHead.size)
        .where(LedgerHead.id == _HEAD_ID)
        .scalar_subquery()
        .label("tree_size"),
    )
    .join(Account, Account.id == ApiToken.account_id)
    .where(ApiToken.token_hash == bindparam("token_hash"))
)
"""The token, its account's role and status, and the tree's size: one row, one snapshot."""

_TOUCH = compiled(
    update(ApiToken)
    .where(ApiToken.id == bindparam("token_id"))
    .values(last_used_at=bindparam("now"))
)

_wanted = (
    func.unnest(
        cast(bindparam("levels"), ARRAY(Integer)), cast(bindparam("indexes"), ARRAY(BigInteger))
    )
    .table_valued("level", "index")
    .render_derived(name="wanted")
)
_HASHES = compiled(
    union_all(
        select(literal(0).label("level"), LedgerEntry.index, LedgerEntry.leaf_hash).where(
            LedgerEntry.index == any_(cast(bindparam("leaves"), ARRAY(BigInteger)))
        ),
        select(LedgerNode.level, LedgerNode.index, LedgerNode.hash).join(
            _wanted,
            (LedgerNode.level == _wanted.c.level) & (LedgerNode.index == _wanted.c.index),
        ),
    )
)
"""The hashes of the ``(level, index)`` subtrees asked for: leaves from the entries, inner
subtrees from the nodes (two arrays joined as a table: one plan whatever the count)."""

_INVALID = {"WWW-Authenticate": 'Bearer realm="audit", error="invalid_token"'}


def _refused() -> NotAuthenticated:
    return NotAuthenticated("This API token is unknown, expired or revoked.", headers=_INVALID)


async def prove_for_token(
    rt: Runtime,
    pg: AsyncPostgres,
    token: str,
    checked: Callable[[int], set[tuple[int, int]]],
) -> dict[tuple[int, int], bytes]:
    """For the auditor ``token`` stands for: the hashes of the subtrees
    ``checked(tree_size)`` names (it raises the request's own refusals first: a size beyond
    the tree). Raises the audit API's 401 for a token that is unknown, revoked or expired or
    whose account is disabled, and its 403 for an account that is not an auditor's, before
    any hash is read."""
    token_hash = lookup_hash(rt, token)
    if token_hash is None:
        raise _refused()
    now = utcnow()
    async with pg.connection() as conn:
        cursor = await conn.execute(_AUDITOR.text, _AUDITOR.params({"token_hash": token_hash}))
        row: Any = await cursor.fetchone()
        if row is None or not is_live(row.revoked_at, row.expires_at, row.status, now):
            raise _refused()
        if row.role != Role.AUDITOR:  # tokens are made for auditors only; never trust it
            raise Forbidden("The audit API is for privacy auditors.")
        if touch_due(row.last_used_at, now):
            await conn.execute(_TOUCH.text, _TOUCH.params({"token_id": row.id, "now": now}))
        needs = checked(row.tree_size or 0)
        leaves = [i for level, i in needs if level == 0]
        inner = [(level, i) for level, i in needs if level > 0]
        cursor = await conn.execute(
            _HASHES.text,
            _HASHES.params(
                {
                    "leaves": leaves,
                    "levels": [level for level, _ in inner],
                    "indexes": [i for _, i in inner],
                }
            ),
        )
        return {(int(level), int(i)): bytes(digest) for level, i, digest in await cursor.fetchall()}
