"""Settings and start-up: production refuses anything that only suits development."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from tests.vault.conftest import Deployment, make_settings
from vault.keys import KeyDirectory, LocalKeyProvider
from vault.runtime import Runtime
from vault.settings import Settings, SettingsError, get_settings

HTTPS = "https://vault.example.org"
SMTP = "smtps://vault:generated-password@mail.example.org"


def production(tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "environment": "production",
        "base_url": HTTPS,
        "smtp_url": SMTP,
        **overrides,
    }
    url = str(values.pop("database_url", f"sqlite:///{tmp_path}/vrm.db"))
    return make_settings(tmp_path / "keys", url, **values)


def key_files(key_dir: Path) -> list[str]:
    if not key_dir.exists():
        return []
    return sorted(str(p.relative_to(key_dir)) for p in key_dir.rglob("*") if p.is_file())


# -- Reading the environment ------------------------------------------------------------------


def test_settings_come_from_vrm_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VRM_ENVIRONMENT", "production")
    monkeypatch.setenv("VRM_BASE_URL", HTTPS + "/")
    monkeypatch.setenv("VRM_KEY_DIR", str(tmp_path / "k"))
    monkeypatch.setenv("VRM_TRUSTED_PROXIES", '["10.0.0.1"]')
    get_settings.cache_clear()
    try:
        settings = get_settings()
    finally:
        get_settings.cache_clear()
    assert settings.is_production
    assert settings.base_url == HTTPS  # trailing slash dropped
    assert settings.https
    assert settings.key_dir == tmp_path / "k"
    assert settings.trusted_proxies == ["10.0.0.1"]


def test_development_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VRM_ENVIRONMENT", raising=False)
    assert Settings().environment == "development"


@pytest.mark.parametrize(
    "bad",
    [
        {"environment": "staging"},
        {"port": 0},
        {"session_idle_minutes": 1},
        {"max_body_bytes": 10},
        {"argon2_time_cost": 0},
    ],
)
def test_out_of_range_values_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Settings(**bad)  # type: ignore[arg-type]


def test_no_secret_is_a_setting() -> None:
    """Signing keys live in the key directory; a VRM_SECRET_KEY would do nothing."""
    assert not [name for name in Settings.model_fields if "secret" in name]


# -- Production -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "base_url", ["http://vault.example.org", "vault.example.org", "HTTP://vault.example.org"]
)
def test_production_refuses_a_base_url_without_https(tmp_path: Path, base_url: str) -> None:
    KeyDirectory(tmp_path / "keys").initialise(origin="operator")
    with pytest.raises(SettingsError, match="VRM_BASE_URL must be an https:// URL"):
        Runtime.from_settings(production(tmp_path, base_url=base_url))


def test_production_never_creates_keys(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as refused:
        Runtime.from_settings(production(tmp_path))
    assert "vrm keys init" in str(refused.value)
    assert str(tmp_path / "keys") in str(refused.value)
    assert key_files(tmp_path / "keys") == []


def test_production_refuses_a_key_directory_with_a_key_missing(tmp_path: Path) -> None:
    KeyDirectory(tmp_path / "keys").initialise(origin="operator")
    (tmp_path / "keys" / "cookie.json").unlink()
    with pytest.raises(SettingsError, match="vrm keys init"):
        Runtime.from_settings(production(tmp_path))
    assert not (tmp_path / "keys" / "cookie.json").exists()


def test_production_refuses_keys_generated_for_development(tmp_path: Path) -> None:
    Runtime.from_settings(make_settings(tmp_path / "keys", f"sqlite:///{tmp_path}/vrm.db"))
    with pytest.raises(SettingsError, match="development keys") as refused:
        Runtime.from_settings(production(tmp_path))
    for name in ("blind-index", "cookie", "token-hash", "webhook", "local:v1"):
        assert name in str(refused.value)


@pytest.mark.parametrize("dev_file", ["cookie.json", "webhook.json", "kek/v1.json"])
def test_production_refuses_even_one_development_key(tmp_path: Path, dev_file: str) -> None:
    """The cookie-signing key is the secret that once was VRM_SECRET_KEY: a development one
    is a placeholder. So is a development webhook master key (every vendor's signing secret
    derives from it), and a development KEK."""
    key_dir = tmp_path / "keys"
    KeyDirectory(key_dir).initialise(origin="operator")
    payload = json.loads((key_dir / dev_file).read_text())
    (key_dir / dev_file).write_text(json.dumps({**payload, "origin": "development"}))
    expected = "local:v1" if dev_file.startswith("kek/") else dev_file.removesuffix(".json")
    with pytest.raises(SettingsError, match=f"development keys \\({expected}\\)"):
        Runtime.from_settings(production(tmp_path))


def test_a_rotation_run_in_development_mode_on_operator_keys_makes_an_operator_key(
    tmp_path: Path,
) -> None:
    """``vrm keys rotate`` run without VRM_ENVIRONMENT=production against production keys
    must not leave a key that production then refuses."""
    key_dir = tmp_path / "keys"
    KeyDirectory(key_dir).initialise(origin="operator")

    added = LocalKeyProvider(key_dir).add_version(origin="development")

    assert LocalKeyProvider(key_dir).origins()[added] == "operator"
    Runtime.from_settings(production(tmp_path))  # starts


def test_production_starts_with_operator_keys_and_https(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VRM_ENVIRONMENT", "production")
    monkeypatch.setenv("VRM_BASE_URL", HTTPS)
    monkeypatch.setenv("VRM_SMTP_URL", SMTP)
    refused = deployment.cli("keys", "status")
    assert refused.exit_code == 1
    assert "vrm keys init" in refused.output
    assert key_files(deployment.key_dir) == []

    output = deployment.ok("keys", "init")
    assert output.count("(mode 0600)") == 7
    created = key_files(deployment.key_dir)
    deployment.ok("db", "upgrade")
    assert "local:v1 (current): 0 data keys" in deployment.ok("keys", "status")

    rt = deployment.runtime(environment="production", base_url=HTTPS, smtp_url=SMTP)
    assert rt.settings.is_production
    assert rt.keys.current_version() == "local:v1"
    assert json.loads((deployment.key_dir / "cookie.json").read_text())["origin"] == "operator"
    assert key_files(deployment.key_dir) == created  # starting created nothing


def test_production_needs_no_secret_key_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VRM_SECRET_KEY", raising=False)
    KeyDirectory(tmp_path / "keys").initialise(origin="operator")
    rt = Runtime.from_settings(production(tmp_path))
    assert len(rt.secrets.cookie_key) == 32
    rt.engine.dispose()


# -- Development ------------------------------------------------------------------------------


def test_development_creates_keys_on_first_start_and_reuses_them(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "keys", f"sqlite:///{tmp_path}/vrm.db")
    assert key_files(tmp_path / "keys") == []

    first = Runtime.from_settings(settings)

    assert key_files(tmp_path / "keys") == [
        "blind-index.json",
        "cookie.json",
        "kek/v1.json",
        "token-hash.json",
        "webhook.json",
    ]
    assert KeyDirectory(tmp_path / "keys").development_keys()
    second = Runtime.from_settings(settings)
    assert second.secrets.cookie_key == first.secrets.cookie_key
    assert second.secrets.blind_index_key == first.secrets.blind_index_key
    assert key_files(tmp_path / "keys") == [
        "blind-index.json",
        "cookie.json",
        "kek/v1.json",
        "token-hash.json",
        "webhook.json",
    ]
    first.engine.dispose()
    second.engine.dispose()


def test_development_allows_plain_http(tmp_path: Path) -> None:
    rt = Runtime.from_settings(
        make_settings(
            tmp_path / "keys", f"sqlite:///{tmp_path}/vrm.db", base_url="http://127.0.0.1:8000"
        )
    )
    assert not rt.settings.https
    rt.engine.dispose()


@pytest.mark.parametrize("password", ["changeme", "postgres", "Password", "short"])
def test_production_refuses_a_placeholder_database_password(tmp_path: Path, password: str) -> None:
    KeyDirectory(tmp_path / "keys").initialise(origin="operator")
    settings = production(
        tmp_path, database_url=f"postgresql://vrm:{password}@db.internal:5432/vrm"
    )
    with pytest.raises(SettingsError, match="password in VRM_DATABASE_URL"):
        Runtime.from_settings(settings)


def test_production_accepts_a_generated_database_password(tmp_path: Path) -> None:
    settings = production(
        tmp_path, database_url="postgresql://vrm:q8Zr2vLx9TcW4nPe@db.internal:5432/vrm"
    )
    settings.check_production()


def test_production_app_refuses_missing_signing_keys(tmp_path: Path) -> None:
    from vrm.app import create_app

    KeyDirectory(tmp_path / "keys").initialise(origin="operator")
    rt = Runtime.from_settings(production(tmp_path))
    with pytest.raises(SettingsError, match="vrm keys init"):
        create_app(runtime=rt)
    rt.engine.dispose()


def test_production_app_refuses_signing_keys_made_for_development(tmp_path: Path) -> None:
    from consent.ledger.service import KEY as LEDGER_KEY
    from consent.oauth.oidc import KEY as OIDC_KEY
    from vrm.app import create_app

    key_dir = tmp_path / "keys"
    KeyDirectory(key_dir).initialise(origin="operator")
    OIDC_KEY.ensure(key_dir, "operator")
    LEDGER_KEY.ensure(key_dir, "development")
    rt = Runtime.from_settings(production(tmp_path))
    with pytest.raises(SettingsError, match=r"ledger-signing\.json was generated for development"):
        create_app(runtime=rt)
    LEDGER_KEY.ensure(key_dir, "operator")  # never overwrites an existing key
    with pytest.raises(SettingsError, match="generated for development"):
        create_app(runtime=rt)
    rt.engine.dispose()


def test_production_refuses_to_start_without_smtp(tmp_path: Path) -> None:
    KeyDirectory(tmp_path / "keys").initialise(origin="operator")
    with pytest.raises(SettingsError, match="VRM_SMTP_URL is required in production"):
        Runtime.from_settings(production(tmp_path, smtp_url=None))
    with pytest.raises(SettingsError, match="must not turn TLS off"):
        Runtime.from_settings(production(tmp_path, smtp_url="smtp://mail.example.org?tls=none"))


@pytest.mark.parametrize("url", ["http://mail.example.org", "mail.example.org:587"])
def test_an_smtp_url_must_say_smtp_or_smtps(tmp_path: Path, url: str) -> None:
    with pytest.raises(ValueError, match="must start with smtp:// or smtps://"):
        make_settings(tmp_path / "keys", f"sqlite:///{tmp_path}/vrm.db", smtp_url=url)
