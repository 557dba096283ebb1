"""Entry point of the processes that call the email API together, with light imports."""

import threading
from collections.abc import Callable
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier

from acquisition_assets.core.database import AcquisitionDatabase
from acquisition_assets.core.errors import ApiError
from acquisition_assets.nurturing.email_client import PostmarkClient, PostmarkEmailApi
from acquisition_assets.settings import PipelineSettings

RECOVERY_SECONDS = 60.0


def open_email_client(
    database_url: str, email_url: str, token: str, threads: int, **limits: object
) -> PostmarkClient:
    """Open the email client the pipeline uses, with one attempt per call."""
    api = PostmarkEmailApi(
        api_url=email_url,
        server_token=token,
        max_attempts=1,
        recovery_timeout_seconds=RECOVERY_SECONDS,
        **limits,
    )
    return api.open(AcquisitionDatabase(url=database_url), PipelineSettings(max_workers=threads))


def outcome_of(call: Callable[[], object]) -> str:
    """Return "ok" or the name of the API error that `call` raised."""
    try:
        call()
    except ApiError as error:
        return type(error).__name__
    return "ok"


def call_together(
    database_url: str, email_url: str, token: str, threads: int, barrier: Barrier, results: Queue
) -> None:
    """Start `threads` calls to the email API once every process is ready; report outcomes."""
    client = open_email_client(database_url, email_url, token, threads)
    start = threading.Event()
    outcomes: list[str] = []

    def call() -> None:
        start.wait()
        outcomes.append(outcome_of(lambda: client.fetch_events(0)))

    workers = [threading.Thread(target=call) for _ in range(threads)]
    for worker in workers:
        worker.start()
    barrier.wait()
    start.set()
    for worker in workers:
        worker.join()
    results.put(outcomes)
