"""Walk issue 15's loop against a running `make run`, as a newcomer would, and time it.

A person signs up (confirming from ./var/mail), publishes "lunch for two near the station,
closes in 2 hours" through the portal; a vendor signs up, registers an app in the developer
console with a webhook URL pointing at a local receiver, gets a client-credentials token and
saves a subscription through /vendor/v1/subscriptions. It measures publish -> `intent.published`
at the receiver, then offers through the API while the person's page is open in Chromium, checks
the offer appears without a reload within 2 s, and accepts it in the page.

    make run PORT=8415 &            # in another terminal: a fresh ./var is fine
    .venv/bin/python bench/intent_loop_walk.py --base http://127.0.0.1:8415 --mail-dir var/mail

Needs the test extras (httpx, playwright) and Chromium (`make test` installs Debian's). Not part
of the suite: it drives a server you started, and it creates accounts in its database.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's own directory comes first on sys.path, and bench/http.py would
# hide the standard library's http (which http.server and httpx import).
ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

# The imports must follow the sys.path fix above.
# ruff: noqa: E402
import argparse
import base64
import email
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from playwright.sync_api import Page, expect, sync_playwright

PASSWORD = secrets.token_urlsafe(18)
"""A fresh password each run, for both accounts the walk creates."""
ARRIVES_MS = 2_000


@dataclass
class Hooks:
    url: str = ""
    secret: str = ""
    """The app's signing secret (whsec_...), from the console; every event is checked with it."""
    received: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    def wait_for(self, event: str, timeout: float) -> tuple[float, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        with self.arrived:
            while True:
                for at, body in self.received:
                    if body.get("type") == event:
                        return at, body
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [b.get("type") for _, b in self.received]
                    raise SystemExit(f"no {event} within {timeout} s (received: {seen})")
                self.arrived.wait(left)


def receiver() -> Hooks:
    hooks = Hooks()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            at = time.monotonic()
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            if not verified(hooks.secret, self.headers, body):
                print("a webhook with a bad signature:", body[:200], flush=True)
                self.send_response(400)
                self.send_header("content-length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()
            with hooks.arrived:
                hooks.received.append((at, json.loads(body)))
                hooks.arrived.notify_all()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    hooks.url = f"http://127.0.0.1:{server.server_port}/hooks"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return hooks


def verified(secret: str, headers: Any, body: bytes) -> bool:
    """Standard Webhooks: v1 is base64 HMAC-SHA256 of "id.timestamp.body" under the secret."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    given = [s.split(",", 1)[1] for s in headers["webhook-signature"].split() if "," in s]
    return any(hmac.compare_digest(expected, g) for g in given)


def mailed_link(mail_dir: Path, to: str, path: str, timeout: float = 10) -> str:
    """The ``path`` link in the newest message to ``to`` under ./var/mail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for eml in sorted(mail_dir.glob("*.eml"), key=lambda p: p.stat().st_mtime, reverse=True):
            message = email.message_from_bytes(eml.read_bytes(), policy=policy.default)
            if message["To"] != to:
                continue
            body = message.get_body(preferencelist=("plain",))
            text = body.get_content() if body else ""
            found = re.search(rf"https?://\S+?{re.escape(path)}\S*", text)
            if found:
                return found.group(0)
        time.sleep(0.2)
    raise SystemExit(f"no mail to {to} with a {path} link in {mail_dir}")


def sign_up(page: Page, base: str, mail_dir: Path, *, vendor: bool) -> str:
    address = f"walk-{'vendor' if vendor else 'person'}-{uuid.uuid4().hex[:8]}@example.org"
    page.goto(f"{base}/signup/vendor" if vendor else f"{base}/")
    if not vendor:
        page.get_by_role("link", name="Create your vault").first.click()
    page.get_by_label("Email address").fill(address)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Repeat the password").fill(PASSWORD)
    page.get_by_role("button", name=re.compile("Create")).click()
    expect(page.get_by_role("heading", name="Check your email to finish")).to_be_visible()
    page.goto(mailed_link(mail_dir, address, "/signup/confirm"))
    page.get_by_role("button", name="Confirm my address").click()
    expect(page.get_by_role("status")).to_contain_text("Your address is confirmed")
    page.get_by_label("Email address").fill(address)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    return address


def register_app(page: Page, webhook_url: str) -> tuple[str, str]:
    page.get_by_role("link", name="Register an app").click()
    page.get_by_label("App name").fill("Station Bistro")
    page.get_by_label("Homepage").fill("https://bistro.example")
    page.get_by_label("Privacy policy URL").fill("https://bistro.example/privacy")
    page.get_by_label("Redirect URIs").fill("http://127.0.0.1:9999/callback")
    page.get_by_label("Purpose").fill("Offer you a table when you are hungry.")
    page.get_by_label("Webhook URL (optional)").fill(webhook_url)
    page.locator("#agreement-intent-sharing").check()
    page.locator("#scope-intents-read").check()
    page.locator("#scope-offers-write").check()
    page.get_by_role("button", name="Register app").click()
    page.get_by_role("button", name="Create client secret").click()
    secret = page.get_by_role("textbox", name="Client secret").input_value()
    client_id = page.locator("#client-id").inner_text()
    page.get_by_text("Show the signing secret").click()
    return client_id, secret


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--base", default="http://127.0.0.1:8000")
    parser.add_argument("--mail-dir", type=Path, default=Path("var/mail"))
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--headed", action="store_true")
    args = parser.parse_args()
    base = args.base.rstrip("/")
    hooks = receiver()
    steps: list[str] = []

    def step(text: str) -> None:
        steps.append(text)
        print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=args.chromium, headless=not args.headed, args=["--no-sandbox"]
        )
        # The vendor's developer console, in its own browser context.
        console = browser.new_context().new_page()
        sign_up(console, base, args.mail_dir, vendor=True)
        expect(console.get_by_role("heading", name="Developer console")).to_be_visible()
        client_id, secret = register_app(console, hooks.url)
        hooks.secret = console.locator("#webhook-signing-secret").inner_text()
        step(f"vendor app registered, webhook {hooks.url}")

        api = httpx.Client(base_url=base, timeout=10)
        token = api.post(
            "/oauth/token",
            auth=(client_id, secret),
            data={"grant_type": "client_credentials", "scope": "intents:read offers:write"},
        )
        token.raise_for_status()
        api.headers["authorization"] = f"Bearer {token.json()['access_token']}"
        sub = api.post(
            "/vendor/v1/subscriptions",
            json={"category": "food", "country": "NL", "currency": "EUR", "budget_max": "100"},
        )
        assert sub.status_code == 201, sub.text
        assert sub.json()["webhook_url"] == hooks.url, sub.json()
        step(f"subscription saved: {sub.json()['id']}")

        # The person, in another context.
        page = browser.new_context().new_page()
        sign_up(page, base, args.mail_dir, vendor=False)
        expect(page.get_by_role("heading", name="Your profile")).to_be_visible()
        page.get_by_role("navigation", name="Main").get_by_role("link", name="Intents").click()
        page.get_by_role("link", name="New intent").click()
        page.get_by_label("Category").select_option(label="Food and drink > Restaurants")
        page.get_by_label("What do you want?").fill("Lunch for two near the station")
        page.get_by_label("Quantity").fill("2")
        page.get_by_label("Amount").fill("60")
        page.get_by_label("Currency").select_option("EUR")
        page.get_by_label("Country (optional if online is fine)").select_option(label="Netherlands")
        page.get_by_label("City (optional)").fill("Utrecht")
        page.get_by_label("In 2 hours").check()
        published_at = time.monotonic()
        page.get_by_role("button", name="Publish").click()
        expect(page.get_by_role("status")).to_contain_text("Your intent is published")
        intent_id = page.url.rstrip("/").rsplit("/", 1)[-1]
        step(f"intent published: {intent_id}")

        arrived, body = hooks.wait_for("intent.published", timeout=30)
        told = body["data"]["intent"]
        assert told["id"] == intent_id, told
        closes = datetime.fromisoformat(told["expires_at"].replace("Z", "+00:00"))
        assert abs(closes - datetime.now(UTC) - timedelta(hours=2)) < timedelta(minutes=2), told
        step(
            f"intent.published at the receiver {1000 * (arrived - published_at):.0f} ms after "
            f"the Publish click (closes {told['expires_at']})"
        )

        loaded = page.evaluate("performance.timeOrigin")
        valid_until = (datetime.now(UTC) + timedelta(days=1)).isoformat().replace("+00:00", "Z")
        offered_at = time.monotonic()
        made = api.post(
            f"/vendor/v1/intents/{intent_id}/offers",
            json={
                "price": "48.00",
                "currency": "EUR",
                "message": "Table for two at 12:30, five minutes from the station.",
                "valid_until": valid_until,
            },
        )
        assert made.status_code == 201, made.text
        step(f"offer made, valid until {made.json()['valid_until']} (shortened to the close)")
        card = page.get_by_role("article").filter(has_text="Station Bistro")
        expect(card).to_be_visible(timeout=ARRIVES_MS)
        shown = time.monotonic()
        assert page.evaluate("performance.timeOrigin") == loaded, "the page reloaded"
        step(f"offer shown on the open page {1000 * (shown - offered_at):.0f} ms after the POST")

        page.get_by_role("link", name="Accept the offer from Station Bistro").click()
        page.get_by_role("button", name="Accept this offer").click()
        expect(page.get_by_role("status")).to_contain_text("You accepted Station Bistro's offer")
        hooks.wait_for("offer.accepted", timeout=30)
        hooks.wait_for("intent.closed", timeout=30)
        step("accepted; the vendor got offer.accepted and intent.closed (signatures checked)")
        # So that a later run's intents are not queued for this run's receiver, gone by then.
        assert api.delete(f"/vendor/v1/subscriptions/{sub.json()['id']}").status_code == 204
        browser.close()
    print("events received:", [b["type"] for _, b in hooks.received])


if __name__ == "__main__":
    main()
