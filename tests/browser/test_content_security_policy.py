"""The portal works under its strict Content-Security-Policy: styled, with nothing blocked.

The ``page`` fixture fails any test whose pages log a CSP violation or a failed subresource;
this test checks that the policy really is the strict one while a person uses the portal.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, Response, expect

from tests.browser.journeys import edit, sign_up

pytestmark = pytest.mark.browser

ACCENT = "rgb(31, 95, 191)"


def test_pages_are_styled_under_a_csp_without_inline_script_or_style(page: Page) -> None:
    policies: dict[str, str] = {}

    def record(response: Response) -> None:
        if response.request.resource_type == "document":
            policies[response.url] = response.headers.get("content-security-policy", "")

    page.on("response", record)
    page.goto("/")
    expect(page.get_by_role("link", name="Create your vault")).to_have_css(
        "background-color", ACCENT
    )
    sign_up(page)
    edit(page, "Postal address")
    expect(page.get_by_role("button", name="Save")).to_have_css("background-color", ACCENT)

    assert len(policies) >= 4, policies
    for url, policy in policies.items():
        assert re.search(r"(^|; )script-src 'self'(;|$)", policy), (url, policy)
        assert re.search(r"(^|; )style-src 'self'(;|$)", policy), (url, policy)
        assert "unsafe-inline" not in policy, (url, policy)
