"""The audit API's proofs (and its public key) for an auditor's API token in the event loop,
on PostgreSQL (``vault.pgasync``).

The threaded path (a worker thread, a SQLAlchemy session and unit of work, the token and its
account loaded as ORM objects, the proof's query built and compiled for each request) cost
several times the proof itself (``bench/ledger.py --scenario scale --http``, ``py-spy
--gil``). Here a proof request with a bearer token is one statement on an async connection
from the app's own pool (its own transaction, compiled once): the token by its keyed hash,
its account's role and status, the tree's size and every hash the root and the proof need
(their coordinates computed from the index and sizes alone), the hashes read only when the
token is live and an auditor's. Nothing is cached: a revoked token, a disabled account or a
changed role is refused by the next request, whichever process committed it.

``last_used_at`` is written by a second statement at most once a minute, as the threaded path
does. Requests without a bearer token (a portal session) and every request on SQLite (or a
test's single shared connection) take the threaded path; the checks and answers are the same.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Integer,
    and_,
    any_,
    bindparam,
    cast,
    func,
    literal,
    select,
    true,
    union_all,
    update,
)

from consent.ledger.models import LedgerEntry, LedgerHead, LedgerNode
from vault.accounts.models import Account, AccountStatus, ApiToken, Role
from vault.accounts.tokens import is_live, lookup_hash, touch_due
from vault.base import utcnow
from vault.errors import Forbidden, InvalidInput, NotAuthenticated
from vault.pgasync import AsyncPostgres, compiled
from vault.runtime import Runtime

_HEAD_ID = 1

_token = (
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
    .subquery("token")
)
_live = and_(  # what is_live and the role check ask, for the hashes' gate
    _token.c.revoked_at.is_(None),
    _token.c.expires_at > bindparam("now"),
    _token.c.status == AccountStatus.ACTIVE.value,
    _token.c.role == Role.AUDITOR.value,
)
_wanted = (
    func.unnest(
        cast(bindparam("levels"), ARRAY(Integer)), cast(bindparam("indexes"), ARRAY(BigInteger))
    )
    .table_valued("level", "index")
    .render_derived(name="wanted")
)
_found = union_all(
    select(literal(0).label("level"), LedgerEntry.index, LedgerEntry.leaf_hash.label("hash"))
    .where(LedgerEntry.index == any_(cast(bindparam("leaves"), ARRAY(BigInteger))), _live)
    .correlate(_token),
    select(LedgerNode.level, LedgerNode.index, LedgerNode.hash)
    .join(_wanted, (LedgerNode.level == _wanted.c.level) & (LedgerNode.index == _wanted.c.index))
    .where(_live)
    .correlate(_token),
).subquery("found")
_hashes = select(
    func.array_agg(_found.c.level).label("levels"),
    func.array_agg(_found.c.index).label("indexes"),
    func.array_agg(_found.c.hash).label("hashes"),
).lateral("hashes")
_PROOF = compiled(
    select(_token, _hashes.c.levels, _hashes.c.indexes, _hashes.c.hashes).select_from(
        _token.join(_hashes, true())
    )
)
"""One statement, one snapshot, one round trip: the token by its keyed hash, its account's
role and status and the tree's size, and (only when the token is live and an auditor's: the
gate is evaluated before any hash is read) the hashes of the ``(level, index)`` subtrees asked
for, as three arrays: leaves from the entries, inner subtrees from the nodes (two arrays joined
as a table: one plan whatever the count). No row when the token is unknown."""

_AUDITOR = compiled(select(_token))
"""The token alone (with its account's role and status), for the audit API's requests that
read nothing else from the database."""

_TOUCH = compiled(
    update(ApiToken)
    .where(ApiToken.id == bindparam("token_id"))
    .values(last_used_at=bindparam("now"))
)

_INVALID = {"WWW-Authenticate": 'Bearer realm="audit", error="invalid_token"'}


def _refused() -> NotAuthenticated:
    return NotAuthenticated("This API token is unknown, expired or revoked.", headers=_INVALID)


async def prove_for_token(
    rt: Runtime,
    pg: AsyncPostgres,
    token: str,
    checked: Callable[[int | None], set[tuple[int, int]]],
) -> dict[tuple[int, int], bytes]:
    """For the auditor ``token`` stands for: the hashes of the subtrees ``checked`` names.
    ``checked(None)`` gives them from the request alone; ``checked(tree_size)`` raises the
    request's own refusals (an index beyond the size, a size beyond the tree) and is called
    once the token has passed. Raises the audit API's 401 for a token that is unknown,
    revoked or expired or whose account is disabled, and its 403 for an account that is not
    an auditor's; for those the statement reads no hash."""
    token_hash = lookup_hash(rt, token)
    if token_hash is None:
        raise _refused()
    now = utcnow()
    try:
        # The coordinates come from the request alone; ``checked`` refuses a size beyond the
        # tree again once the statement has said how big it is.
        needs = checked(None)
    except InvalidInput:
        needs = set()  # refused after the token check, as the threaded path refuses it
    inner = [(level, i) for level, i in needs if level > 0]
    values = {
        "token_hash": token_hash,
        "now": now,
        "leaves": [i for level, i in needs if level == 0],
        "levels": [level for level, _ in inner],
        "indexes": [i for _, i in inner],
    }
    async with pg.connection() as conn:
        row: Any = await conn.row(_PROOF, values)
        await _admit(conn, row, now)
    checked(row.tree_size or 0)
    return {
        (int(level), int(i)): bytes(digest)
        for level, i, digest in zip(
            row.levels or (), row.indexes or (), row.hashes or (), strict=True
        )
    }


async def require_auditor_token(rt: Runtime, pg: AsyncPostgres, token: str) -> None:
    """The audit API's check of an auditor's API token, for a request that reads nothing
    else from the database: one statement (two when ``last_used_at`` is due). Raises the
    401 or 403 of :func:`prove_for_token`."""
    token_hash = lookup_hash(rt, token)
    if token_hash is None:
        raise _refused()
    now = utcnow()
    async with pg.connection() as conn:
        await _admit(conn, await conn.row(_AUDITOR, {"token_hash": token_hash}), now)


async def _admit(conn: Any, row: Any, now: datetime) -> None:
    """Refuse a token that is unknown (no row), revoked or expired, or whose account is
    disabled (401) or not an auditor's (403); note its use at most once a minute."""
    if row is None or not is_live(row.revoked_at, row.expires_at, row.status, now):
        raise _refused()
    if row.role != Role.AUDITOR:  # tokens are made for auditors only; never trust it
        raise Forbidden("The audit API is for privacy auditors.")
    if touch_due(row.last_used_at, now):
        await conn.run(_TOUCH, {"token_id": row.id, "now": now})
