"""Sign-up, sign-in (with throttling), server-side sessions and password changes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Insert, case, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from vault.accounts.errors import (
    BadCredentials,
    EmailNotConfirmed,
    EmailUnavailable,
    SignInThrottled,
    WeakPassword,
)
from vault.accounts.models import Account, AccountSession, AccountStatus, Role, SignInThrottle
from vault.base import utcnow
from vault.crypto import blind_index, hash_token, new_token, normalise_email
from vault.errors import InvalidInput
from vault.keystore import KeyStore
from vault.metrics import SIGNIN_THROTTLED
from vault.runtime import Runtime

MIN_PASSWORD = 10
MAX_PASSWORD = 256
MAX_EMAIL = 254
_COMMON_PASSWORDS = frozenset(
    {
        "password123",
        "1234567890",
        "qwertyuiop",
        "password12",
        "iloveyou12",
        "letmein123",
        "welcome123",
        "0123456789",
        "abcdefghij",
        "passw0rd123",
        "1q2w3e4r5t",
        "qwerty1234",
    }
)
_LAST_SEEN_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class SignedIn:
    account: Account
    session: AccountSession
    token: str


def email_index(rt: Runtime, email: str) -> bytes:
    return blind_index(rt.secrets.blind_index_key, "email", normalise_email(email))


def check_password_rules(password: str, email: str | None = None) -> None:
    if len(password) < MIN_PASSWORD:
        raise WeakPassword(f"Use at least {MIN_PASSWORD} characters.", field="password")
    if len(password) > MAX_PASSWORD:
        raise WeakPassword(f"Use at most {MAX_PASSWORD} characters.", field="password")
    lowered = password.lower()
    if lowered in _COMMON_PASSWORDS or len(set(password)) < 4:
        raise WeakPassword("This password is too easy to guess.", field="password")
    if email and lowered == normalise_email(email):
        raise WeakPassword("Your password must not be your email address.", field="password")


class AccountService:
    def __init__(self, db: Session, rt: Runtime) -> None:
        self.db = db
        self.rt = rt
        self._dummy_hash: str | None = None

    # -- sign-up --------------------------------------------------------------------------
    def create(
        self,
        clean_email: str,
        password: str,
        *,
        role: Role = Role.INDIVIDUAL,
        client_address: str = "",
    ) -> Account:
        """Create an account for an already validated address, with its data key. The address
        itself is stored by the caller (:func:`vault.signup.sign_up`: as a profile field)."""
        check_password_rules(password, clean_email)
        # Throttled like sign-in, so sign-up cannot be used to probe addresses at speed.
        self.reserve_attempt(clean_email, client_address)
        index = email_index(self.rt, clean_email)
        existing = self.db.scalars(select(Account).where(Account.email_index == index)).first()
        if existing is not None:
            # Same cost as the success path; the attempt stays counted as a failed sign-in.
            self._verify(existing.password_hash, password)
            raise EmailUnavailable()
        now = utcnow()
        account = Account(
            id=uuid.uuid4(),
            role=role.value,
            status=AccountStatus.ACTIVE.value,
            email_index=index,
            password_hash=self.rt.passwords.hash(password),
            password_changed_at=now,
        )
        self.db.add(account)
        try:
            with self.db.begin_nested():
                self.db.flush()
        except IntegrityError as exc:  # a concurrent sign-up took the address first
            raise EmailUnavailable() from exc
        KeyStore(self.db, self.rt.keys).create(account.id)
        self.release_attempt(clean_email, client_address)
        return account

    # -- sign-in --------------------------------------------------------------------------
    def _buckets(self, email: str, client_address: str) -> list[tuple[bytes, int]]:
        key = self.rt.secrets.blind_index_key
        settings = self.rt.settings
        buckets = [
            (
                blind_index(key, "throttle-account", normalise_email(email)),
                settings.signin_max_failures_per_account,
            )
        ]
        if client_address:
            buckets.append(
                (
                    blind_index(key, "throttle-address", client_address),
                    settings.signin_max_failures_per_address,
                )
            )
        return buckets

    def _window(self) -> timedelta:
        return timedelta(minutes=self.rt.settings.signin_window_minutes)

    def check_throttle(self, email: str, client_address: str) -> None:
        """Refuse when a bucket is full (a read only: for work that records its failures in a
        transaction of its own, like a refused import; checks that guard a password use
        :meth:`reserve_attempt`)."""
        now = utcnow()
        wait = 0
        for bucket, limit in self._buckets(email, client_address):
            row = self.db.get(SignInThrottle, bucket)
            if row is None or row.failures < limit:
                continue
            wait = max(wait, self._wait(row.window_started_at, now))
        if wait:
            SIGNIN_THROTTLED.inc()
            raise SignInThrottled(wait)

    def _wait(self, window_started_at: datetime, now: datetime) -> int:
        ends = window_started_at + self._window()
        return int((ends - now).total_seconds()) + 1 if ends > now else 0

    @contextmanager
    def _counting(self) -> Iterator[Session]:
        """Where attempts are counted. On PostgreSQL: a short transaction of its own, committed
        at once, so parallel attempts see each other's counts and no counter row stays locked
        while Argon2 runs (two tabs of one person never wait on each other). On SQLite: the
        request's own transaction, since SQLite serialises writers anyway and a second
        connection would wait on the request's write lock."""
        if self.db.get_bind().dialect.name == "sqlite":
            yield self.db
            self.db.expire_all()
            return
        with self.rt.sessions() as own, own.begin():
            yield own

    def reserve_attempt(self, email: str, client_address: str) -> None:
        """Count an attempt against every bucket *before* the password is checked, or raise
        :class:`SignInThrottled` (counting nothing) when a bucket is full.

        Each bucket is taken by one conditional ``UPDATE ... RETURNING``: a window that ended
        starts over at 1, a window below its limit counts one more, a full one matches no row.
        The row lock the update takes makes parallel attempts on one bucket queue, each seeing
        the count the one before it left, so no more than the limit are ever checked in a
        window. The attempt stays counted as a failure unless :meth:`release_attempt` is called.
        """
        self.reserve(self._buckets(email, client_address))

    def reserve(self, buckets: list[tuple[bytes, int]]) -> None:
        """Count one attempt in each ``(bucket, limit)`` or raise :class:`SignInThrottled`
        (counting nothing): what :meth:`reserve_attempt` does, for other buckets (requests
        for a password reset link)."""
        now = utcnow()
        window_start = now - self._window()
        with self._counting() as db:
            taken: list[bytes] = []
            for bucket, limit in buckets:
                counted = self._count(db, bucket, limit, now, window_start)
                if counted is None:
                    started = db.scalar(
                        select(SignInThrottle.window_started_at).where(
                            SignInThrottle.bucket == bucket
                        )
                    )
                    for earlier in taken:
                        _uncount(db, earlier)
                    wait = max(1, self._wait(started or now, now))
                    break
                taken.append(bucket)
            else:
                return
        SIGNIN_THROTTLED.inc()
        raise SignInThrottled(wait)

    def _count(
        self, db: Session, bucket: bytes, limit: int, now: datetime, window_start: datetime
    ) -> int | None:
        """One more attempt in ``bucket``: the new count, or None when the bucket is full."""
        expired = SignInThrottle.window_started_at <= window_start
        for _attempt in range(3):
            db.execute(_insert_ignoring_conflict(db, bucket, now))
            counted = db.execute(
                update(SignInThrottle)
                .where(
                    SignInThrottle.bucket == bucket,
                    or_(expired, SignInThrottle.failures < limit),
                )
                .values(
                    failures=case((expired, 1), else_=SignInThrottle.failures + 1),
                    window_started_at=case((expired, now), else_=SignInThrottle.window_started_at),
                )
                .returning(SignInThrottle.failures)
                .execution_options(synchronize_session=False)
            ).scalar()
            if counted is not None:
                return int(counted)
            present = db.scalar(
                select(SignInThrottle.bucket).where(SignInThrottle.bucket == bucket)
            )
            if present is not None:
                return None  # the bucket is full
            # The row went away between the insert and the update (the window's purge): again.
        return None

    def release_attempt(self, email: str, client_address: str) -> None:
        """The password was right: the account's failures are forgotten and the attempt no
        longer counts against the client address."""
        buckets = self._buckets(email, client_address)
        with self._counting() as db:
            # Forgotten, not deleted: a parallel attempt may be between its insert and its
            # update of this very row.
            db.execute(
                update(SignInThrottle)
                .where(SignInThrottle.bucket == buckets[0][0])
                .values(failures=0)
                .execution_options(synchronize_session=False)
            )
            for bucket, _limit in buckets[1:]:
                _uncount(db, bucket)

    def record_failure(self, email: str, client_address: str) -> None:
        """Count one failure in every bucket (for checks made without a reservation)."""
        now = utcnow()
        window_start = now - self._window()
        for bucket, _limit in self._buckets(email, client_address):
            self.db.execute(_insert_ignoring_conflict(self.db, bucket, now))
            expired = SignInThrottle.window_started_at <= window_start
            self.db.execute(
                update(SignInThrottle)
                .where(SignInThrottle.bucket == bucket)
                .values(
                    failures=case((expired, 1), else_=SignInThrottle.failures + 1),
                    window_started_at=case((expired, now), else_=SignInThrottle.window_started_at),
                )
                .execution_options(synchronize_session=False)
            )
        self.db.expire_all()

    def throttle_buckets(self) -> int:
        """How many throttle buckets (accounts or client addresses) counted a failure in the
        current window: a table the purge job keeps small."""
        since = utcnow() - self._window()
        return int(
            self.db.scalar(select(func.count()).where(SignInThrottle.window_started_at > since))
            or 0
        )

    def purge_throttle(self) -> int:
        """Forget failure counts whose window ended (they are keyed hashes of addresses and
        emails, including those of erased accounts, and stop counting anyway)."""
        cutoff = utcnow() - self._window()
        result = self.db.execute(
            delete(SignInThrottle)
            .where(SignInThrottle.window_started_at < cutoff)
            .execution_options(synchronize_session=False)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    def check_password(self, account: Account, password: str) -> bool:
        """Whether ``password`` is the account's (for confirming a grave step, like erasure)."""
        return bool(password) and self._verify(account.password_hash, password)

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return self.rt.passwords.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = _dummy_hash_for(self.rt)
        return self._dummy_hash

    def authenticate(self, email: str, password: str, *, client_address: str = "") -> Account:
        """Return the account, or raise BadCredentials / SignInThrottled.

        Unknown addresses cost the same Argon2 verification as known ones, and throttling
        counts per address whether or not an account exists, so neither the message nor
        the timing tells whether an address is registered.
        """
        email = email.strip()
        if not email or len(email) > MAX_EMAIL or len(password) > MAX_PASSWORD:
            self._verify(self._dummy(), password[:MAX_PASSWORD])
            raise BadCredentials()
        self.reserve_attempt(email, client_address)
        account = self.db.scalars(
            select(Account).where(Account.email_index == email_index(self.rt, email))
        ).first()
        ok = self._verify(account.password_hash if account else self._dummy(), password)
        if ok and account is not None and account.status == AccountStatus.UNCONFIRMED:
            # The right password: saying so tells nothing a prober could not learn by
            # signing up; the address is still to be confirmed from the mail.
            self.release_attempt(email, client_address)
            raise EmailNotConfirmed()
        if account is None or not ok or account.status != AccountStatus.ACTIVE:
            raise BadCredentials()  # the reserved attempt stays counted as a failure
        if self.rt.passwords.check_needs_rehash(account.password_hash):
            account.password_hash = self.rt.passwords.hash(password)
        self.release_attempt(email, client_address)
        return account

    # -- sessions -------------------------------------------------------------------------
    def start_session(self, account: Account) -> SignedIn:
        now = utcnow()
        token = new_token()
        session = AccountSession(
            account_id=account.id,
            token_hash=hash_token(self.rt.secrets.token_hash_key, token),
            created_at=now,
            last_seen_at=now,
            expires_at=now + timedelta(days=self.rt.settings.session_max_days),
        )
        self.db.add(session)
        self.db.flush()
        return SignedIn(account, session, token)

    def resolve_session(self, token: str) -> tuple[Account, AccountSession] | None:
        """The live session for a cookie token, or None (unknown, expired or revoked)."""
        if not token or len(token) > 128:
            return None
        row = self.db.execute(
            select(AccountSession, Account)
            .join(Account, Account.id == AccountSession.account_id)
            .where(AccountSession.token_hash == hash_token(self.rt.secrets.token_hash_key, token))
        ).first()
        if row is None:
            return None
        session, account = row
        now = utcnow()
        idle = timedelta(minutes=self.rt.settings.session_idle_minutes)
        if (
            session.expires_at <= now
            or session.last_seen_at + idle <= now
            or account.status != AccountStatus.ACTIVE
        ):
            self.db.delete(session)
            self.db.flush()
            return None
        if now - session.last_seen_at >= _LAST_SEEN_RESOLUTION:
            session.last_seen_at = now
        return account, session

    def end_session(self, session_id: uuid.UUID) -> None:
        self.db.execute(delete(AccountSession).where(AccountSession.id == session_id))

    def end_all_sessions(self, account_id: uuid.UUID, *, except_id: uuid.UUID | None = None) -> int:
        query = delete(AccountSession).where(AccountSession.account_id == account_id)
        if except_id is not None:
            query = query.where(AccountSession.id != except_id)
        result = self.db.execute(query.execution_options(synchronize_session=False))
        return int(result.rowcount)  # type: ignore[attr-defined]

    def active_sessions(self, account_id: uuid.UUID) -> list[AccountSession]:
        return list(
            self.db.scalars(
                select(AccountSession)
                .where(AccountSession.account_id == account_id)
                .order_by(AccountSession.last_seen_at.desc())
            )
        )

    def confirm_password(
        self, account: Account, password: str, *, email: str, client_address: str
    ) -> bool:
        """Whether ``password`` is the account's, for a grave step taken in a signed-in session
        (erasure, a new password). Throttled like sign-in: a session is no licence to guess.
        A wrong password stays counted; raises :class:`SignInThrottled` when a bucket is full."""
        self.reserve_attempt(email, client_address)
        if not self.check_password(account, password[:MAX_PASSWORD]):
            return False
        self.release_attempt(email, client_address)
        return True

    def change_password(
        self,
        account: Account,
        current: str,
        new: str,
        *,
        email: str,
        keep_session: uuid.UUID,
        client_address: str = "",
    ) -> None:
        """Check the current password, set the new one, sign out every other session.

        The new password's rules are checked before anything is written; a wrong current
        password is counted against the sign-in throttle (and stays counted)."""
        check_password_rules(new, email)
        if current == new:
            raise WeakPassword(
                "Choose a password different from the current one.", field="new_password"
            )
        if not self.confirm_password(account, current, email=email, client_address=client_address):
            raise InvalidInput("The current password is not right.", field="current_password")
        account.password_hash = self.rt.passwords.hash(new)
        account.password_changed_at = utcnow()
        self.end_all_sessions(account.id, except_id=keep_session)
        self.db.flush()


_DUMMY_HASHES: dict[tuple[int, int, int], str] = {}


def _dummy_hash_for(rt: Runtime) -> str:
    s = rt.settings
    params = (s.argon2_time_cost, s.argon2_memory_kib, s.argon2_parallelism)
    if params not in _DUMMY_HASHES:
        _DUMMY_HASHES[params] = rt.passwords.hash(new_token())
    return _DUMMY_HASHES[params]


def _uncount(db: Session, bucket: bytes) -> None:
    db.execute(
        update(SignInThrottle)
        .where(SignInThrottle.bucket == bucket, SignInThrottle.failures > 0)
        .values(failures=SignInThrottle.failures - 1)
        .execution_options(synchronize_session=False)
    )


def _insert_ignoring_conflict(db: Session, bucket: bytes, now: datetime) -> Insert:
    """``INSERT`` an empty bucket unless it exists (``ON CONFLICT DO NOTHING``), so that the
    conditional update that follows always has its row, whoever created it."""
    dialect = sqlite if db.get_bind().dialect.name == "sqlite" else postgresql
    statement: Insert = (
        dialect.insert(SignInThrottle)
        .values(bucket=bucket, failures=0, window_started_at=now)
        .on_conflict_do_nothing(index_elements=[SignInThrottle.bucket])
    )
    return statement
