"""Tests of the CRM sandbox's HubSpot-style contact upsert, rate limit and forms routes."""

import pytest
import requests

from acquisition_assets_tests.sandbox.helpers import (
    REQUEST_TIMEOUT_SECONDS,
    contact_input,
    crm_headers,
    upsert,
)

UPSERT_PATH = "/crm/v3/objects/contacts/batch/upsert"
FORMS_PATH = "/form-integrations/v1/submissions/forms"


def test_upsert_rejects_missing_token(sandbox):
    response = requests.post(
        sandbox.crm_url + UPSERT_PATH,
        json={"inputs": [contact_input("a@example.com")]},
        timeout=REQUEST_TIMEOUT_SECONDS,
    )

    assert response.status_code == 401
    assert response.json()["category"] == "INVALID_AUTHENTICATION"
    assert response.json()["correlationId"]


def test_upsert_creates_contacts(sandbox):
    response = upsert(sandbox, [contact_input("Ann@Example.com", firstname="Ann", score=12)])

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "COMPLETE"
    result = body["results"][0]
    assert result["id"].isdigit()
    assert result["new"] is True
    assert result["archived"] is False
    assert result["properties"]["email"] == "ann@example.com"
    assert result["properties"]["score"] == "12"
    assert result["properties"]["hs_object_id"] == result["id"]
    assert "createdate" in result["properties"]
    assert body["startedAt"] and body["completedAt"]


def test_upsert_merges_existing_contact(sandbox):
    first = upsert(sandbox, [contact_input("ann@example.com", firstname="Ann")]).json()

    second = upsert(sandbox, [contact_input("ANN@example.com", lastname="Lee")]).json()

    assert second["results"][0]["id"] == first["results"][0]["id"]
    assert second["results"][0]["new"] is False
    contacts = sandbox.contacts()
    assert contacts["count"] == 1
    assert contacts["upsert_inputs"] == 2
    stored = contacts["contacts"][0]
    assert stored["upserts"] == 2
    assert stored["properties"]["firstname"] == "Ann"
    assert stored["properties"]["lastname"] == "Lee"


def test_upsert_reports_partial_failure_with_207(sandbox):
    inputs = [
        contact_input("ok@example.com"),
        contact_input("broken"),
        contact_input("x@y.invalid"),
    ]

    response = upsert(sandbox, inputs)

    assert response.status_code == 207
    body = response.json()
    assert len(body["results"]) == 1
    assert body["numErrors"] == 2
    assert body["errors"][0]["category"] == "VALIDATION_ERROR"
    assert body["errors"][0]["context"] == {"ids": ["broken"]}
    assert body["errors"][0]["message"].startswith("Property values were not valid")
    assert sandbox.contacts()["count"] == 1


def test_upsert_rejects_all_invalid_inputs_with_400(sandbox):
    response = upsert(sandbox, [contact_input("broken")])

    assert response.status_code == 400
    assert response.json()["numErrors"] == 1
    assert sandbox.contacts()["count"] == 0


def test_upsert_rejects_duplicate_ids(sandbox):
    inputs = [contact_input("dup@example.com"), contact_input("DUP@example.com")]

    response = upsert(sandbox, inputs)

    assert response.status_code == 400
    body = response.json()
    assert body["category"] == "VALIDATION_ERROR"
    assert body["message"].startswith("Duplicate IDs found in batch input: [dup@example.com]")
    assert sandbox.contacts()["count"] == 0


def test_upsert_rejects_more_than_100_inputs(sandbox):
    inputs = [contact_input(f"lead{i}@example.com") for i in range(101)]

    response = upsert(sandbox, inputs)

    assert response.status_code == 400
    assert response.json()["category"] == "VALIDATION_ERROR"


@pytest.mark.parametrize(
    "inputs",
    [
        # inputs is not a list
        {"id": "a@example.com"},
        # idProperty other than email
        [{"idProperty": "hs_object_id", "id": "12", "properties": {}}],
    ],
)
def test_upsert_rejects_malformed_batch(sandbox, inputs):
    response = upsert(sandbox, inputs)

    assert response.status_code == 400
    assert response.json()["status"] == "error"


def test_upsert_rate_limit_returns_429(sandbox):
    sandbox.set_faults("crm", rate_limit_per_10s=2, retry_after_seconds=3)

    statuses = [upsert(sandbox, [contact_input("a@example.com")]).status_code for _ in range(2)]
    limited = upsert(sandbox, [contact_input("a@example.com")])

    assert statuses == [200, 200]
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "3"
    assert limited.json()["policyName"] == "SECONDLY"
    assert limited.json()["errorType"] == "RATE_LIMIT"
    assert sandbox.contacts()["upsert_inputs"] == 2


def list_submissions(sandbox, form_guid="referral-signup", **params):
    return requests.get(
        f"{sandbox.crm_url}{FORMS_PATH}/{form_guid}",
        params=params,
        headers=crm_headers(sandbox),
        timeout=REQUEST_TIMEOUT_SECONDS,
    )


def test_form_submissions_page_with_cursor(sandbox):
    for i in range(3):
        sandbox.add_submission({"email": f"friend{i}@example.com", "referral_code": "R1"})

    first = list_submissions(sandbox, limit=2).json()
    second = list_submissions(sandbox, limit=2, after=first["paging"]["next"]["after"]).json()

    assert len(first["results"]) == 2
    assert len(second["results"]) == 1
    assert "paging" not in second
    last_values = second["results"][0]["values"]
    assert {"name": "email", "value": "friend2@example.com"} in last_values
    assert second["results"][0]["pageUrl"] == "http://127.0.0.1/referral"


def test_form_submissions_reject_cursor_of_earlier_store(sandbox):
    for i in range(3):
        sandbox.add_submission({"email": f"friend{i}@example.com", "referral_code": "R1"})
    cursor = list_submissions(sandbox, limit=2).json()["paging"]["next"]["after"]
    sandbox.reset()

    response = list_submissions(sandbox, limit=2, after=cursor)

    assert response.status_code == 400
    assert "not valid for this form" in response.json()["message"]


def test_form_submissions_unknown_form_is_404(sandbox):
    response = list_submissions(sandbox, form_guid="no-such-form")

    assert response.status_code == 404


def test_form_submissions_reject_limit_over_50(sandbox):
    response = list_submissions(sandbox, limit=51)

    assert response.status_code == 400


def test_form_submissions_require_token(sandbox):
    response = requests.get(
        f"{sandbox.crm_url}{FORMS_PATH}/referral-signup", timeout=REQUEST_TIMEOUT_SECONDS
    )

    assert response.status_code == 401
