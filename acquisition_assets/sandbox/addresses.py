"""Email address checks that both sandbox services apply to recipients and contact ids."""

from email.utils import parseaddr


def extract_address(value: str) -> str:
    """Return the bare address of a 'Name <addr>' or plain 'addr' value, stripped."""
    _, address = parseaddr(value)
    return address.strip() or value.strip()


def is_valid_address(address: str) -> bool:
    """Return whether the sandbox treats the address as deliverable.

    The address needs a non-empty local part and domain around its last '@' and no
    whitespace. Domains under the reserved .invalid top-level domain are rejected, so
    tests can produce invalid recipients on purpose.
    """
    if not address or any(char.isspace() for char in address) or "@" not in address:
        return False

    local, domain = address.rsplit("@", 1)
    domain = domain.lower().rstrip(".")
    if not local or not domain:
        return False
    return domain != "invalid" and not domain.endswith(".invalid")
