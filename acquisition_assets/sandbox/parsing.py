"""Parsing of request bodies and query parameters shared by the sandbox apps."""

import json
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request


async def read_json(request: Request) -> Any:
    """Return the parsed JSON body, raising ValueError when it is not valid UTF-8 JSON."""
    body = await request.body()
    return json.loads(body.decode("utf-8"))


def int_query_param(
    params: Mapping[str, str], name: str, default: int | None, minimum: int, maximum: int | None
) -> int:
    """Parse an integer query parameter, raising ValueError with a message naming it.

    A default of None makes the parameter required.
    """
    raw = params.get(name)
    if raw is None:
        if default is None:
            raise ValueError(f"The '{name}' query parameter is required.")
        return default

    bounds = f"from {minimum} to {maximum}" if maximum is not None else f"{minimum} or more"
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(
            f"The '{name}' query parameter must be an integer {bounds}; got '{raw}'."
        ) from None
    if value < minimum or (maximum is not None and value > maximum):
        raise ValueError(f"The '{name}' query parameter must be {bounds}; got {value}.")
    return value
