"""Starlette app of the email sandbox, which speaks a subset of Postmark's server API.

Real Postmark pushes webhooks to the sender. The sandbox cannot reach the pipeline, so it
stores the webhook bodies instead and serves them in order from GET /webhook-events. That
feed replaces the queue that a webhook receiver would fill.
"""

import secrets
import uuid
from collections import Counter
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from acquisition_assets.sandbox.addresses import extract_address, is_valid_address
from acquisition_assets.sandbox.control import control_routes
from acquisition_assets.sandbox.engagement import decide_engagement, record_engagement
from acquisition_assets.sandbox.faults import FaultMiddleware
from acquisition_assets.sandbox.parsing import int_query_param, read_json
from acquisition_assets.sandbox.state import SandboxState, utc_timestamp

TOKEN_HEADER = "X-Postmark-Server-Token"
MAX_BATCH_MESSAGES = 500
MAX_PAGE_COUNT = 500
# NOTE: the 10,000 limit on count plus offset is recalled from Postmark's docs, not verified.
MAX_SEARCH_DEPTH = 10_000

# Postmark API error codes used here.
BAD_TOKEN = 10
MAINTENANCE = 100
INVALID_REQUEST = 300
INVALID_JSON = 402
INACTIVE_RECIPIENT = 406
TOO_MANY_BATCH_MESSAGES = 410
RATE_LIMIT_EXCEEDED = 429


def email_error(status: int, code: int, message: str) -> JSONResponse:
    """Build a Postmark-style error response."""
    return JSONResponse({"ErrorCode": code, "Message": message}, status_code=status)


def injected_error(status: int, message: str) -> Response:
    """Build the response of an injected fault in Postmark's error shape."""
    code = RATE_LIMIT_EXCEEDED if status == 429 else MAINTENANCE
    return email_error(status, code, message)


def create_email_app(state: SandboxState) -> Starlette:
    """Build the email provider app on the shared sandbox state."""
    api = EmailApi(state)
    routes = [
        Route("/email", api.send_one, methods=["POST"]),
        Route("/email/batch", api.send_batch, methods=["POST"]),
        Route("/messages/outbound", api.search_outbound, methods=["GET"]),
        Route("/webhook-events", api.list_events, methods=["GET"]),
        Route("/_sandbox/messages", api.list_messages, methods=["GET"]),
        *control_routes(state, state.email, api.extra_stats),
    ]
    middleware = [
        Middleware(
            FaultMiddleware, service=state.email, routes=routes, error_response=injected_error
        )
    ]
    return Starlette(routes=routes, middleware=middleware)


class EmailApi:
    """Route handlers of the email provider."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state

    def _reject_unauthorized(self, request: Request) -> Response | None:
        token = request.headers.get(TOKEN_HEADER, "")
        if secrets.compare_digest(token.encode(), self.state.email_token.encode()):
            return None
        message = f"Missing or invalid server token in the '{TOKEN_HEADER}' header."
        return email_error(401, BAD_TOKEN, message)

    async def send_one(self, request: Request) -> Response:
        """POST /email: send one message, responding with 422 when it is rejected."""
        if rejection := self._reject_unauthorized(request):
            return rejection
        try:
            raw = await read_json(request)
        except ValueError:
            return email_error(422, INVALID_JSON, "Invalid JSON: the body could not be parsed.")

        result = self._accept(raw)
        return JSONResponse(result, status_code=200 if result["ErrorCode"] == 0 else 422)

    async def send_batch(self, request: Request) -> Response:
        """POST /email/batch: send up to 500 messages with one result each, in order."""
        if rejection := self._reject_unauthorized(request):
            return rejection
        try:
            raw = await read_json(request)
        except ValueError:
            return email_error(422, INVALID_JSON, "Invalid JSON: the body could not be parsed.")

        if not isinstance(raw, list):
            message = "Invalid JSON: a batch body must be a JSON array of messages."
            return email_error(422, INVALID_JSON, message)
        if len(raw) > MAX_BATCH_MESSAGES:
            message = (
                f"Too many batch messages: got {len(raw)}, the limit is {MAX_BATCH_MESSAGES}. "
                "Split the batch."
            )
            return email_error(422, TOO_MANY_BATCH_MESSAGES, message)
        return JSONResponse([self._accept(item) for item in raw])

    def _accept(self, raw: Any) -> dict[str, Any]:
        """Validate and store one message, returning its Postmark send result."""
        submitted_at = utc_timestamp()
        message, error = parse_message(raw)
        if message is None:
            self.state.email_store.messages_rejected += 1
            to = raw.get("To") if isinstance(raw, dict) else None
            return _send_result(INVALID_REQUEST, error, "", submitted_at, to)

        store = self.state.email_store
        # NOTE: Postmark keeps a suppression list per message stream; the sandbox keeps one.
        if message["To"].lower() in store.suppressed:
            store.messages_rejected += 1
            error = (
                "You tried to send to recipient(s) that have been marked as inactive. "
                f"Inactive address: {message['To']}. The sandbox marks an address inactive "
                "after a hard bounce or an unsubscribe."
            )
            return _send_result(INACTIVE_RECIPIENT, error, "", submitted_at, message["To"])

        message["MessageID"] = str(uuid.uuid4())
        message["ReceivedAt"] = submitted_at
        store.messages.append(message)
        engagement = decide_engagement(
            self.state.seed,
            message["To"],
            message["Tag"],
            message["Subject"],
            self.state.email_knobs,
        )
        record_engagement(message, engagement, store, self.state.crm_store)
        return _send_result(0, "OK", message["MessageID"], submitted_at, message["To"])

    async def search_outbound(self, request: Request) -> Response:
        """GET /messages/outbound: search accepted messages, newest first like Postmark."""
        if rejection := self._reject_unauthorized(request):
            return rejection
        params = request.query_params
        try:
            count = int_query_param(params, "count", None, 1, MAX_PAGE_COUNT)
            offset = int_query_param(params, "offset", 0, 0, MAX_SEARCH_DEPTH)
        except ValueError as exc:
            return email_error(422, INVALID_REQUEST, str(exc))
        if count + offset > MAX_SEARCH_DEPTH:
            message = f"count plus offset must not exceed {MAX_SEARCH_DEPTH}."
            return email_error(422, INVALID_REQUEST, message)

        matches = [m for m in reversed(self.state.email_store.messages) if _matches(m, params)]
        page = matches[offset : offset + count]
        return JSONResponse(
            {"TotalCount": len(matches), "Messages": [_outbound_summary(m) for m in page]}
        )

    async def list_events(self, request: Request) -> Response:
        """GET /webhook-events: return events with ID greater than after, oldest first."""
        if rejection := self._reject_unauthorized(request):
            return rejection
        try:
            after = int_query_param(request.query_params, "after", 0, 0, None)
            count = int_query_param(
                request.query_params, "count", MAX_PAGE_COUNT, 1, MAX_PAGE_COUNT
            )
        except ValueError as exc:
            return email_error(422, INVALID_REQUEST, str(exc))

        # Event ids are 1-based list positions, so the page starts at index after.
        events = self.state.email_store.events[after : after + count]
        last_id = events[-1]["ID"] if events else after
        return JSONResponse(
            {"Events": events, "LastID": last_id, "FeedID": self.state.email_store.feed_id}
        )

    async def list_messages(self, request: Request) -> Response:
        """GET /_sandbox/messages: stored messages plus send counts per idempotency key."""
        tag = request.query_params.get("tag")
        recipient = request.query_params.get("recipient")
        messages = [
            m
            for m in self.state.email_store.messages
            if (tag is None or m["Tag"] == tag)
            and (recipient is None or m["To"].lower() == recipient.lower())
        ]
        keys = Counter(
            m["Metadata"]["idempotency_key"] for m in messages if "idempotency_key" in m["Metadata"]
        )
        return JSONResponse(
            {"count": len(messages), "messages": messages, "by_idempotency_key": dict(keys)}
        )

    def extra_stats(self) -> dict[str, Any]:
        """Return the email counters added to /_sandbox/stats."""
        store = self.state.email_store
        return {
            "messages_accepted": len(store.messages),
            "messages_rejected": store.messages_rejected,
            "events": len(store.events),
        }


def parse_message(raw: Any) -> tuple[dict[str, Any] | None, str]:
    """Return the message in stored form and "", or None and the reason it is invalid."""
    if not isinstance(raw, dict):
        return None, "Invalid email request: each message must be a JSON object."

    to = raw.get("To")
    if not isinstance(to, str) or not to.strip():
        return None, "Invalid 'To' address: the field is missing or empty."
    # NOTE: Postmark accepts up to 50 comma-separated recipients; the sandbox accepts one.
    if "," in to:
        return None, f"Invalid 'To' address: '{to}'. The sandbox accepts one recipient per message."
    address = extract_address(to)
    if not is_valid_address(address):
        return None, f"Invalid 'To' address: '{to}'."

    sender = raw.get("From")
    if not isinstance(sender, str) or "@" not in sender:
        return None, f"Invalid 'From' address: {sender!r}."
    if not raw.get("TextBody") and not raw.get("HtmlBody"):
        return None, "Invalid email request: provide a TextBody, an HtmlBody or both."

    metadata = raw.get("Metadata") or {}
    if not isinstance(metadata, dict) or not all(
        isinstance(key, str) and isinstance(value, str) for key, value in metadata.items()
    ):
        return None, "Invalid 'Metadata': it must be a JSON object of strings to strings."

    for name in ("Subject", "Tag", "MessageStream", "TextBody", "HtmlBody"):
        if raw.get(name) is not None and not isinstance(raw[name], str):
            return None, f"Invalid email request: '{name}' must be a string."

    message = {
        "From": sender,
        "To": address,
        "Subject": raw.get("Subject") or "",
        "Tag": raw.get("Tag") or "",
        "Metadata": dict(metadata),
        "MessageStream": raw.get("MessageStream") or "outbound",
        "TextBody": raw.get("TextBody") or "",
        "HtmlBody": raw.get("HtmlBody") or "",
    }
    return message, ""


def _send_result(
    code: int, text: str, message_id: str, submitted_at: str, to: Any
) -> dict[str, Any]:
    return {
        "ErrorCode": code,
        "Message": text,
        "MessageID": message_id,
        "SubmittedAt": submitted_at,
        "To": to if isinstance(to, str) else "",
    }


def _matches(message: dict[str, Any], params: Any) -> bool:
    """Return whether a stored message passes the outbound search filters."""
    recipient = params.get("recipient")
    if recipient is not None and message["To"].lower() != recipient.lower():
        return False
    if params.get("tag") is not None and message["Tag"] != params["tag"]:
        return False
    stream = params.get("messagestream")
    if stream is not None and message["MessageStream"] != stream:
        return False

    for name, value in params.items():
        if name.startswith("metadata_"):
            if message["Metadata"].get(name.removeprefix("metadata_")) != value:
                return False
    return True


def _outbound_summary(message: dict[str, Any]) -> dict[str, Any]:
    """Build the outbound search entry of a stored message."""
    return {
        "MessageID": message["MessageID"],
        "From": message["From"],
        "To": [{"Email": message["To"], "Name": None}],
        "Recipients": [message["To"]],
        "Subject": message["Subject"],
        "Tag": message["Tag"],
        "Metadata": message["Metadata"],
        "Status": "Sent",
        "ReceivedAt": message["ReceivedAt"],
        "MessageStream": message["MessageStream"],
    }
