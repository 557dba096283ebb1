"""The /_sandbox/ routes that both services share: fault knobs, reset and request stats.

These routes need no token and see no injected faults, because only tests and the
benchmark call them, over loopback.
"""

from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from acquisition_assets.sandbox.knobs import KnobError, knobs_to_dict, update_knobs
from acquisition_assets.sandbox.parsing import read_json
from acquisition_assets.sandbox.state import SandboxState, ServiceState


def control_error(message: str, status: int = 400, **extra: Any) -> JSONResponse:
    """Build the error response of a /_sandbox/ route."""
    return JSONResponse({"error": message, **extra}, status_code=status)


def control_routes(
    state: SandboxState,
    service: ServiceState,
    extra_stats: Callable[[], dict[str, Any]],
) -> list[Route]:
    """Build the shared routes of one service; extra_stats adds service-specific counters."""

    async def get_faults(request: Request) -> JSONResponse:
        return JSONResponse(knobs_to_dict(service.knobs))

    async def post_faults(request: Request) -> JSONResponse:
        try:
            changes = await read_json(request)
        except ValueError:
            return control_error("The request body must be a JSON object of knob names to values.")
        try:
            update_knobs(service.knobs, changes)
        except KnobError as exc:
            return control_error(str(exc), valid_knobs=sorted(knobs_to_dict(service.knobs)))
        return JSONResponse(knobs_to_dict(service.knobs))

    async def post_reset(request: Request) -> JSONResponse:
        # Reset covers both services, because referral submissions on the CRM side come
        # from messages on the email side and must not outlive them.
        state.reset()
        return JSONResponse({"reset": True})

    async def get_stats(request: Request) -> JSONResponse:
        return JSONResponse({**service.stats.to_dict(), **extra_stats()})

    return [
        Route("/_sandbox/faults", get_faults, methods=["GET"]),
        Route("/_sandbox/faults", post_faults, methods=["POST"]),
        Route("/_sandbox/reset", post_reset, methods=["POST"]),
        Route("/_sandbox/stats", get_stats, methods=["GET"]),
    ]
