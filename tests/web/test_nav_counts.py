"""The navigation of every signed-in page shows the unread notices and the offers waiting for an
answer (counted in one query per page)."""

from __future__ import annotations

import re
import uuid

from fastapi.testclient import TestClient
from sqlalchemy import event
from sqlalchemy.orm import Session

from intents.market import Market, Seller
from tests.consent.factories import individual
from tests.helpers import post_form, sign_up
from tests.intents.factories import make_intent, market_vendor, offer_body
from vault.runtime import Runtime

PAGES = ("/profile", "/connections", "/intents", "/notices", "/account", "/account/security")


def badge(html: str, name: str) -> int | None:
    """The count the navigation shows (None: no badge, or a hidden one)."""
    found = re.search(rf'id="nav-{name}-count"([^>]*)>(\d+)<', html)
    return int(found.group(2)) if found and " hidden" not in found.group(1) else None


def test_every_signed_in_page_shows_unread_notices_and_waiting_offers(
    client: TestClient, rt: Runtime, db: Session
) -> None:
    account = individual(client, db, rt)  # its first sign-in: one new-device notice
    for page in PAGES:
        html = client.get(page).text
        assert badge(html, "notice") == 1, page
        assert badge(html, "offer") is None, page  # none waiting: no badge
    intent = make_intent(db, rt, account)
    for n in range(2):
        seller = Seller.of(db, market_vendor(db, rt, name=f"Shop {n}").app)
        Market(db, rt, seller).make_offer(intent.id, offer_body())
    missing = f"/intents/{uuid.uuid4()}"  # an error page, rendered after the request's session
    for page in (*PAGES, f"/intents/{intent.id}", missing):
        html = client.get(page).text
        assert badge(html, "offer") == 2, page
        assert badge(html, "notice") == 2, page  # the new-device notice, the offers' one
    assert post_form(client, "/notices/read", {}, form_page="/notices").status_code == 303
    html = client.get("/profile").text
    assert (badge(html, "notice"), badge(html, "offer")) == (None, 2)


def test_the_counts_cost_one_query(client: TestClient, rt: Runtime, db: Session) -> None:
    individual(client, db, rt)
    seen: list[str] = []

    def count(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        seen.append(statement)

    event.listen(rt.engine, "before_cursor_execute", count)
    try:
        assert badge(client.get("/account").text, "notice") == 1
    finally:
        event.remove(rt.engine, "before_cursor_execute", count)
    counting = [s for s in seen if "notices" in s and "count(" in s.lower()]
    assert len(counting) == 1 and "offers" in counting[0]


def test_signed_out_pages_have_no_counts_and_other_pages_have_them(client: TestClient) -> None:
    assert "nav-notice-count" not in client.get("/signin").text
    sign_up(client, home="/profile")
    assert badge(client.get("/terms").text, "notice") == 1
