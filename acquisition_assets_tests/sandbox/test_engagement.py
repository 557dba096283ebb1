"""Tests of the deterministic engagement events and the referral sign-ups they cause."""

import requests

from acquisition_assets.sandbox.engagement import decide_engagement
from acquisition_assets.sandbox.knobs import EmailKnobs
from acquisition_assets_tests.sandbox.helpers import (
    REQUEST_TIMEOUT_SECONDS,
    crm_headers,
    get_events,
    make_message,
    send_batch,
)

RECIPIENTS = [f"lead{i}@example.com" for i in range(40)]


def record_types_by_recipient(sandbox):
    outcome = {}
    for event in get_events(sandbox)["Events"]:
        outcome.setdefault(event["Recipient"], []).append(event["RecordType"])
    return outcome


def test_events_repeat_for_same_seed(sandbox):
    messages = [make_message(address) for address in RECIPIENTS]
    send_batch(sandbox, messages)
    first_run = record_types_by_recipient(sandbox)

    sandbox.reset()
    send_batch(sandbox, messages)
    second_run = record_types_by_recipient(sandbox)

    assert first_run == second_run
    assert len(first_run) == len(RECIPIENTS)


def test_decide_engagement_depends_on_seed():
    knobs = EmailKnobs()

    seed_1 = [decide_engagement(1, address, "welcome", "Hi", knobs) for address in RECIPIENTS]
    seed_2 = [decide_engagement(2, address, "welcome", "Hi", knobs) for address in RECIPIENTS]

    assert [e.opened for e in seed_1] != [e.opened for e in seed_2]


def test_decide_engagement_ignores_address_case():
    knobs = EmailKnobs()

    lower = decide_engagement(0, "lead@example.com", "welcome", "Hi", knobs)
    upper = decide_engagement(0, "Lead@Example.com", "welcome", "Hi", knobs)

    assert lower == upper


def test_decide_engagement_respects_rate_bounds():
    always = EmailKnobs(bounce_rate=0, open_rate=1, click_rate=1, unsubscribe_rate=0)
    never = EmailKnobs(bounce_rate=0, open_rate=0, click_rate=1, unsubscribe_rate=0)

    opened = [decide_engagement(0, a, "t", "s", always) for a in RECIPIENTS]
    unopened = [decide_engagement(0, a, "t", "s", never) for a in RECIPIENTS]

    assert all(e.opened and e.clicked for e in opened)
    assert not any(e.opened or e.clicked for e in unopened)


def test_decide_engagement_default_rates_are_plausible():
    knobs = EmailKnobs()
    addresses = [f"lead{i}@example.com" for i in range(2000)]

    outcomes = [decide_engagement(0, a, "welcome", "Hi", knobs) for a in addresses]

    open_share = sum(e.opened for e in outcomes) / len(outcomes)
    bounce_share = sum(e.bounced for e in outcomes) / len(outcomes)
    assert 0.38 < open_share < 0.48
    assert 0.01 < bounce_share < 0.05


def list_submissions(sandbox, form_guid="referral-signup", **params):
    return requests.get(
        f"{sandbox.crm_url}/form-integrations/v1/submissions/forms/{form_guid}",
        params=params,
        headers=crm_headers(sandbox),
        timeout=REQUEST_TIMEOUT_SECONDS,
    )


def all_submission_values(sandbox):
    """Page through the referral form and return each submission's values as a dict."""
    values, params = [], {"limit": 50}
    while True:
        body = list_submissions(sandbox, **params).json()
        values += [{item["name"]: item["value"] for item in r["values"]} for r in body["results"]]
        if "paging" not in body:
            return values
        params["after"] = body["paging"]["next"]["after"]


def test_click_on_referral_message_adds_submissions(sandbox):
    sandbox.set_faults("email", bounce_rate=0, open_rate=1, click_rate=1, unsubscribe_rate=0)
    message = make_message("referrer@example.com", Metadata={"referral_code": "REF123"})
    send_batch(sandbox, [message])

    results = list_submissions(sandbox).json()["results"]

    values = [{item["name"]: item["value"] for item in result["values"]} for result in results]
    friends = [v for v in values if v["email"] != "referrer@example.com"]
    assert 1 <= len(friends) <= 2
    assert all(v["referral_code"] == "REF123" for v in values)
    assert friends[0]["firstname"] == "Friend1"
    assert friends[0]["email"].startswith("friend1.")
    assert friends[0]["email"].endswith("@example.com")
    assert all(isinstance(result["submittedAt"], int) for result in results)


def test_click_without_referral_code_adds_nothing(sandbox):
    sandbox.set_faults("email", bounce_rate=0, open_rate=1, click_rate=1)
    send_batch(sandbox, [make_message("plain@example.com")])

    assert list_submissions(sandbox).json()["results"] == []


def test_referral_clicks_include_some_self_referrals(sandbox):
    sandbox.set_faults("email", bounce_rate=0, open_rate=1, click_rate=1, unsubscribe_rate=0)
    messages = [
        make_message(address, Metadata={"referral_code": f"CODE{i}"})
        for i, address in enumerate(RECIPIENTS)
    ]
    send_batch(sandbox, messages)

    emails = {values["email"] for values in all_submission_values(sandbox)}

    self_referrals = emails & set(RECIPIENTS)
    assert 1 <= len(self_referrals) <= 10
