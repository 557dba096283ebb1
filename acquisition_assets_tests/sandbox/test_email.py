"""Tests of the email sandbox's Postmark-style send, search and event feed routes."""

import requests

from acquisition_assets_tests.sandbox.helpers import (
    REQUEST_TIMEOUT_SECONDS,
    email_headers,
    get_events,
    make_message,
    send_batch,
)


def test_batch_rejects_missing_token(sandbox):
    response = requests.post(
        f"{sandbox.email_url}/email/batch",
        json=[make_message("a@example.com")],
        timeout=REQUEST_TIMEOUT_SECONDS,
    )

    assert response.status_code == 401
    assert response.json()["ErrorCode"] == 10


def test_batch_rejects_wrong_token(sandbox):
    response = requests.post(
        f"{sandbox.email_url}/email/batch",
        json=[make_message("a@example.com")],
        headers={"X-Postmark-Server-Token": "wrong"},
        timeout=REQUEST_TIMEOUT_SECONDS,
    )

    assert response.status_code == 401
    assert sandbox.stats("email")["messages_accepted"] == 0


def test_batch_accepts_valid_messages(sandbox):
    sandbox.set_faults("email", bounce_rate=0)

    response = send_batch(sandbox, [make_message("a@example.com"), make_message("b@example.com")])

    assert response.status_code == 200
    results = response.json()
    assert [result["ErrorCode"] for result in results] == [0, 0]
    assert [result["To"] for result in results] == ["a@example.com", "b@example.com"]
    assert all(len(result["MessageID"]) == 36 for result in results)
    assert all(result["SubmittedAt"] for result in results)
    assert sandbox.messages()["count"] == 2


def test_batch_rejects_invalid_recipients_per_message(sandbox):
    messages = [
        make_message("no-at-sign"),
        make_message("someone@bad.invalid"),
        make_message("ok@example.com"),
    ]

    response = send_batch(sandbox, messages)

    assert response.status_code == 200
    results = response.json()
    assert [result["ErrorCode"] for result in results] == [300, 300, 0]
    assert results[0]["MessageID"] == ""
    assert results[0]["Message"].startswith("Invalid 'To' address")
    assert sandbox.messages()["count"] == 1
    assert sandbox.stats("email")["messages_rejected"] == 2


def test_batch_rejects_suppressed_recipient(sandbox):
    sandbox.set_faults("email", bounce_rate=1)
    first = send_batch(sandbox, [make_message("gone@example.com")]).json()

    second = send_batch(sandbox, [make_message("gone@example.com", Tag="step-2")]).json()

    assert first[0]["ErrorCode"] == 0
    assert second[0]["ErrorCode"] == 406
    assert second[0]["MessageID"] == ""
    assert "inactive" in second[0]["Message"]
    assert sandbox.messages()["count"] == 1


def test_batch_rejects_unsubscribed_recipient(sandbox):
    sandbox.set_faults("email", bounce_rate=0, unsubscribe_rate=1)
    send_batch(sandbox, [make_message("leaver@example.com")])

    results = send_batch(sandbox, [make_message("leaver@example.com", Tag="step-2")]).json()

    assert results[0]["ErrorCode"] == 406


def test_batch_rejects_more_than_500_messages(sandbox):
    messages = [make_message(f"lead{i}@example.com") for i in range(501)]

    response = send_batch(sandbox, messages)

    assert response.status_code == 422
    assert response.json()["ErrorCode"] == 410
    assert sandbox.messages()["count"] == 0


def test_batch_rejects_non_array_body(sandbox):
    response = send_batch(sandbox, {"To": "a@example.com"})

    assert response.status_code == 422
    assert response.json()["ErrorCode"] == 402


def test_batch_rejects_invalid_json(sandbox):
    response = requests.post(
        f"{sandbox.email_url}/email/batch",
        data=b"[{not json",
        headers=email_headers(sandbox),
        timeout=REQUEST_TIMEOUT_SECONDS,
    )

    assert response.status_code == 422
    assert response.json()["ErrorCode"] == 402


def test_messages_counts_idempotency_keys(sandbox):
    messages = [
        make_message("a@example.com", Metadata={"idempotency_key": "k1"}),
        make_message("b@example.com", Metadata={"idempotency_key": "k2"}),
        make_message("a@example.com", Metadata={"idempotency_key": "k1"}, Tag="retry"),
    ]
    sandbox.set_faults("email", bounce_rate=0, unsubscribe_rate=0)
    send_batch(sandbox, messages)

    listing = sandbox.messages()

    assert listing["by_idempotency_key"] == {"k1": 2, "k2": 1}
    assert sandbox.messages(tag="retry")["count"] == 1
    assert sandbox.messages(recipient="B@example.com")["count"] == 1


def search_outbound(sandbox, **params):
    return requests.get(
        f"{sandbox.email_url}/messages/outbound",
        params=params,
        headers=email_headers(sandbox),
        timeout=REQUEST_TIMEOUT_SECONDS,
    )


def test_outbound_search_filters_by_metadata(sandbox):
    messages = [
        make_message("a@example.com", Metadata={"idempotency_key": "lead-1:welcome"}),
        make_message("b@example.com", Metadata={"idempotency_key": "lead-2:welcome"}),
    ]
    message_ids = [result["MessageID"] for result in send_batch(sandbox, messages).json()]

    body = search_outbound(sandbox, count=50, metadata_idempotency_key="lead-2:welcome").json()

    assert body["TotalCount"] == 1
    found = body["Messages"][0]
    assert found["MessageID"] == message_ids[1]
    assert found["To"] == [{"Email": "b@example.com", "Name": None}]
    assert found["Recipients"] == ["b@example.com"]
    assert found["Status"] == "Sent"
    assert found["Metadata"] == {"idempotency_key": "lead-2:welcome"}


def test_outbound_search_filters_by_recipient_and_tag(sandbox):
    messages = [
        make_message("a@example.com", Tag="welcome"),
        make_message("a@example.com", Tag="follow-up"),
        make_message("b@example.com", Tag="welcome"),
    ]
    sandbox.set_faults("email", bounce_rate=0, unsubscribe_rate=0)
    send_batch(sandbox, messages)

    by_recipient = search_outbound(sandbox, count=10, recipient="a@example.com").json()
    by_both = search_outbound(sandbox, count=10, recipient="a@example.com", tag="welcome").json()

    assert by_recipient["TotalCount"] == 2
    assert by_both["TotalCount"] == 1


def test_outbound_search_pages_with_offset(sandbox):
    sandbox.set_faults("email", bounce_rate=0, unsubscribe_rate=0)
    send_batch(sandbox, [make_message(f"lead{i}@example.com") for i in range(5)])

    page = search_outbound(sandbox, count=2, offset=4).json()

    assert page["TotalCount"] == 5
    assert len(page["Messages"]) == 1


def test_outbound_search_requires_count(sandbox):
    missing = search_outbound(sandbox)
    too_large = search_outbound(sandbox, count=501)

    assert missing.status_code == 422
    assert too_large.status_code == 422


def test_webhook_events_page_by_cursor(sandbox):
    sandbox.set_faults("email", bounce_rate=0, open_rate=1, click_rate=0, unsubscribe_rate=0)
    send_batch(sandbox, [make_message(f"lead{i}@example.com") for i in range(3)])

    first = get_events(sandbox, after=0, count=4)
    second = get_events(sandbox, after=first["LastID"], count=4)
    empty = get_events(sandbox, after=second["LastID"])

    # Each message gets a Delivery and an Open event.
    assert [event["ID"] for event in first["Events"]] == [1, 2, 3, 4]
    assert first["LastID"] == 4
    assert [event["ID"] for event in second["Events"]] == [5, 6]
    assert empty["Events"] == []
    assert empty["LastID"] == 6
    assert empty["FeedID"] == first["FeedID"]


def test_webhook_events_feed_id_changes_on_reset(sandbox):
    before = get_events(sandbox, after=0)["FeedID"]
    sandbox.reset()
    after = get_events(sandbox, after=0)["FeedID"]
    assert before
    assert after != before


def test_webhook_events_follow_postmark_shapes(sandbox):
    sandbox.set_faults("email", bounce_rate=0, open_rate=1, click_rate=1, unsubscribe_rate=1)
    message = make_message("a@example.com", Metadata={"lead_id": "42"})
    message_id = send_batch(sandbox, [message]).json()[0]["MessageID"]

    events = get_events(sandbox)["Events"]

    assert [event["RecordType"] for event in events] == [
        "Delivery",
        "Open",
        "Click",
        "SubscriptionChange",
    ]
    assert all(event["MessageID"] == message_id for event in events)
    assert all(event["Metadata"] == {"lead_id": "42"} for event in events)
    assert "DeliveredAt" in events[0]
    assert events[2]["OriginalLink"] == "https://example.com/start"
    assert events[3]["SuppressSending"] is True


def test_webhook_events_bounce_has_no_delivery(sandbox):
    sandbox.set_faults("email", bounce_rate=1)
    send_batch(sandbox, [make_message("gone@example.com")])

    events = get_events(sandbox)["Events"]

    assert len(events) == 1
    assert events[0]["RecordType"] == "Bounce"
    assert events[0]["Type"] == "HardBounce"
    assert events[0]["TypeCode"] == 1
    assert events[0]["Email"] == "gone@example.com"
    assert "BouncedAt" in events[0]


def test_webhook_events_require_token(sandbox):
    response = requests.get(f"{sandbox.email_url}/webhook-events", timeout=REQUEST_TIMEOUT_SECONDS)

    assert response.status_code == 401
