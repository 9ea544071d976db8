"""Service settings: one pydantic-settings class, every variable prefixed ``VRM_``."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

from vault.errors import ServiceFault

PLACEHOLDER_PASSWORDS = frozenset(
    {
        "changeme",
        "change-me",
        "change_me",
        "password",
        "secret",
        "postgres",
        "vrm",
        "admin",
        "root",
        "test",
        "example",
        "placeholder",
        "dev",
        "development",
        "123456",
        "xxx",
    }
)


class SettingsError(ServiceFault, RuntimeError):
    """The configuration is unusable; the message says which setting to fix."""


class WitnessSetting(BaseModel):
    """One witness of the consent ledger: a label, where it listens (its submission prefix:
    ``<url>/add-checkpoint``) and its verifier key (``name+keyid+base64``, type 0x04)."""

    name: str = Field(min_length=1, max_length=100)
    url: str = Field(min_length=1, max_length=2000, pattern=r"^https?://")
    vkey: str = Field(min_length=1, max_length=500)


class Settings(BaseSettings):
    """No secret is a setting: the KEKs and the blind-index, token-hash and cookie-signing keys
    are files in ``key_dir``, and production refuses keys that were generated for development.
    """

    model_config = SettingsConfigDict(env_prefix="VRM_", env_file=None, extra="ignore")

    environment: Literal["development", "production"] = Field(
        default="development",
        description="`production` refuses development keys and plain-HTTP base URLs, and "
        "never creates keys on start.",
    )
    database_url: str = Field(
        default="sqlite:///./var/vrm.db",
        description="SQLAlchemy URL. `postgresql://...` uses psycopg 3.",
    )
    key_dir: Path = Field(
        default=Path("./var/keys"),
        description="Directory holding the key-encryption keys and the service's secrets.",
    )
    base_url: str = Field(
        default="http://127.0.0.1:8000", description="Public URL of the service (no slash)."
    )
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="`json`: `vrm serve` and `vrm worker` write each log line as a JSON object "
        "(time, level, logger, message, and request_id for a failed request).",
    )
    metrics_token: SecretStr | None = Field(
        default=None,
        min_length=32,
        max_length=256,
        description="Bearer token an operator's Prometheus sends to scrape `/metrics` "
        "(`Authorization: Bearer ...`); without it set, `/metrics` answers 404. At least 32 "
        "characters, e.g. `openssl rand -hex 32`.",
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    session_idle_minutes: int = Field(default=60 * 12, ge=5, le=60 * 24 * 30)
    session_max_days: int = Field(default=14, ge=1, le=90)
    max_body_bytes: int = Field(
        default=64 * 1024,
        ge=1024,
        le=10 * 1024 * 1024,
        description="Requests with a larger body are refused with 413.",
    )
    max_import_bytes: int = Field(
        default=50 * 1024 * 1024,
        ge=1024 * 1024,
        le=1024 * 1024 * 1024,
        description="Largest export archive the import page accepts (its own body limit).",
    )
    import_trusted_keys: list[str] = Field(
        default_factory=list,
        description="JSON list of vault verifier keys whose exports may be imported; empty: "
        "any vault's, checked against the key its own manifest names.",
    )
    signin_max_failures_per_account: int = Field(default=5, ge=1)
    signin_max_failures_per_address: int = Field(default=20, ge=1)
    signin_window_minutes: int = Field(default=15, ge=1)
    argon2_time_cost: int = Field(default=3, ge=1)
    argon2_memory_kib: int = Field(default=64 * 1024, ge=8)
    argon2_parallelism: int = Field(default=4, ge=1)
    vendor_reads_per_minute: int = Field(
        default=600,
        ge=1,
        le=1_000_000,
        description="Vendor API GET requests one app may make per minute before 429.",
    )
    vendor_writes_per_minute: int = Field(
        default=120,
        ge=1,
        le=1_000_000,
        description="Vendor API POST, PATCH and DELETE requests one app may make per minute.",
    )
    token_requests_per_minute: int = Field(
        default=300,
        ge=1,
        le=1_000_000,
        description="Requests one app may make to POST /oauth/token per minute (counted once "
        "the client has authenticated) before 429 slow_down.",
    )
    webhook_deadline_seconds: float = Field(
        default=10.0,
        ge=0.5,
        le=60,
        description="How long one webhook attempt may take in all (connect, send, answer).",
    )
    access_log_batch_ms: int = Field(
        default=0,
        ge=0,
        le=10_000,
        description="0 (the default): every profile read is written to the access log in the "
        "transaction that reads it, so no read goes unlogged. Above 0: reads are queued and "
        "written together this often, which saves about a millisecond per read at low load; "
        "a clean stop (SIGTERM) still writes every queued read, but a crash of the process "
        "loses the reads of its last interval.",
    )
    key_cache_sweep_seconds: float = Field(
        default=5.0,
        ge=0,
        le=300,
        description="How often each process drops from its cache of unwrapped data keys those "
        "erased or rewrapped through another process (0: only when they expire, after 5 "
        "minutes).",
    )
    redis_url: str | None = Field(
        default=None,
        description="Redis for what every process must share quickly (the vendor API's rate "
        "limits); without it they are counted in the database.",
    )
    ledger_public: bool = Field(
        default=False,
        description="`true`: the consent ledger's tiles and checkpoint (C2SP tlog-tiles, "
        "under /api/audit/v1/log/) are open to anyone; `false` (the default): to auditors "
        "only (a portal session or an auditor API token). Entries carry pseudonyms only, but "
        "the tiles show how many grants each vendor gets.",
    )
    smtp_url: str | None = Field(
        default=None,
        description="Where mail goes: `smtp://user:pass@host:587` (STARTTLS, required) or "
        "`smtps://user:pass@host:465` (TLS from the start). `smtp://host:port?tls=none` (no "
        "encryption) only in development, for a local catcher. Unset (development only): each "
        "message is written as an `.eml` file under `mail_dir`, listed at /dev/mail.",
    )
    mail_from: str = Field(
        default="VRM Vault <vault@localhost>",
        max_length=254,
        description="The From address of every message the vault sends.",
    )
    mail_dir: Path = Field(
        default=Path("./var/mail"),
        description="Without `smtp_url` (development): where messages are written as .eml files.",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Addresses of reverse proxies whose X-Forwarded-For is believed.",
    )

    ledger_witnesses: list[WitnessSetting] = Field(
        default_factory=list,
        max_length=50,
        description="JSON list of the witnesses that cosign the consent ledger's checkpoints, "
        'each `{"name": ..., "url": ..., "vkey": ...}` (what `vrm witness key` prints).',
    )
    ledger_witness_quorum: int = Field(
        default=0,
        ge=0,
        le=50,
        description="How many of the witnesses must have cosigned a checkpoint before the audit "
        "API publishes it (0: the latest checkpoint, with whatever cosignatures it has).",
    )
    ledger_witness_timeout_seconds: float = Field(
        default=5.0,
        ge=0.2,
        le=60,
        description="How long one call to a witness may take in all; a witness that does not "
        "answer is tried again later, and never holds up the ledger.",
    )

    @model_validator(mode="after")
    def _normalise(self) -> Settings:
        self.base_url = self.base_url.rstrip("/")
        if self.smtp_url is not None:
            scheme = self.smtp_url.split("://", 1)[0].lower() if "://" in self.smtp_url else ""
            if scheme not in ("smtp", "smtps"):
                raise ValueError("VRM_SMTP_URL must start with smtp:// or smtps://")
        if self.ledger_witness_quorum > len(self.ledger_witnesses):
            raise ValueError(
                f"VRM_LEDGER_WITNESS_QUORUM is {self.ledger_witness_quorum} but only "
                f"{len(self.ledger_witnesses)} witnesses are configured in VRM_LEDGER_WITNESSES"
            )
        vkeys = [w.vkey for w in self.ledger_witnesses]
        if len(set(vkeys)) != len(vkeys):
            raise ValueError("VRM_LEDGER_WITNESSES names the same witness key twice")
        return self

    @property
    def is_production(self) -> bool:
        return self.environment == "production"

    @property
    def https(self) -> bool:
        return self.base_url.lower().startswith("https://")

    def cookie_name(self, name: str) -> str:
        """``__Host-`` and the name over HTTPS: browsers then take the cookie only when it is
        Secure, for Path=/ and with no Domain, from this very host, so a sibling subdomain or a
        plain-HTTP page cannot plant or overwrite it."""
        return f"__Host-{name}" if self.https else name

    def check_production(self) -> None:
        """Refuse plain-HTTP cookies and placeholder database passwords in production.

        Keys are checked by the runtime: production refuses development-generated keys.
        """
        if not self.is_production:
            return
        if not self.https:
            raise SettingsError("VRM_BASE_URL must be an https:// URL in production.")
        password = make_url(self.database_url).password
        if password is not None and (
            str(password).lower() in PLACEHOLDER_PASSWORDS or len(str(password)) < 12
        ):
            raise SettingsError(
                "The password in VRM_DATABASE_URL is a placeholder or shorter than 12 "
                "characters; use a generated one in production."
            )
        if not self.smtp_url:
            raise SettingsError(
                "VRM_SMTP_URL is required in production: the vault mails confirmations, "
                "password resets and notices (smtp://user:pass@host:587 or smtps://...)."
            )
        if "tls=none" in self.smtp_url.lower():
            raise SettingsError("VRM_SMTP_URL must not turn TLS off (tls=none) in production.")


@lru_cache
def get_settings() -> Settings:
    return Settings()
