from fastapi.testclient import TestClient

from tests.helpers import api_headers, post_form, sign_up


def test_sign_up_then_fill_a_field_shows_it_on_the_profile(client: TestClient) -> None:
    sign_up(client)
    response = post_form(
        client,
        "/profile/fields/given_name",
        {"value": "Ada"},
        form_page="/profile/fields/given_name",
    )
    assert response.status_code == 303
    page = client.get("/profile")
    assert "Ada" in page.text


def test_profile_api_reads_back_what_was_written(client: TestClient) -> None:
    email = sign_up(client)
    headers = api_headers(client)
    put = client.put(
        "/api/v1/profile/fields/phone", json={"value": "+31 20 123 4567"}, headers=headers
    )
    assert put.status_code == 200, put.text
    body = client.get("/api/v1/profile").json()
    assert body["fields"] == {"email": email, "phone": "+31201234567"}


def test_the_landing_page_leads_vendors_to_their_sign_up_and_the_api(client: TestClient) -> None:
    page = client.get("/")

    assert page.status_code == 200
    assert 'href="/signup/vendor"' in page.text and 'href="/vendor/docs"' in page.text
