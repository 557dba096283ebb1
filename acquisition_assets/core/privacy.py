"""Masking of personal data before it reaches logs or materialization metadata."""

import re

_EMAIL = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+)")


def mask_email(address: str | None) -> str:
    """Return the address with its local part hidden but its first character: a***@example.com."""
    if not address or "@" not in address:
        return address or ""
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}"


def mask_emails_in(text: str) -> str:
    """Mask every email address inside free text, such as an error message."""
    return _EMAIL.sub(r"\1***@\2", text)
