"""``VRM_LOG_FORMAT=json``: the service's log lines are JSON objects (time, level, logger,
message, and the request id of a failed request), and carry no personal data."""

from __future__ import annotations

import io
import json
import logging
import shutil
from pathlib import Path

import httpx
from fastapi.testclient import TestClient

from tests.conftest import test_settings as make_settings
from tests.served import served, vault
from vault.accounts.dependencies import SESSION_COOKIE
from vrm.app import create_app
from vrm.logs import JsonFormatter


def test_a_failed_request_is_logged_as_json_with_its_request_id(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path / "keys", f"sqlite:///{tmp_path / 'db' / 'v.db'}"))
    shutil.rmtree(tmp_path / "db")  # the database is away: every request is a 503
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logging.getLogger("vrm").addHandler(handler)
    try:
        with TestClient(app, raise_server_exceptions=False, follow_redirects=False) as client:
            client.cookies.set(SESSION_COOKIE, "a-session-from-before-the-outage")
            response = client.get("/connections", headers={"X-Request-ID": "edge-4711"})
    finally:
        logging.getLogger("vrm").removeHandler(handler)
    assert response.status_code == 503
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    [line] = [entry for entry in lines if entry.get("request_id") == "edge-4711"]
    assert line["level"] == "WARNING"
    assert line["logger"] == "vrm"
    assert "database unavailable" in line["message"]
    assert line["time"].endswith("+00:00")


def test_vrm_serve_with_json_log_format_writes_json_lines(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'vrm.db'}"
    with vault(url, tmp_path / "keys"), served(url, tmp_path / "keys", log_format="json") as s:
        assert httpx.get(s.url + "/healthz").status_code == 200
        output = s.stop()
    entries = [json.loads(line) for line in output.splitlines() if line.strip()]
    assert entries
    for entry in entries:
        assert {"time", "level", "logger", "message"} <= entry.keys()
    assert any(e["logger"] == "uvicorn.access" and "/healthz" in e["message"] for e in entries)
    assert any(e["logger"] == "uvicorn.error" for e in entries)
