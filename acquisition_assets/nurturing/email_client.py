"""Client of a Postmark-compatible email API: batch send, outbound search and event feed."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import Field

from acquisition_assets.core.api_resource import ApiResource
from acquisition_assets.core.database import AcquisitionDatabase
from acquisition_assets.core.http import JsonApiClient
from acquisition_assets.settings import PipelineSettings

# Postmark accepts at most 500 messages per batch request.
MAX_BATCH_MESSAGES = 500
# Postmark ErrorCodes that no retry can fix: an invalid address and an inactive recipient.
PERMANENT_ERROR_CODES = frozenset({300, 406})
EMAIL_BREAKER = "email"


@dataclass(frozen=True)
class SendResult:
    """The provider's response for one message of a batch."""

    error_code: int
    message: str
    message_id: str | None


class PostmarkClient:
    """Speaks Postmark's batch send, outbound message search and the event feed."""

    def __init__(self, http: JsonApiClient):
        self.http = http

    def send_batch(
        self,
        messages: list[dict[str, Any]],
        before_retry: Callable[[], None] | None = None,
    ) -> list[SendResult]:
        """Send up to 500 messages in one request; the response has one result per message.

        `before_retry` runs before the request is sent again after a 429 or 503 response.
        """
        if len(messages) > MAX_BATCH_MESSAGES:
            raise ValueError(
                f"a batch holds at most {MAX_BATCH_MESSAGES} messages, got {len(messages)}"
            )
        # Not idempotent: a resend after a lost response would send twice. The send ledger
        # reconciles such batches through search_outbound instead.
        response = self.http.request(
            "POST", "/email/batch", json=messages, idempotent=False, before_retry=before_retry
        )
        answers = response.json()
        if not isinstance(answers, list) or len(answers) != len(messages):
            raise ValueError(
                f"email batch response has {len(answers) if isinstance(answers, list) else 'no'} "
                f"results for {len(messages)} messages"
            )
        return [
            SendResult(
                int(answer.get("ErrorCode", -1)),
                str(answer.get("Message", "")),
                answer.get("MessageID") or None,
            )
            for answer in answers
        ]

    def search_outbound(self, metadata: dict[str, str], count: int = 500) -> list[dict[str, Any]]:
        """Return every sent message whose metadata matches, following the pages."""
        params: dict[str, Any] = {f"metadata_{key}": value for key, value in metadata.items()}
        found: list[dict[str, Any]] = []
        offset = 0
        while True:
            page = self.http.request(
                "GET",
                "/messages/outbound",
                params={**params, "count": count, "offset": offset},
                idempotent=True,
            ).json()
            messages = page.get("Messages", [])
            found.extend(messages)
            offset += len(messages)
            if not messages or offset >= int(page.get("TotalCount", 0)):
                return found

    def fetch_events(
        self, after: int, count: int = 500
    ) -> tuple[list[dict[str, Any]], int, str | None]:
        """Return events with an ID above `after`, the last ID returned and the feed's id.

        Event IDs count up within one feed. A different feed id means the feed was replaced
        (a new receiver queue, a restarted sandbox) and its IDs started again.
        """
        page = self.http.request(
            "GET", "/webhook-events", params={"after": after, "count": count}, idempotent=True
        ).json()
        return page.get("Events", []), int(page.get("LastID", after)), page.get("FeedID")


class PostmarkEmailApi(ApiResource):
    """Settings of the email provider: URL, server token, sender and client limits."""

    api_url: str = Field(description="Base URL of the Postmark-compatible API.")
    server_token: str = Field(description="Postmark server token (X-Postmark-Server-Token).")
    from_address: str = Field(
        default="Acquisition Team <hello@example.com>", description="From header of every email."
    )
    message_stream: str = Field(default="outbound", description="Postmark message stream.")
    reconcile_after_seconds: float = Field(
        default=120.0,
        ge=0,
        description=(
            "Age after which a send left in flight is checked against the provider before it "
            "is sent again (seconds). Keep it above the request timeout."
        ),
    )

    def open(self, database: AcquisitionDatabase, settings: PipelineSettings) -> PostmarkClient:
        """Create a client with its own pooled session, sized to the worker count."""
        http = JsonApiClient(
            "email",
            self.api_url,
            headers={"X-Postmark-Server-Token": self.server_token},
            timeout_seconds=self.timeout_seconds,
            pool_size=settings.worker_count() + 2,
            breaker=self.breaker(EMAIL_BREAKER, database, settings),
            retry_policy=self.retry_policy(),
        )
        return PostmarkClient(http)
