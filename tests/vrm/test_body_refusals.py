"""Every operation that takes a body, in both OpenAPI documents, documents 413 and 415 with the
service's error body, and answers them: an oversize body and a body of the wrong type are sent
to each operation and the answers are compared with its document."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from vault.routing import body_media_types
from vendor_api.docs import schema_routes

DOCUMENTS = ("/api/openapi.json", "/vendor/openapi.json")
REFUSALS = {413: "payload_too_large", 415: "unsupported_media_type"}


def operations_with_a_body(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if "requestBody" in operation:
                yield path, method.upper(), operation


def concrete(path: str, operation: dict[str, Any]) -> str:
    """The path with its parameters filled in (ids that exist nowhere: the refusals come
    before anything is looked up)."""
    for parameter in operation.get("parameters", []):
        if parameter["in"] != "path":
            continue
        schema = parameter.get("schema", {})
        value = str(uuid.uuid4()) if schema.get("format") == "uuid" else "given_name"
        path = path.replace("{" + parameter["name"] + "}", value)
    return path


def assert_refused(response: Any, status: int, operation: dict[str, Any], where: str) -> None:
    assert response.status_code == status, f"{where}: {response.status_code} {response.text}"
    assert str(status) in operation["responses"], f"{where}: {status} not documented"
    documented = operation["responses"][str(status)]["content"]["application/json"]["schema"]
    assert documented == {"$ref": "#/components/schemas/ErrorBody"}, where
    body = response.json()
    assert body["error"] == REFUSALS[status], where
    assert body["detail"], where


@pytest.mark.parametrize("document_path", DOCUMENTS)
def test_every_operation_with_a_body_answers_its_documented_413_and_415(
    client: TestClient, rt: Any, document_path: str
) -> None:
    document = client.get(document_path).json()
    operations = list(operations_with_a_body(document))
    assert len(operations) >= 3  # the documents do declare bodies
    limit = rt.settings.max_body_bytes

    for path, method, operation in operations:
        where = f"{document_path} {method} {path}"
        url = concrete(path, operation)
        media = sorted(operation["requestBody"]["content"])[0]

        too_large = client.request(
            method, url, content=b"{" + b" " * limit + b"}", headers={"Content-Type": media}
        )
        assert_refused(too_large, 413, operation, where)

        for wrong in ("text/plain", "application/xml"):
            wrong_type = client.request(
                method, url, content=b"<a>1</a>", headers={"Content-Type": wrong}
            )
            assert_refused(wrong_type, 415, operation, where + " as " + wrong)
        untyped = client.request(method, url, content=b"{}", headers={"Content-Type": ""})
        assert untyped.status_code in (415, 400, 401, 403, 422), where


def test_no_operation_reads_a_body_its_document_does_not_declare(client: TestClient) -> None:
    document = client.get("/api/openapi.json").json()
    declared = {(path, method) for path, method, _ in operations_with_a_body(document)}

    reads = {
        (route.path_format, method)
        for route in schema_routes(client.app)  # type: ignore[arg-type]
        if body_media_types(getattr(route, "original_route", route)) is not None
        for method in route.methods
    }

    assert reads <= declared


def test_a_json_body_of_a_json_subtype_is_read(client: TestClient) -> None:
    """``application/merge-patch+json`` and the like are JSON: not refused as another type."""
    response = client.put(
        "/api/v1/profile/fields/given_name",
        content=b'{"value": "Ada"}',
        headers={"Content-Type": "application/merge-patch+json"},
    )

    assert response.status_code != 415
