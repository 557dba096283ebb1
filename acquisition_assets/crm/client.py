"""Client of a HubSpot-compatible CRM: contact batch upsert and form submissions."""

import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import Field

from acquisition_assets.core.api_resource import ApiResource
from acquisition_assets.core.database import AcquisitionDatabase
from acquisition_assets.core.errors import ApiClientError
from acquisition_assets.core.http import JsonApiClient
from acquisition_assets.core.ratelimit import RequestRateLimiter
from acquisition_assets.settings import PipelineSettings

# HubSpot's batch endpoints take at most 100 inputs per request.
MAX_BATCH_INPUTS = 100
CRM_BREAKER = "crm"
UPSERT_PATH = "/crm/v3/objects/contacts/batch/upsert"


@dataclass
class UpsertOutcome:
    """Per-contact results of one batch upsert, keyed by lower-cased email."""

    crm_ids: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


class HubSpotClient:
    """Speaks HubSpot CRM v3 contact upserts and the forms submissions API."""

    def __init__(self, http: JsonApiClient):
        self.http = http

    def upsert_contacts(self, contacts: list[dict[str, Any]]) -> UpsertOutcome:
        """Create or update contacts by email in one request.

        `contacts` are property maps that each carry "email". Upserting is idempotent, so
        the request is retried on transient errors. A 207 response records the failed inputs
        in `errors`; a 400 for the whole batch records every input as failed.
        """
        if len(contacts) > MAX_BATCH_INPUTS:
            raise ValueError(
                f"a CRM batch holds at most {MAX_BATCH_INPUTS} contacts, got {len(contacts)}"
            )
        inputs = [
            {"idProperty": "email", "id": contact["email"], "properties": contact}
            for contact in contacts
        ]
        outcome = UpsertOutcome()
        try:
            response = self.http.request(
                "POST", UPSERT_PATH, json={"inputs": inputs}, idempotent=True
            )
        except ApiClientError as error:
            if error.status != 400:
                raise
            body = _json_or_empty(error.body)
            self._collect_errors(body, outcome)
            unexplained = {c["email"].lower() for c in contacts} - outcome.errors.keys()
            message = body.get("message") or str(error)
            for email in unexplained:
                outcome.errors[email] = f"batch rejected: {message}"
            return outcome
        body = response.json()
        for result in body.get("results", []):
            email = (result.get("properties") or {}).get("email") or result.get("id")
            outcome.crm_ids[str(email).lower()] = str(result["id"])
        self._collect_errors(body, outcome)
        return outcome

    @staticmethod
    def _collect_errors(body: dict[str, Any], outcome: UpsertOutcome) -> None:
        for item in body.get("errors", []):
            ids = (item.get("context") or {}).get("ids") or []
            for email in ids:
                outcome.errors[str(email).lower()] = str(item.get("message", "rejected"))

    def form_submissions(
        self, form_guid: str, after: str | None, limit: int = 50
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Return one page of a form's submissions and the cursor of the next page."""
        params: dict[str, Any] = {"limit": limit}
        if after:
            params["after"] = after
        page = self.http.request(
            "GET",
            f"/form-integrations/v1/submissions/forms/{form_guid}",
            params=params,
            idempotent=True,
        ).json()
        next_after = ((page.get("paging") or {}).get("next") or {}).get("after")
        return page.get("results", []), next_after


def _json_or_empty(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class HubSpotCrmApi(ApiResource):
    """Settings of the CRM: URL, private app token and client limits."""

    api_url: str = Field(description="Base URL of the HubSpot-compatible API.")
    access_token: str = Field(description="HubSpot private app access token (Bearer).")
    referral_form_guid: str = Field(
        default="referral-signup", description="Form whose submissions are referral sign-ups."
    )
    max_requests_per_10_seconds: int = Field(
        default=100,
        ge=1,
        description=(
            "Requests the client starts in any 10 seconds (requests). Staying under the "
            "portal's burst quota avoids 429s, which count as breaker failures. HubSpot's "
            "developer changelog gives 190 per 10 seconds for private apps on Professional "
            "and Enterprise accounts; lower tiers allow fewer, hence the default of 100."
        ),
    )

    def open(self, database: AcquisitionDatabase, settings: PipelineSettings) -> HubSpotClient:
        """Create a client with its own pooled session, sized to the worker count."""
        http = JsonApiClient(
            "crm",
            self.api_url,
            headers={"Authorization": f"Bearer {self.access_token}"},
            timeout_seconds=self.timeout_seconds,
            pool_size=settings.worker_count() + 2,
            breaker=self.breaker(CRM_BREAKER, database, settings),
            retry_policy=self.retry_policy(),
            rate_limiter=RequestRateLimiter(self.max_requests_per_10_seconds, 10.0),
        )
        return HubSpotClient(http)
