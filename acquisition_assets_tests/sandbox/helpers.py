"""Request helpers shared by the sandbox tests; every call sets a timeout."""

from typing import Any

import requests

from acquisition_assets.sandbox.process import SandboxProcess

REQUEST_TIMEOUT_SECONDS = 5.0
SENDER = "nurture@example.com"


def email_headers(sandbox: SandboxProcess) -> dict[str, str]:
    return {"X-Postmark-Server-Token": sandbox.email_token}


def crm_headers(sandbox: SandboxProcess) -> dict[str, str]:
    return {"Authorization": f"Bearer {sandbox.crm_token}"}


def make_message(to: str, **fields: Any) -> dict[str, Any]:
    message = {
        "From": SENDER,
        "To": to,
        "Subject": "Welcome",
        "TextBody": "Hello, see https://example.com/start",
        "Tag": "welcome",
        "Metadata": {},
        "MessageStream": "outbound",
    }
    message.update(fields)
    return message


def send_batch(
    sandbox: SandboxProcess, messages: list[Any], timeout: float = REQUEST_TIMEOUT_SECONDS
):
    return requests.post(
        f"{sandbox.email_url}/email/batch",
        json=messages,
        headers=email_headers(sandbox),
        timeout=timeout,
    )


def upsert(sandbox: SandboxProcess, inputs: Any) -> requests.Response:
    return requests.post(
        f"{sandbox.crm_url}/crm/v3/objects/contacts/batch/upsert",
        json={"inputs": inputs},
        headers=crm_headers(sandbox),
        timeout=REQUEST_TIMEOUT_SECONDS,
    )


def contact_input(email: str, **properties: Any) -> dict[str, Any]:
    return {"idProperty": "email", "id": email, "properties": properties}


def get_events(sandbox: SandboxProcess, **params: Any) -> dict[str, Any]:
    response = requests.get(
        f"{sandbox.email_url}/webhook-events",
        params=params,
        headers=email_headers(sandbox),
        timeout=REQUEST_TIMEOUT_SECONDS,
    )
    response.raise_for_status()
    return response.json()
