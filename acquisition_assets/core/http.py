"""One pooled HTTP session per client, with safe retries, a breaker and per-call logging."""

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import NewConnectionError
from urllib3.util.retry import Retry

from acquisition_assets.core.breaker import CircuitBreaker
from acquisition_assets.core.errors import (
    ApiClientError,
    ApiError,
    ApiServerError,
    ApiTransportError,
    CircuitOpenError,
    RetryLaterError,
)
from acquisition_assets.core.ratelimit import RequestRateLimiter

logger = logging.getLogger(__name__)

# Statuses that mean the service is unhealthy or busy; every other 4xx means a bad request.
TRANSIENT_CLIENT_STATUSES = frozenset({408, 429})
# 429 (RFC 6585, section 4) and 503 (RFC 9110, section 15.6.4) mean the server did not handle
# the request, so even a request that is not idempotent may be sent again, and their
# Retry-After is honoured. Other statuses may come after the request took effect.
UNPROCESSED_STATUSES = frozenset({429, 503})


@dataclass(frozen=True)
class RetryPolicy:
    """When and how long to wait before trying a request again."""

    max_attempts: int = 4
    backoff_base_seconds: float = 0.5
    backoff_max_seconds: float = 8.0
    retry_after_cap_seconds: float = 30.0

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Return a full-jitter exponential delay for the given 1-based attempt."""
        ceiling = min(self.backoff_max_seconds, self.backoff_base_seconds * 2 ** (attempt - 1))
        return rng.uniform(0, ceiling)


@dataclass
class HttpStats:
    """Counters of one client since it was created."""

    requests: int = 0
    retries: int = 0
    errors: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def parse_retry_after(value: str | None) -> float | None:
    """Return the wait that a Retry-After header requests, in seconds (delta or HTTP date)."""
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(moment.timestamp() - time.time(), 0.0)


def was_not_processed(error: ApiError) -> bool:
    """Return whether the service certainly did not act on the request that raised `error`."""
    if isinstance(error, ApiTransportError):
        return _never_sent(error.__cause__)
    return isinstance(error, ApiServerError) and error.status in UNPROCESSED_STATUSES


def _never_sent(error: BaseException | None) -> bool:
    """Return whether a transport error happened before any byte of the request left."""
    if isinstance(error, requests.exceptions.ConnectTimeout):
        return True
    if not isinstance(error, requests.exceptions.ConnectionError):
        return False
    reason = error.args[0] if error.args else None
    reason = getattr(reason, "reason", reason)
    return isinstance(reason, NewConnectionError)


class JsonApiClient:
    """Sends JSON requests to one base URL through a pooled session and a circuit breaker.

    A request is retried with backoff and jitter on 5xx, 408, 429, timeouts and connection
    errors only when the caller marks it idempotent. A request the service certainly did not
    act on (no connection was made, or the response was 429 or 503) is retried in any case. The
    Retry-After of a 429 or 503 replaces the backoff; one above the cap raises
    RetryLaterError instead of holding the worker.
    """

    def __init__(
        self,
        name: str,
        base_url: str,
        headers: Mapping[str, str],
        timeout_seconds: float,
        pool_size: int,
        breaker: CircuitBreaker,
        retry_policy: RetryPolicy = RetryPolicy(),
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        rate_limiter: RequestRateLimiter | None = None,
    ):
        self.name = name
        self.rate_limiter = rate_limiter
        self.base_url = base_url.rstrip("/")
        self.timeout_seconds = timeout_seconds
        self.breaker = breaker
        self.retry_policy = retry_policy
        self.pool_size = pool_size
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._stats = HttpStats()
        self._stats_lock = threading.Lock()
        self.session = requests.Session()
        self.session.headers.update({"Accept": "application/json", **headers})
        # Retries are done by `request`, because only its caller can tell which calls are
        # idempotent. The pool holds a connection per worker thread, so urllib3 drops none
        # with 'Connection pool is full'.
        adapter = HTTPAdapter(
            pool_connections=1,
            pool_maxsize=pool_size,
            max_retries=Retry(total=0, raise_on_status=False),
        )
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self._adapter = adapter

    def close(self) -> None:
        self.session.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        idempotent: bool,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        ok_statuses: frozenset[int] = frozenset({200, 201, 202, 204, 207}),
        before_retry: Callable[[], None] | None = None,
    ) -> requests.Response:
        """Send one request, retrying where safe, and return the response.

        `before_retry` runs after each backoff wait and before the request is sent again.
        An exception it raises ends the request without sending it.
        """
        attempt = 1
        while True:
            try:
                return self.breaker.call(
                    lambda: self._send(method, path, json, params, ok_statuses)
                )
            except CircuitOpenError:
                raise
            except ApiError as error:
                delay = self._retry_delay(error, attempt, idempotent)
                if delay is None:
                    raise
                reason = str(error)
            with self._stats_lock:
                self._stats.retries += 1
            logger.info(
                "%s %s %s failed (%s), attempt %d; retrying in %.2f s",
                self.name,
                method,
                path,
                reason,
                attempt,
                delay,
            )
            self._sleep(delay)
            if before_retry is not None:
                before_retry()
            attempt += 1

    def _retry_delay(self, error: ApiError, attempt: int, idempotent: bool) -> float | None:
        """Return the wait before the next attempt, or None when the error must be raised."""
        if not error.transient:
            return None
        unprocessed = was_not_processed(error)
        if not (idempotent or unprocessed):
            return None
        retry_after = None
        if isinstance(error, ApiServerError) and error.status in UNPROCESSED_STATUSES:
            retry_after = error.retry_after
        cap = self.retry_policy.retry_after_cap_seconds
        if retry_after is not None and retry_after > cap:
            raise RetryLaterError(
                f"{self.name} asked to retry after {retry_after:.0f} s, more than the "
                f"{cap:.0f} s cap; deferring the work",
                retry_after=retry_after,
            ) from error
        if attempt >= self.retry_policy.max_attempts:
            return None
        if retry_after is not None:
            return retry_after
        return self.retry_policy.backoff(attempt, self._rng)

    def _send(
        self,
        method: str,
        path: str,
        json: Any,
        params: Mapping[str, Any] | None,
        ok_statuses: frozenset[int],
    ) -> requests.Response:
        url = f"{self.base_url}{path}"
        if self.rate_limiter is not None:
            self.rate_limiter.acquire()
        started = time.perf_counter()
        try:
            response = self.session.request(
                method, url, json=json, params=params, timeout=self.timeout_seconds
            )
        except requests.exceptions.Timeout as error:
            self._count(None, started)
            raise ApiTransportError(
                f"{self.name} {method} {path} timed out after {self.timeout_seconds} s"
            ) from error
        except requests.exceptions.RequestException as error:
            self._count(None, started)
            raise ApiTransportError(f"{self.name} {method} {path} failed: {error}") from error
        self._count(response.status_code, started)
        logger.debug(
            "%s %s %s -> %d in %.3f s",
            self.name,
            method,
            path,
            response.status_code,
            time.perf_counter() - started,
        )
        if response.status_code in ok_statuses:
            return response
        raise self._status_error(method, path, response)

    def _status_error(self, method: str, path: str, response: requests.Response) -> ApiError:
        status = response.status_code
        body = response.text[:1000]
        message = f"{self.name} {method} {path} responded with HTTP {status}: {body[:200]}"
        if 400 <= status < 500 and status not in TRANSIENT_CLIENT_STATUSES:
            return ApiClientError(message, status, body)
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        return ApiServerError(message, status, body, retry_after)

    def _count(self, status: int | None, started: float) -> None:
        with self._stats_lock:
            self._stats.requests += 1
            self._stats.seconds += time.perf_counter() - started
            key = str(status) if status is not None else "transport_error"
            self._stats.by_status[key] = self._stats.by_status.get(key, 0) + 1
            if status is None or status >= 400:
                self._stats.errors += 1

    def stats(self) -> dict[str, Any]:
        """Return request counters and connection pool figures."""
        connections = 0
        pooled_requests = 0
        idle = 0
        for pool in list(self._adapter.poolmanager.pools._container.values()):
            connections += pool.num_connections
            pooled_requests += pool.num_requests
            idle += pool.pool.qsize() if pool.pool is not None else 0
        with self._stats_lock:
            return {
                "requests": self._stats.requests,
                "retries": self._stats.retries,
                "errors": self._stats.errors,
                "by_status": dict(self._stats.by_status),
                "seconds": round(self._stats.seconds, 4),
                "pool_maxsize": self.pool_size,
                "connections_opened": connections,
                "connections_reused": max(pooled_requests - connections, 0),
                "pool_idle_slots": idle,
                "rate_limit_wait_seconds": round(
                    self.rate_limiter.waited_seconds if self.rate_limiter else 0.0, 4
                ),
            }
