"""Second factors: TOTP, recovery codes and passkeys; the half-finished sign-in that waits for
one; and step-up (a grave step needs a factor proved in the last few minutes)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from vault.accounts.models import Account, AccountStatus
from vault.base import utcnow
from vault.crypto import Binding, hash_token, new_token
from vault.factors import totp
from vault.factors.errors import BadCode, FactorConflict, PasskeyRefused, SignInStepExpired
from vault.factors.models import (
    FactorChallenge,
    Passkey,
    RecoveryCode,
    SessionFactorCheck,
    TotpFactor,
)
from vault.factors.notices import notify_security_event
from vault.keystore import KeyStore
from vault.runtime import Runtime

ISSUER = "VRM Vault"
RECOVERY_CODES = 10
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i
_RECOVERY_LENGTH = 10  # about 50 bits each
STEP_UP_WINDOW = timedelta(minutes=10)
SIGNIN_STEP_TTL = timedelta(minutes=5)
CEREMONY_TTL = timedelta(minutes=5)
MAX_CODE_TRIES = 5
"""Wrong codes one half-finished sign-in may take before it ends (the sign-in throttle, which
codes share with passwords, bounds them across sign-ins too)."""
MAX_PASSKEYS = 20
MAX_PASSKEY_NAME = 60
MAX_CREDENTIAL_JSON = 16_384

SIGNIN = "signin"
PASSKEY_REGISTER = "passkey-register"
PASSKEY_VERIFY = "passkey-verify"
PASSKEY_SIGNIN = "passkey-signin"


@dataclass(frozen=True, slots=True)
class PasskeyView:
    id: uuid.UUID
    name: str
    created_at: datetime
    last_used_at: datetime | None


@dataclass(frozen=True, slots=True)
class FactorStatus:
    totp_on: bool
    passkeys: list[PasskeyView]
    recovery_left: int

    @property
    def any_on(self) -> bool:
        return self.totp_on or bool(self.passkeys)


@dataclass(frozen=True, slots=True)
class Ceremony:
    """WebAuthn options for the browser, and the ticket that names their challenge."""

    ticket: str
    options_json: str


def normalise_recovery(raw: str) -> str | None:
    code = "".join(c for c in raw.lower()[:64] if c not in " -\t")
    if len(code) != _RECOVERY_LENGTH or any(c not in _RECOVERY_ALPHABET for c in code):
        return None
    return code


def _binding(row_id: uuid.UUID, owner_id: uuid.UUID, table: str, column: str) -> Binding:
    return Binding(owner_id, table, column, row_id)


class FactorService:
    def __init__(self, db: Session, rt: Runtime) -> None:
        self.db = db
        self.rt = rt
        self.keys = KeyStore(db, rt.keys)

    # -- what is on -----------------------------------------------------------------------
    def status(self, account_id: uuid.UUID) -> FactorStatus:
        return FactorStatus(
            totp_on=self._confirmed_totp(account_id) is not None,
            passkeys=self.passkeys(account_id),
            recovery_left=self.recovery_left(account_id),
        )

    def has_second_factor(self, account_id: uuid.UUID) -> bool:
        totp_on = self.db.scalar(
            select(func.count())
            .select_from(TotpFactor)
            .where(TotpFactor.account_id == account_id, TotpFactor.confirmed_at.is_not(None))
        )
        if totp_on:
            return True
        return bool(
            self.db.scalar(
                select(func.count()).select_from(Passkey).where(Passkey.account_id == account_id)
            )
        )

    # -- TOTP -----------------------------------------------------------------------------
    def _totp_row(self, account_id: uuid.UUID) -> TotpFactor | None:
        return self.db.scalars(
            select(TotpFactor).where(TotpFactor.account_id == account_id)
        ).first()

    def _confirmed_totp(self, account_id: uuid.UUID) -> TotpFactor | None:
        row = self._totp_row(account_id)
        return row if row is not None and row.confirmed_at is not None else None

    def _secret(self, row: TotpFactor) -> bytes:
        return self.keys.decrypt(
            _binding(row.id, row.account_id, "totp_factors", "secret_ct"), row.secret_ct
        )

    def begin_totp(self, account: Account) -> bytes:
        """A new secret waiting for its first code (replacing one that never got it)."""
        row = self._totp_row(account.id)
        if row is not None and row.confirmed_at is not None:
            raise FactorConflict("An authenticator app is already on. Turn it off first.")
        if row is not None:
            self.db.delete(row)
            self.db.flush()
        secret = totp.new_secret()
        row = TotpFactor(id=uuid.uuid4(), account_id=account.id, secret_ct=b"")
        row.secret_ct = self.keys.encrypt(
            _binding(row.id, account.id, "totp_factors", "secret_ct"), secret
        )
        self.db.add(row)
        self.db.flush()
        return secret

    def pending_totp_secret(self, account_id: uuid.UUID) -> bytes | None:
        row = self._totp_row(account_id)
        if row is None or row.confirmed_at is not None:
            return None
        return self._secret(row)

    def confirm_totp(self, account: Account, raw_code: str) -> list[str]:
        """Turn the app on with its first code; returns new recovery codes when the account
        had none left (to be shown once), else an empty list."""
        row = self._totp_row(account.id)
        if row is None or row.confirmed_at is not None:
            raise FactorConflict("Start again: there is no authenticator app waiting.")
        if not self._claim_totp(row, raw_code):
            raise BadCode()
        row.confirmed_at = utcnow()
        self.db.flush()
        notify_security_event(self.db, self.rt, account.id, "factor_added")
        return [] if self.recovery_left(account.id) else self.new_recovery_codes(account.id)

    def _claim_totp(self, row: TotpFactor, raw_code: str) -> bool:
        """Whether ``raw_code`` is the app's code for now (+-1 step) and not used before; its
        step is claimed with a conditional update, so a code works once even in a race."""
        code = totp.normalise_code(raw_code)
        if code is None:
            return False
        step = totp.matching_step(self._secret(row), code, totp.current_step())
        if step is None:
            return False
        claimed = self.db.execute(
            update(TotpFactor)
            .where(
                TotpFactor.id == row.id,
                or_(TotpFactor.last_step.is_(None), TotpFactor.last_step < step),
            )
            .values(last_step=step)
            .execution_options(synchronize_session=False)
        )
        ok = bool(claimed.rowcount == 1)  # type: ignore[attr-defined]
        self.db.refresh(row)
        return ok

    def turn_off_totp(self, account: Account) -> None:
        row = self._totp_row(account.id)
        if row is None:
            return
        was_on = row.confirmed_at is not None
        self.db.delete(row)
        self.db.flush()
        if was_on:
            notify_security_event(self.db, self.rt, account.id, "factor_removed")
            self._forget_recovery_if_no_factor(account.id)

    # -- recovery codes -------------------------------------------------------------------
    def _recovery_hash(self, account_id: uuid.UUID, code: str) -> bytes:
        return hash_token(self.rt.secrets.token_hash_key, f"recovery:{account_id}:{code}")

    def new_recovery_codes(self, account_id: uuid.UUID) -> list[str]:
        """Ten new codes replacing every earlier one; only their keyed hashes are kept."""
        self.db.execute(
            delete(RecoveryCode)
            .where(RecoveryCode.account_id == account_id)
            .execution_options(synchronize_session=False)
        )
        codes = [
            "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(_RECOVERY_LENGTH))
            for _ in range(RECOVERY_CODES)
        ]
        for code in codes:
            self.db.add(
                RecoveryCode(account_id=account_id, code_hash=self._recovery_hash(account_id, code))
            )
        self.db.flush()
        return [f"{c[:5]}-{c[5:]}" for c in codes]

    def recovery_left(self, account_id: uuid.UUID) -> int:
        return int(
            self.db.scalar(
                select(func.count())
                .select_from(RecoveryCode)
                .where(RecoveryCode.account_id == account_id, RecoveryCode.used_at.is_(None))
            )
            or 0
        )

    def _use_recovery(self, account_id: uuid.UUID, raw: str) -> bool:
        code = normalise_recovery(raw)
        if code is None:
            return False
        used = self.db.execute(
            update(RecoveryCode)
            .where(
                RecoveryCode.account_id == account_id,
                RecoveryCode.code_hash == self._recovery_hash(account_id, code),
                RecoveryCode.used_at.is_(None),
            )
            .values(used_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        return bool(used.rowcount == 1)  # type: ignore[attr-defined]

    def _forget_recovery_if_no_factor(self, account_id: uuid.UUID) -> None:
        if not self.has_second_factor(account_id):
            self.db.execute(
                delete(RecoveryCode)
                .where(RecoveryCode.account_id == account_id)
                .execution_options(synchronize_session=False)
            )

    def check_code(self, account_id: uuid.UUID, raw: str) -> str | None:
        """Which factor ``raw`` proves (``"totp"`` or ``"recovery"``), using it up, or None."""
        if totp.normalise_code(raw) is not None:
            row = self._confirmed_totp(account_id)
            return "totp" if row is not None and self._claim_totp(row, raw) else None
        if self._use_recovery(account_id, raw):
            return "recovery"
        return None

    # -- passkeys -------------------------------------------------------------------------
    @property
    def rp_id(self) -> str:
        return urlsplit(self.rt.settings.base_url).hostname or "localhost"

    @property
    def origin(self) -> str:
        parts = urlsplit(self.rt.settings.base_url)
        return f"{parts.scheme}://{parts.netloc}"

    def user_handle(self, account_id: uuid.UUID) -> bytes:
        """The WebAuthn user id: stable per account, meaningless to anyone else."""
        return hmac.new(
            self.rt.secrets.blind_index_key, b"webauthn-user\x00" + account_id.bytes, hashlib.sha256
        ).digest()

    def passkeys(self, account_id: uuid.UUID) -> list[PasskeyView]:
        rows = self.db.scalars(
            select(Passkey).where(Passkey.account_id == account_id).order_by(Passkey.created_at)
        )
        return [
            PasskeyView(
                row.id,
                self.keys.decrypt(
                    _binding(row.id, row.account_id, "passkeys", "name_ct"), row.name_ct
                ).decode(),
                row.created_at,
                row.last_used_at,
            )
            for row in rows
        ]

    def _ceremony(
        self, purpose: str, account_id: uuid.UUID | None, challenge: bytes, options: object
    ) -> Ceremony:
        ticket = new_token()
        now = utcnow()
        self.db.add(
            FactorChallenge(
                token_hash=hash_token(self.rt.secrets.token_hash_key, ticket),
                purpose=purpose,
                account_id=account_id,
                challenge=challenge,
                created_at=now,
                expires_at=now + CEREMONY_TTL,
            )
        )
        self.db.flush()
        return Ceremony(ticket, options_to_json(options))  # type: ignore[arg-type]

    def _claim(self, ticket: str, purpose: str, account_id: uuid.UUID | None) -> FactorChallenge:
        """The challenge a ticket names, claimed once (conditional update), or PasskeyRefused."""
        if not ticket or len(ticket) > 128:
            raise PasskeyRefused("This passkey request has expired. Try again.")
        token_hash = hash_token(self.rt.secrets.token_hash_key, ticket)
        now = utcnow()
        conditions = [
            FactorChallenge.token_hash == token_hash,
            FactorChallenge.purpose == purpose,
            FactorChallenge.used_at.is_(None),
            FactorChallenge.expires_at > now,
        ]
        if account_id is not None:
            conditions.append(FactorChallenge.account_id == account_id)
        claimed = self.db.execute(
            update(FactorChallenge)
            .where(*conditions)
            .values(used_at=now)
            .execution_options(synchronize_session=False)
        )
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            raise PasskeyRefused("This passkey request has expired. Try again.")
        row = self.db.scalars(
            select(FactorChallenge).where(FactorChallenge.token_hash == token_hash)
        ).one()
        return row

    def registration_options(self, account: Account, user_name: str) -> Ceremony:
        existing = self.db.scalars(
            select(Passkey.credential_id).where(Passkey.account_id == account.id)
        ).all()
        if len(existing) >= MAX_PASSKEYS:
            raise FactorConflict(f"You have {MAX_PASSKEYS} passkeys; remove one to add another.")
        options = generate_registration_options(
            rp_id=self.rp_id,
            rp_name=ISSUER,
            user_id=self.user_handle(account.id),
            user_name=user_name or "VRM Vault account",
            user_display_name=user_name or "VRM Vault account",
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.REQUIRED,
                user_verification=UserVerificationRequirement.PREFERRED,
            ),
            exclude_credentials=[PublicKeyCredentialDescriptor(id=bytes(c)) for c in existing],
        )
        return self._ceremony(PASSKEY_REGISTER, account.id, options.challenge, options)

    def add_passkey(self, account: Account, ticket: str, credential: str, name: str) -> Passkey:
        name = " ".join(name.split())
        if not name:
            raise PasskeyRefused("Give the passkey a name, such as the device it is on.")
        if len(name) > MAX_PASSKEY_NAME:
            raise PasskeyRefused(f"Use at most {MAX_PASSKEY_NAME} characters for the name.")
        parsed = _credential(credential)
        row = self._claim(ticket, PASSKEY_REGISTER, account.id)
        try:
            verified = verify_registration_response(
                credential=parsed,
                expected_challenge=bytes(row.challenge or b""),
                expected_rp_id=self.rp_id,
                expected_origin=self.origin,
            )
        except (WebAuthnException, ValueError, KeyError, TypeError) as exc:
            raise PasskeyRefused() from exc
        taken = self.db.scalar(
            select(func.count())
            .select_from(Passkey)
            .where(Passkey.credential_id == verified.credential_id)
        )
        if taken:
            raise PasskeyRefused("This passkey is already registered.")
        transports = parsed.get("response", {}).get("transports") or []
        known = {t.value for t in AuthenticatorTransport}
        passkey = Passkey(
            id=uuid.uuid4(),
            account_id=account.id,
            credential_id=verified.credential_id,
            public_key=verified.credential_public_key,
            sign_count=verified.sign_count,
            name_ct=b"",
            transports=",".join(t for t in transports if isinstance(t, str) and t in known)[:200],
        )
        passkey.name_ct = self.keys.encrypt(
            _binding(passkey.id, account.id, "passkeys", "name_ct"), name.encode()
        )
        self.db.add(passkey)
        self.db.flush()
        notify_security_event(self.db, self.rt, account.id, "factor_added")
        return passkey

    def remove_passkey(self, account: Account, passkey_id: uuid.UUID) -> bool:
        removed = self.db.execute(
            delete(Passkey)
            .where(Passkey.id == passkey_id, Passkey.account_id == account.id)
            .execution_options(synchronize_session=False)
        )
        if removed.rowcount != 1:  # type: ignore[attr-defined]
            return False
        notify_security_event(self.db, self.rt, account.id, "factor_removed")
        self._forget_recovery_if_no_factor(account.id)
        return True

    def authentication_options(self, account_id: uuid.UUID | None) -> Ceremony:
        """Options to prove a passkey: the account's (second factor, step-up) or any
        discoverable one (``account_id`` None: sign-in without a password)."""
        if account_id is None:
            options = generate_authentication_options(
                rp_id=self.rp_id, user_verification=UserVerificationRequirement.REQUIRED
            )
            return self._ceremony(PASSKEY_SIGNIN, None, options.challenge, options)
        rows = self.db.scalars(select(Passkey).where(Passkey.account_id == account_id)).all()
        if not rows:
            raise PasskeyRefused("This account has no passkey.")
        options = generate_authentication_options(
            rp_id=self.rp_id,
            allow_credentials=[
                PublicKeyCredentialDescriptor(
                    id=bytes(r.credential_id),
                    transports=[AuthenticatorTransport(t) for t in r.transports.split(",") if t],
                )
                for r in rows
            ],
            user_verification=UserVerificationRequirement.PREFERRED,
        )
        return self._ceremony(PASSKEY_VERIFY, account_id, options.challenge, options)

    def verify_passkey(self, ticket: str, credential: str, account_id: uuid.UUID | None) -> Account:
        """The account a passkey answer proves. With ``account_id`` (second factor, step-up)
        the passkey must be that account's; without (sign-in without a password) it must be a
        discoverable credential that verified its user, naming its account's user handle."""
        parsed = _credential(credential)
        purpose = PASSKEY_SIGNIN if account_id is None else PASSKEY_VERIFY
        row = self._claim(ticket, purpose, account_id)
        try:
            raw_id = _b64url(str(parsed.get("rawId") or parsed.get("id") or ""))
        except ValueError as exc:
            raise PasskeyRefused() from exc
        passkey = self.db.scalars(select(Passkey).where(Passkey.credential_id == raw_id)).first()
        if passkey is None or (account_id is not None and passkey.account_id != account_id):
            raise PasskeyRefused("This passkey is not registered here.")
        if account_id is None:
            handle = parsed.get("response", {}).get("userHandle")
            if not isinstance(handle, str) or not hmac.compare_digest(
                _b64url(handle), self.user_handle(passkey.account_id)
            ):
                raise PasskeyRefused()
        try:
            verified = verify_authentication_response(
                credential=parsed,
                expected_challenge=bytes(row.challenge or b""),
                expected_rp_id=self.rp_id,
                expected_origin=self.origin,
                credential_public_key=bytes(passkey.public_key),
                credential_current_sign_count=passkey.sign_count,
                require_user_verification=account_id is None,
            )
        except (WebAuthnException, ValueError, KeyError, TypeError) as exc:
            raise PasskeyRefused() from exc
        # The counter only moves forward: a replayed or cloned answer loses the race here.
        # (Authenticators that keep no counter always answer 0.)
        counter_moves = (
            [Passkey.sign_count < verified.new_sign_count] if verified.new_sign_count else []
        )
        moved = self.db.execute(
            update(Passkey)
            .where(Passkey.id == passkey.id, *counter_moves)
            .values(sign_count=verified.new_sign_count, last_used_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        if moved.rowcount != 1:  # type: ignore[attr-defined]
            raise PasskeyRefused()
        account = self.db.get(Account, passkey.account_id)
        if account is None or account.status != AccountStatus.ACTIVE:
            raise PasskeyRefused()
        return account

    # -- the half-finished sign-in --------------------------------------------------------
    def start_signin_step(self, account: Account) -> str:
        """The password was right and a factor is on: a token for the browser that names
        this half-finished sign-in (it grants nothing until a factor is proved)."""
        token = new_token()
        now = utcnow()
        self.db.add(
            FactorChallenge(
                token_hash=hash_token(self.rt.secrets.token_hash_key, token),
                purpose=SIGNIN,
                account_id=account.id,
                created_at=now,
                expires_at=now + SIGNIN_STEP_TTL,
            )
        )
        self.db.flush()
        return token

    def signin_step(self, token: str) -> FactorChallenge:
        """The live half-finished sign-in a token names, or SignInStepExpired."""
        if not token or len(token) > 128:
            raise SignInStepExpired()
        row = self.db.scalars(
            select(FactorChallenge).where(
                FactorChallenge.token_hash == hash_token(self.rt.secrets.token_hash_key, token),
                FactorChallenge.purpose == SIGNIN,
            )
        ).first()
        if (
            row is None
            or row.used_at is not None
            or row.expires_at <= utcnow()
            or row.failures >= MAX_CODE_TRIES
            or row.account_id is None
        ):
            raise SignInStepExpired()
        return row

    def count_wrong_code(self, step: FactorChallenge) -> bool:
        """One more wrong code for this sign-in; False when it has now ended."""
        self.db.execute(
            update(FactorChallenge)
            .where(FactorChallenge.id == step.id)
            .values(failures=FactorChallenge.failures + 1)
            .execution_options(synchronize_session=False)
        )
        self.db.refresh(step)
        return step.failures < MAX_CODE_TRIES

    def finish_signin_step(self, step: FactorChallenge) -> None:
        """Claim the half-finished sign-in once (a second tab with the same token loses)."""
        done = self.db.execute(
            update(FactorChallenge)
            .where(FactorChallenge.id == step.id, FactorChallenge.used_at.is_(None))
            .values(used_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        if done.rowcount != 1:  # type: ignore[attr-defined]
            raise SignInStepExpired()

    def purge_challenges(self) -> int:
        result = self.db.execute(
            delete(FactorChallenge)
            .where(FactorChallenge.expires_at < utcnow())
            .execution_options(synchronize_session=False)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    # -- step-up --------------------------------------------------------------------------
    def mark_checked(self, session_id: uuid.UUID) -> None:
        row = self.db.get(SessionFactorCheck, session_id)
        if row is None:
            self.db.add(SessionFactorCheck(session_id=session_id, checked_at=utcnow()))
        else:
            row.checked_at = utcnow()
        self.db.flush()

    def checked_recently(self, session_id: uuid.UUID) -> bool:
        row = self.db.get(SessionFactorCheck, session_id)
        return row is not None and row.checked_at > utcnow() - STEP_UP_WINDOW


def _credential(raw: str) -> dict[str, Any]:
    if not raw or len(raw) > MAX_CREDENTIAL_JSON:
        raise PasskeyRefused("The passkey's answer is missing or too long.")
    try:
        parsed = json.loads(raw)
    except ValueError as exc:
        raise PasskeyRefused("The passkey's answer is not valid.") from exc
    if not isinstance(parsed, dict):
        raise PasskeyRefused("The passkey's answer is not valid.")
    return parsed


def _b64url(value: str) -> bytes:
    if len(value) > 2048:
        raise ValueError("too long")
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
