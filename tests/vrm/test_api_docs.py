"""The whole API's OpenAPI document (``/api/openapi.json``) tells the truth, ``405`` answers say
which methods a path takes, and its reference page (``/api/docs``) is served by the service."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from vendor_api.token_docs import APP_SCHEME

HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
ERROR_BODY = {"$ref": "#/components/schemas/ErrorBody"}


@pytest.fixture
def document(client: TestClient) -> dict[str, Any]:
    response = client.get("/api/openapi.json")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield path, method, operation


def body_schema(response: dict[str, Any]) -> Any:
    return response["content"]["application/json"]["schema"]


def test_every_422_is_the_services_error_body(document: dict[str, Any]) -> None:
    found = 0
    for path, _method, operation in operations(document):
        for status in ("400", "422"):
            response = operation["responses"].get(status)
            if response and path not in ("/oauth/token", "/oauth/revoke", "/oauth/introspect"):
                schema = body_schema(response)
                assert schema in (ERROR_BODY, {"$ref": "#/components/schemas/RegistrationError"})
                found += status == "422"
    assert found > 5
    assert "HTTPValidationError" not in document["components"]["schemas"]
    assert set(document["components"]["schemas"]["ErrorBody"]["required"]) >= {"error", "detail"}


@pytest.mark.parametrize("path", ["/oauth/token", "/oauth/revoke", "/oauth/introspect"])
def test_oauth_endpoints_document_rfc_6749_errors(document: dict[str, Any], path: str) -> None:
    responses = document["paths"][path]["post"]["responses"]
    assert "422" not in responses
    schemas = document["components"]["schemas"]
    codes = set()
    for status in ("400", "401"):
        schema = body_schema(responses[status])
        schema = schemas[schema["$ref"].rpartition("/")[2]] if "$ref" in schema else schema
        assert set(schema["properties"]) == {"error", "error_description"}
        codes |= set(schema["properties"]["error"]["enum"])
    assert {"invalid_request", "invalid_client"} <= codes


def test_offer_price_must_be_above_zero(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    for name in ("OfferCreate", "OfferUpdate"):
        assert schemas[name]["properties"]["price"]["exclusiveMinimum"] == 0


def test_offer_status_lists_its_values(document: dict[str, Any]) -> None:
    status = document["components"]["schemas"]["OfferOut"]["properties"]["status"]
    assert set(status["enum"]) == {"live", "expired", "withdrawn", "accepted", "declined", "lapsed"}


def test_vendor_operations_keep_their_scopes(document: dict[str, Any]) -> None:
    offers = document["paths"]["/vendor/v1/intents/{intent_id}/offers"]["post"]
    assert offers["security"] == [{APP_SCHEME: ["offers:write"]}]
    assert "429" in offers["responses"]


def test_405_lists_the_methods_the_path_takes(client: TestClient) -> None:
    response = client.delete("/oauth/token")
    assert response.status_code == 405
    assert {m.strip() for m in response.headers["allow"].split(",")} == {"POST"}
    assert response.json()["error"] == "method_not_allowed"

    # A path with a route per method: every one of them, not the first route's.
    response = client.patch("/oauth/userinfo")
    assert response.status_code == 405
    assert {m.strip() for m in response.headers["allow"].split(",")} == {"GET", "POST"}

    response = client.delete("/api/v1/profile/fields/given_name")
    assert response.status_code != 405
    response = client.post("/api/v1/profile/fields/given_name")
    assert response.status_code == 405
    assert {m.strip() for m in response.headers["allow"].split(",")} == {"DELETE", "PUT"}


def test_api_docs_page_lists_operations_from_this_origin_only(
    client: TestClient, document: dict[str, Any]
) -> None:
    response = client.get("/api/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    for path, method, _ in operations(document):
        assert f"{method.upper()}</span>" in page
        assert f">{path}</code>" in page.replace("&#34;", '"')
    assert "swagger" not in page.lower()
    assert "More than 0." in page  # an offer's price
    assert "<code>withdrawn</code>" in page  # an offer's status
    for url in re.findall(r'(?:src|href)="([^"]*)"', page):
        assert not re.match(r"(?i)(https?:)?//", url), url
    csp = response.headers["content-security-policy"]
    assert "script-src" in csp or "default-src 'self'" in csp
    assert "cdn" not in csp
