"""A client-side limit on requests per time window, so a client stays under an API's quota."""

import threading
import time
from collections import deque
from collections.abc import Callable


class RequestRateLimiter:
    """Lets at most `max_requests` start in any `window_seconds`; callers over it wait.

    NOTE: the limit applies within one process. Steps that call the same API at the same time
    from several processes share the provider's quota without coordinating.
    """

    def __init__(
        self,
        max_requests: int,
        window_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if max_requests < 1:
            raise ValueError(f"max_requests is {max_requests}; it must be 1 or more")
        if window_seconds <= 0:
            raise ValueError(f"window_seconds is {window_seconds}; it must be above 0")
        self.max_requests = max_requests
        self.window_seconds = window_seconds
        self._clock = clock
        self._sleep = sleep
        self._starts: deque[float] = deque()
        self._lock = threading.Lock()
        self.waited_seconds = 0.0

    def acquire(self) -> None:
        """Block until one more request fits in the window, then count it."""
        while True:
            with self._lock:
                now = self._clock()
                while self._starts and self._starts[0] <= now - self.window_seconds:
                    self._starts.popleft()
                if len(self._starts) < self.max_requests:
                    self._starts.append(now)
                    return
                wait = self._starts[0] + self.window_seconds - now
                self.waited_seconds += wait
            self._sleep(wait)
