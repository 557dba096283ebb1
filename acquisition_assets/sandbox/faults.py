"""ASGI middleware that counts API requests and injects the faults that a service's knobs set.

Routes under /_sandbox/ pass through untouched, so tests can always read and change state.
Every wait uses asyncio.sleep, so a delayed request does not hold up the others.
"""

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from starlette.responses import Response
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from acquisition_assets.sandbox.state import ServiceState

CONTROL_PREFIX = "/_sandbox/"
# Status of a timeout_rate response, sent after the sleep in case the client is still waiting.
TIMEOUT_STATUS = 504

ErrorResponder = Callable[[int, str], Response]


class FaultMiddleware:
    """Count each API request, then respond with a fault or pass it on to the service.

    The order of checks is latency, outage, script, then the random rates. A script entry
    decides the request alone: a 2xx entry runs the service without rolling the rates.
    Each request that reaches the rates draws four numbers from the service's seeded
    generator, even for rates of 0, so that changing one rate does not shift the others.
    """

    def __init__(
        self,
        app: ASGIApp,
        service: ServiceState,
        routes: Sequence[BaseRoute],
        error_response: ErrorResponder,
    ) -> None:
        self.app = app
        self.service = service
        self.routes = routes
        self.error_response = error_response

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(CONTROL_PREFIX):
            await self.app(scope, receive, send)
            return

        stats = self.service.stats
        stats.begin(self._route_name(scope))
        status: int | None = None

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._dispatch(scope, receive, send_and_record)
        finally:
            stats.finish(status)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        knobs = self.service.knobs
        if knobs.latency_ms > 0:
            await asyncio.sleep(knobs.latency_ms / 1000)

        if knobs.outage:
            await self._reject(scope, receive, send, 503, "outage")
            return

        if knobs.script:
            scripted_status = knobs.script.pop(0)
            if 200 <= scripted_status < 300:
                await self.app(scope, receive, send)
            else:
                await self._reject(scope, receive, send, scripted_status, "script")
            return

        await self._dispatch_random(scope, receive, send)

    async def _dispatch_random(self, scope: Scope, receive: Receive, send: Send) -> None:
        knobs = self.service.knobs
        rng = self.service.rng
        timeout_draw, error_draw, rate_limit_draw, lost_draw = (rng.random() for _ in range(4))

        if timeout_draw < knobs.timeout_rate:
            # The request is never processed: the client should see its own timeout.
            await asyncio.sleep(knobs.timeout_seconds)
            await self._reject(scope, receive, send, TIMEOUT_STATUS, "timeout")
        elif error_draw < knobs.error_rate:
            await self._reject(scope, receive, send, knobs.error_status, "error_rate")
        elif rate_limit_draw < knobs.rate_limit_rate:
            await self._reject(scope, receive, send, 429, "rate_limit_rate")
        elif lost_draw < knobs.lost_response_rate:
            await self._lose_response(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _lose_response(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Process the request and store its effect, then hold the response for timeout_seconds."""
        self.service.stats.faults["lost_response"] += 1
        held_messages: list[Message] = []

        async def hold(message: Message) -> None:
            held_messages.append(message)

        await self.app(scope, receive, hold)
        await asyncio.sleep(self.service.knobs.timeout_seconds)
        for message in held_messages:
            await send(message)

    async def _reject(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        status: int,
        fault: str,
    ) -> None:
        """Send an injected error response; 429 and 503 responses carry Retry-After."""
        self.service.stats.faults[fault] += 1
        response = self.error_response(status, f"Sandbox injected HTTP {status} ({fault}).")
        response.headers["X-Sandbox-Fault"] = fault
        if status in (429, 503):
            response.headers["Retry-After"] = str(self.service.knobs.retry_after_seconds)
        await response(scope, receive, send)

    def _route_name(self, scope: Scope) -> str:
        """Return 'METHOD /path/template' of the matching route, or 'METHOD unmatched'."""
        method = scope["method"]
        partial: Any = None
        for route in self.routes:
            match, _ = route.matches(scope)
            if match == Match.FULL:
                return f"{method} {route.path}"
            if match == Match.PARTIAL and partial is None:
                partial = route
        if partial is not None:
            return f"{method} {partial.path}"
        return f"{method} unmatched"
