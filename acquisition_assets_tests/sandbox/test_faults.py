"""Tests of the fault knobs, the control routes and the request stats of both services."""

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from acquisition_assets_tests.sandbox.helpers import (
    REQUEST_TIMEOUT_SECONDS,
    contact_input,
    make_message,
    send_batch,
    upsert,
)

# Short client timeout for the tests where the server sends no response in time.
CLIENT_TIMEOUT_SECONDS = 0.5


def test_script_returns_listed_statuses_then_normal(sandbox):
    sandbox.set_faults("crm", script=[503, 503, 400])

    statuses = [upsert(sandbox, [contact_input("a@example.com")]).status_code for _ in range(4)]

    assert statuses == [503, 503, 400, 200]
    assert sandbox.contacts()["upsert_inputs"] == 1
    assert sandbox.faults("crm")["script"] == []


def test_script_2xx_entry_processes_request(sandbox):
    sandbox.set_faults("email", script=[200, 500])

    first = send_batch(sandbox, [make_message("a@example.com")])
    second = send_batch(sandbox, [make_message("b@example.com")])

    assert first.status_code == 200
    assert second.status_code == 500
    assert sandbox.messages()["count"] == 1


def test_scripted_503_sends_retry_after(sandbox):
    sandbox.set_faults("crm", script=[503], retry_after_seconds=4)

    response = upsert(sandbox, [contact_input("a@example.com")])

    assert response.headers["Retry-After"] == "4"
    assert response.headers["X-Sandbox-Fault"] == "script"


def test_outage_returns_503_until_cleared(sandbox):
    sandbox.set_faults("email", outage=True)
    during = send_batch(sandbox, [make_message("a@example.com")])
    sandbox.set_faults("email", outage=False)
    after = send_batch(sandbox, [make_message("a@example.com")])

    assert during.status_code == 503
    assert during.headers["Retry-After"] == "1"
    assert during.json()["ErrorCode"] == 100
    assert after.status_code == 200
    assert sandbox.messages()["count"] == 1


def test_outage_spares_control_routes(sandbox):
    sandbox.set_faults("crm", outage=True)

    assert sandbox.contacts()["count"] == 0
    assert sandbox.stats("crm")["requests"] == 0


def test_error_rate_one_fails_every_request(sandbox):
    sandbox.set_faults("crm", error_rate=1, error_status=502)

    response = upsert(sandbox, [contact_input("a@example.com")])

    assert response.status_code == 502
    assert "Retry-After" not in response.headers
    assert sandbox.contacts()["count"] == 0


def test_rate_limit_rate_one_returns_429(sandbox):
    sandbox.set_faults("email", rate_limit_rate=1, retry_after_seconds=2)

    response = send_batch(sandbox, [make_message("a@example.com")])

    assert response.status_code == 429
    assert response.headers["Retry-After"] == "2"
    assert response.json()["ErrorCode"] == 429


def test_lost_response_stores_message_but_times_out(sandbox):
    sandbox.set_faults("email", lost_response_rate=1, timeout_seconds=2)
    message = make_message("a@example.com", Metadata={"idempotency_key": "lead-1:welcome"})

    with pytest.raises(requests.exceptions.ReadTimeout):
        send_batch(sandbox, [message], timeout=CLIENT_TIMEOUT_SECONDS)

    assert sandbox.messages()["by_idempotency_key"] == {"lead-1:welcome": 1}
    assert sandbox.stats("email")["faults"] == {"lost_response": 1}


def test_timeout_rate_never_processes_request(sandbox):
    sandbox.set_faults("crm", timeout_rate=1, timeout_seconds=2)

    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.post(
            sandbox.crm_url + "/crm/v3/objects/contacts/batch/upsert",
            json={"inputs": [contact_input("a@example.com")]},
            timeout=CLIENT_TIMEOUT_SECONDS,
        )

    assert sandbox.contacts()["count"] == 0


def test_latency_overlaps_concurrent_requests(sandbox):
    sandbox.set_faults("email", latency_ms=300)

    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [
            pool.submit(send_batch, sandbox, [make_message(f"lead{i}@example.com")])
            for i in range(4)
        ]
        statuses = [future.result().status_code for future in futures]

    assert statuses == [200, 200, 200, 200]
    assert sandbox.stats("email")["max_concurrent"] >= 2


def test_set_faults_rejects_unknown_knob(sandbox):
    response = requests.post(
        f"{sandbox.crm_url}/_sandbox/faults",
        json={"error_rat": 0.5},
        timeout=REQUEST_TIMEOUT_SECONDS,
    )

    assert response.status_code == 400
    assert "error_rat" in response.json()["error"]
    assert "error_rate" in response.json()["valid_knobs"]


@pytest.mark.parametrize(
    "knobs",
    [
        # a rate is a fraction
        {"error_rate": 1.5},
        # a status must be an HTTP status code
        {"script": [200, 999]},
        # a flag must be a JSON boolean
        {"outage": "yes"},
    ],
)
def test_set_faults_rejects_invalid_value(sandbox, knobs):
    response = requests.post(
        f"{sandbox.email_url}/_sandbox/faults", json=knobs, timeout=REQUEST_TIMEOUT_SECONDS
    )

    assert response.status_code == 400
    assert sandbox.faults("email")["outage"] is False


def test_set_faults_keeps_services_separate(sandbox):
    sandbox.set_faults("email", error_rate=0.25)

    assert sandbox.faults("email")["error_rate"] == 0.25
    assert sandbox.faults("crm")["error_rate"] == 0.0
    assert "bounce_rate" not in sandbox.faults("crm")
    assert sandbox.faults("crm")["rate_limit_per_10s"] == 190


def test_reset_clears_data_and_knobs(sandbox):
    sandbox.set_faults("email", bounce_rate=0.5)
    send_batch(sandbox, [make_message("a@example.com")])
    upsert(sandbox, [contact_input("a@example.com")])
    sandbox.add_submission({"email": "friend@example.com"})

    sandbox.reset()

    assert sandbox.faults("email")["bounce_rate"] == 0.03
    assert sandbox.messages()["count"] == 0
    assert sandbox.contacts()["count"] == 0
    assert sandbox.stats("email")["events"] == 0
    assert sandbox.stats("crm")["submissions"] == 0
    assert sandbox.stats("crm")["requests"] == 0


def test_stats_count_requests_by_status_and_route(sandbox):
    send_batch(sandbox, [make_message("a@example.com")])
    requests.post(f"{sandbox.email_url}/email/batch", json=[], timeout=REQUEST_TIMEOUT_SECONDS)

    stats = sandbox.stats("email")

    assert stats["requests"] == 2
    assert stats["by_status"] == {"200": 1, "401": 1}
    assert stats["by_route"] == {"POST /email/batch": 2}
    assert stats["messages_accepted"] == 1
