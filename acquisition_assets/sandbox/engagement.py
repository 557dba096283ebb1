"""Deterministic engagement events and referral sign-ups for messages the email sandbox accepts.

Outcomes come from a SHA-256 hash of the seed, recipient, tag and subject, never from the
random MessageID. So with the same seed, the same lead and nurture step get the same events
in every run, and a message sent twice gets the same events twice.
"""

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from acquisition_assets.sandbox.knobs import EmailKnobs
from acquisition_assets.sandbox.state import REFERRAL_FORM_GUID, CrmStore, EmailStore, utc_timestamp

SELF_REFERRAL_RATE = 0.1
DEFAULT_LINK = "https://example.com/"
LINK_PATTERN = re.compile(r"https?://[^\s\"'<>]+")


@dataclass(frozen=True)
class Engagement:
    """Outcome of one accepted message: its events and the referral sign-ups they cause."""

    bounced: bool
    opened: bool
    clicked: bool
    unsubscribed: bool
    referral_count: int
    self_referral: bool
    fingerprint: str


def decide_engagement(
    seed: int, recipient: str, tag: str, subject: str, knobs: EmailKnobs
) -> Engagement:
    """Decide the events of a message from its hash and the current event rates."""
    key = "\x1f".join([str(seed), recipient.lower(), tag, subject])
    fingerprint = hashlib.sha256(key.encode()).hexdigest()

    def draw(purpose: str) -> float:
        digest = hashlib.sha256(f"{fingerprint}/{purpose}".encode()).hexdigest()
        return int(digest[:13], 16) / 16**13

    bounced = draw("bounce") < knobs.bounce_rate
    opened = not bounced and draw("open") < knobs.open_rate
    return Engagement(
        bounced=bounced,
        opened=opened,
        clicked=opened and draw("click") < knobs.click_rate,
        unsubscribed=not bounced and draw("unsubscribe") < knobs.unsubscribe_rate,
        referral_count=1 if draw("referrals") < 0.5 else 2,
        self_referral=draw("self_referral") < SELF_REFERRAL_RATE,
        fingerprint=fingerprint,
    )


def record_engagement(
    message: dict[str, Any],
    engagement: Engagement,
    email_store: EmailStore,
    crm_store: CrmStore,
) -> None:
    """Append the message's webhook events and any referral sign-ups it causes."""
    recipient = message["To"]
    if engagement.bounced:
        email_store.add_event(_bounce_event(message))
        email_store.suppressed.add(recipient.lower())
        return

    email_store.add_event(_event(message, "Delivery", DeliveredAt=utc_timestamp()))
    if engagement.opened:
        email_store.add_event(_event(message, "Open", FirstOpen=True, ReceivedAt=utc_timestamp()))
    if engagement.clicked:
        email_store.add_event(_click_event(message))
        _record_referrals(message, engagement, crm_store)
    if engagement.unsubscribed:
        email_store.add_event(_unsubscribe_event(message))
        email_store.suppressed.add(recipient.lower())


def _event(message: dict[str, Any], record_type: str, **fields: Any) -> dict[str, Any]:
    """Build the fields that every Postmark webhook body carries."""
    return {
        "RecordType": record_type,
        "MessageID": message["MessageID"],
        "Recipient": message["To"],
        "Tag": message["Tag"],
        "Metadata": dict(message["Metadata"]),
        "MessageStream": message["MessageStream"],
        **fields,
    }


def _bounce_event(message: dict[str, Any]) -> dict[str, Any]:
    return _event(
        message,
        "Bounce",
        Email=message["To"],
        Type="HardBounce",
        TypeCode=1,
        Name="Hard bounce",
        Description="The recipient's mail server rejected the address (simulated by the sandbox).",
        Inactive=True,
        CanActivate=True,
        Subject=message["Subject"],
        BouncedAt=utc_timestamp(),
    )


def _click_event(message: dict[str, Any]) -> dict[str, Any]:
    body = message.get("HtmlBody") or message.get("TextBody") or ""
    match = LINK_PATTERN.search(body)
    return _event(
        message,
        "Click",
        ClickLocation="HTML",
        OriginalLink=match.group(0) if match else DEFAULT_LINK,
        ReceivedAt=utc_timestamp(),
    )


def _unsubscribe_event(message: dict[str, Any]) -> dict[str, Any]:
    return _event(
        message,
        "SubscriptionChange",
        Origin="Recipient",
        SuppressSending=True,
        SuppressionReason="ManualSuppression",
        ChangedAt=utc_timestamp(),
    )


def _record_referrals(message: dict[str, Any], engagement: Engagement, crm_store: CrmStore) -> None:
    """Add the referral form submissions of friends who followed a clicked referral link."""
    code = message["Metadata"].get("referral_code")
    if not code:
        return

    for k in range(1, engagement.referral_count + 1):
        values = {
            "email": f"friend{k}.{engagement.fingerprint[:8]}@example.com",
            "firstname": f"Friend{k}",
            "referral_code": code,
        }
        crm_store.add_submission(REFERRAL_FORM_GUID, values)

    # A referrer signing up with their own code gives the pipeline a case it must reject.
    if engagement.self_referral:
        referrer = message["To"]
        values = {"email": referrer, "firstname": referrer.split("@")[0], "referral_code": code}
        crm_store.add_submission(REFERRAL_FORM_GUID, values)
