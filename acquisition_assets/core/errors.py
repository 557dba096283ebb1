"""Exceptions raised by the HTTP clients and the circuit breaker.

ApiError
 +-- ApiTransportError      connection failed or timed out; transient
 +-- ApiStatusError         the service responded with an error status
 |    +-- ApiClientError    4xx other than 408 and 429; permanent, the request is wrong
 |    +-- ApiServerError    5xx, 408 and 429; transient
 +-- RetryLaterError        the service asked to wait longer than the retry cap allows
 +-- CircuitOpenError       the breaker is open, so the call was not made
"""


class ApiError(Exception):
    """A call to an external API did not succeed."""

    transient = True


class ApiTransportError(ApiError):
    """The request failed before a response arrived."""


class ApiStatusError(ApiError):
    """The service responded with an error status."""

    def __init__(self, message: str, status: int, body: str = "", retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.body = body
        self.retry_after = retry_after


class ApiClientError(ApiStatusError):
    """A 4xx response other than 408 and 429: retrying the same request cannot help."""

    transient = False


class ApiServerError(ApiStatusError):
    """A 5xx, 408 or 429 answer."""


class RetryLaterError(ApiError):
    """The service asked for a wait longer than the configured cap, so the work is deferred."""

    def __init__(self, message: str, retry_after: float):
        super().__init__(message)
        self.retry_after = retry_after


class CircuitOpenError(ApiError):
    """The circuit breaker rejected the call without making it."""

    def __init__(self, message: str, breaker: str, retry_in: float | None = None):
        super().__init__(message)
        self.breaker = breaker
        self.retry_in = retry_in
