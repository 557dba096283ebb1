"""Starlette app of the CRM sandbox, which speaks a subset of HubSpot's CRM v3 and forms APIs."""

import hashlib
import secrets
import uuid
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from acquisition_assets.sandbox.addresses import is_valid_address
from acquisition_assets.sandbox.control import control_error, control_routes
from acquisition_assets.sandbox.faults import FaultMiddleware
from acquisition_assets.sandbox.parsing import int_query_param, read_json
from acquisition_assets.sandbox.state import (
    REFERRAL_FORM_GUID,
    Contact,
    CrmStore,
    SandboxState,
    utc_timestamp,
)

MAX_BATCH_INPUTS = 100
DEFAULT_SUBMISSION_LIMIT = 20
MAX_SUBMISSION_LIMIT = 50

# HubSpot error categories for the statuses that the sandbox can inject.
CATEGORY_BY_STATUS = {
    400: "VALIDATION_ERROR",
    401: "INVALID_AUTHENTICATION",
    404: "OBJECT_NOT_FOUND",
}


def crm_error(status: int, category: str, message: str, **extra: Any) -> JSONResponse:
    """Build a HubSpot-style error response."""
    body = {
        "status": "error",
        "message": message,
        "category": category,
        "correlationId": str(uuid.uuid4()),
        **extra,
    }
    return JSONResponse(body, status_code=status)


def rate_limit_error(retry_after_seconds: int) -> JSONResponse:
    """Build HubSpot's 429 rate-limit response with a Retry-After header."""
    body = {
        "status": "error",
        "message": "You have reached your secondly limit.",
        "errorType": "RATE_LIMIT",
        "correlationId": str(uuid.uuid4()),
        "policyName": "SECONDLY",
    }
    headers = {"Retry-After": str(retry_after_seconds)}
    return JSONResponse(body, status_code=429, headers=headers)


def injected_error(status: int, message: str) -> Response:
    """Build the response of an injected fault in HubSpot's error shape."""
    if status == 429:
        # FaultMiddleware sets Retry-After from the knobs.
        return rate_limit_error(0)
    return crm_error(status, CATEGORY_BY_STATUS.get(status, "INTERNAL_ERROR"), message)


def create_crm_app(state: SandboxState) -> Starlette:
    """Build the CRM app on the shared sandbox state."""
    api = CrmApi(state)
    routes = [
        Route("/crm/v3/objects/contacts/batch/upsert", api.upsert_contacts, methods=["POST"]),
        Route(
            "/form-integrations/v1/submissions/forms/{form_guid}",
            api.list_submissions,
            methods=["GET"],
        ),
        Route("/_sandbox/contacts", api.list_contacts, methods=["GET"]),
        Route("/_sandbox/submissions", api.add_submission, methods=["POST"]),
        *control_routes(state, state.crm, api.extra_stats),
    ]
    middleware = [
        Middleware(FaultMiddleware, service=state.crm, routes=routes, error_response=injected_error)
    ]
    return Starlette(routes=routes, middleware=middleware)


class CrmApi:
    """Route handlers of the CRM."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state

    def _reject_request(self, request: Request) -> Response | None:
        """Return a 401 or 429 response when the request must not be processed."""
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ") if header.startswith("Bearer ") else ""
        if not secrets.compare_digest(token.encode(), self.state.crm_token.encode()):
            message = (
                "Authentication credentials not found or invalid. Send the private app token "
                "in an 'Authorization: Bearer <token>' header."
            )
            return crm_error(401, "INVALID_AUTHENTICATION", message)

        knobs = self.state.crm_knobs
        if not self.state.crm_limiter.allow(token, knobs.rate_limit_per_10s):
            return rate_limit_error(knobs.retry_after_seconds)
        return None

    async def upsert_contacts(self, request: Request) -> Response:
        """POST /crm/v3/objects/contacts/batch/upsert: create or update contacts by email."""
        if rejection := self._reject_request(request):
            return rejection
        started_at = utc_timestamp()
        try:
            body = await read_json(request)
        except ValueError:
            return crm_error(400, "VALIDATION_ERROR", "Invalid input JSON: the body is not JSON.")

        inputs = body.get("inputs") if isinstance(body, dict) else None
        if problem := validate_batch(inputs):
            return crm_error(400, "VALIDATION_ERROR", problem)

        results, errors = [], []
        for item in inputs:
            outcome = upsert_one(self.state.crm_store, item)
            if outcome.get("status") == "error":
                errors.append(outcome)
            else:
                results.append(outcome)
        return _batch_response(started_at, results, errors)

    async def list_submissions(self, request: Request) -> Response:
        """GET /form-integrations/v1/submissions/forms/{form_guid}: page through submissions."""
        if rejection := self._reject_request(request):
            return rejection
        form_guid = request.path_params["form_guid"]
        submissions = self.state.crm_store.submissions.get(form_guid)
        if submissions is None:
            return crm_error(404, "OBJECT_NOT_FOUND", f"Form '{form_guid}' was not found.")

        try:
            params = request.query_params
            limit = int_query_param(
                params, "limit", DEFAULT_SUBMISSION_LIMIT, 1, MAX_SUBMISSION_LIMIT
            )
            start = self._cursor_index(params.get("after"))
        except ValueError as exc:
            return crm_error(400, "VALIDATION_ERROR", str(exc))

        # The cursor is "<store prefix>.<index of the next submission>"; clients treat it as
        # opaque. A cursor from before a reset or restart is rejected rather than misread.
        prefix = self.state.crm_store.cursor_prefix
        body: dict[str, Any] = {"results": submissions[start : start + limit]}
        if start + limit < len(submissions):
            body["paging"] = {"next": {"after": f"{prefix}.{start + limit}"}}
        return JSONResponse(body)

    def _cursor_index(self, cursor: str | None) -> int:
        if not cursor:
            return 0
        prefix, _, index = cursor.partition(".")
        if prefix != self.state.crm_store.cursor_prefix or not index.isdigit():
            raise ValueError(f"paging cursor {cursor!r} is not valid for this form; start again")
        return int(index)

    async def list_contacts(self, request: Request) -> Response:
        """GET /_sandbox/contacts: every stored contact with its upsert count."""
        store = self.state.crm_store
        contacts = [
            {"id": c.id, "email": c.email, "properties": c.properties, "upserts": c.upserts}
            for c in store.contacts.values()
        ]
        return JSONResponse(
            {"count": len(contacts), "contacts": contacts, "upsert_inputs": store.upsert_inputs}
        )

    async def add_submission(self, request: Request) -> Response:
        """POST /_sandbox/submissions: store a form submission that a test writes by hand."""
        try:
            body = await read_json(request)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return control_error('The body must be {"form_guid": ..., "values": {...}}.')

        form_guid = body.get("form_guid", REFERRAL_FORM_GUID)
        values = body.get("values")
        if not isinstance(form_guid, str) or not form_guid:
            return control_error("'form_guid' must be a non-empty string.")
        if not isinstance(values, dict) or not all(
            isinstance(value, str) for value in values.values()
        ):
            return control_error("'values' must be an object of field names to strings.")

        submission = self.state.crm_store.add_submission(form_guid, values)
        return JSONResponse(submission, status_code=201)

    def extra_stats(self) -> dict[str, Any]:
        """Return the CRM counters added to /_sandbox/stats."""
        store = self.state.crm_store
        return {
            "contacts": len(store.contacts),
            "upsert_inputs": store.upsert_inputs,
            "submissions": store.submission_count(),
        }


def validate_batch(inputs: Any) -> str:
    """Return why the whole upsert batch is rejected, or "" when it may be processed."""
    if not isinstance(inputs, list):
        return "Invalid input JSON: 'inputs' must be a list of contact inputs."
    if len(inputs) > MAX_BATCH_INPUTS:
        return f"Too many inputs: got {len(inputs)}, the limit is {MAX_BATCH_INPUTS} per batch."

    seen: dict[str, str] = {}
    duplicates: list[str] = []
    for item in inputs:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            return "Invalid input JSON: each input must be an object with a string 'id'."
        id_property = item.get("idProperty")
        if id_property != "email":
            return f"Unsupported idProperty {id_property!r}: the sandbox upserts by 'email' only."
        key = item["id"].strip().lower()
        if key in seen and seen[key] not in duplicates:
            duplicates.append(seen[key])
        seen.setdefault(key, item["id"])

    if duplicates:
        return f"Duplicate IDs found in batch input: [{', '.join(duplicates)}]. IDs must be unique."
    return ""


def upsert_one(store: CrmStore, item: dict[str, Any]) -> dict[str, Any]:
    """Merge one input into the store, returning its result or its error."""
    email = item["id"].strip()
    properties, problem = _normalize_properties(item.get("properties", {}))
    if not is_valid_address(email):
        problem = f"'{email}' is not a valid email address."
    if problem:
        return {
            "status": "error",
            "category": "VALIDATION_ERROR",
            "message": f"Property values were not valid: {problem}",
            "context": {"ids": [item["id"]]},
        }

    key = email.lower()
    now = utc_timestamp()
    contact = store.contacts.get(key)
    is_new = contact is None
    if contact is None:
        contact = Contact(_new_contact_id(store, key), key, {}, now, now)
        store.contacts[key] = contact
    contact.properties.update(properties)
    contact.properties["email"] = key
    contact.updated_at = now
    contact.upserts += 1
    store.upsert_inputs += 1
    return _contact_result(contact, is_new)


def _normalize_properties(raw: Any) -> tuple[dict[str, str | None], str]:
    """Return property values as strings or None, or an empty dict and what is invalid."""
    if not isinstance(raw, dict):
        return {}, "'properties' must be an object."

    normalized: dict[str, str | None] = {}
    for name, value in raw.items():
        if value is None or isinstance(value, str):
            normalized[name] = value
        elif isinstance(value, bool):
            normalized[name] = "true" if value else "false"
        elif isinstance(value, int | float):
            normalized[name] = str(value)
        else:
            return {}, f"property '{name}' must be a string, a number, a boolean or null."
    return normalized, ""


def _new_contact_id(store: CrmStore, email: str) -> str:
    """Derive a numeric id from the email, so a contact gets the same id in every run."""
    digest = int(hashlib.sha256(email.encode()).hexdigest()[:12], 16)
    candidate = 10**10 + digest % (9 * 10**10)
    while str(candidate) in store.contact_ids:
        candidate += 1
    store.contact_ids.add(str(candidate))
    return str(candidate)


def _contact_result(contact: Contact, is_new: bool) -> dict[str, Any]:
    properties = {
        **contact.properties,
        "hs_object_id": contact.id,
        "createdate": contact.created_at,
        "lastmodifieddate": contact.updated_at,
    }
    return {
        "id": contact.id,
        "properties": properties,
        "createdAt": contact.created_at,
        "updatedAt": contact.updated_at,
        "archived": False,
        "new": is_new,
    }


def _batch_response(
    started_at: str, results: list[dict[str, Any]], errors: list[dict[str, Any]]
) -> JSONResponse:
    """Return a 200 response when every input succeeded, 207 for a mix and 400 when all failed."""
    completed_at = utc_timestamp()
    if errors and not results:
        message = f"All {len(errors)} inputs were invalid; see 'errors'."
        return crm_error(400, "VALIDATION_ERROR", message, numErrors=len(errors), errors=errors)

    body: dict[str, Any] = {"status": "COMPLETE", "results": results}
    if errors:
        body["numErrors"] = len(errors)
        body["errors"] = errors
    body["startedAt"] = started_at
    body["completedAt"] = completed_at
    return JSONResponse(body, status_code=207 if errors else 200)
