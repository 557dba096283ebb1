"""Per-step bookkeeping: timing, cache and HTTP figures stored for performance_metrics."""

import json
import time
from typing import Any

import dagster as dg

from acquisition_assets.core.clock import utcnow
from acquisition_assets.core.database import AcquisitionDatabase
from acquisition_assets.core.http import JsonApiClient
from acquisition_assets.core.schema import step_metrics
from acquisition_assets.settings import PipelineSettings

PREVIEW_ROWS = 10


class StepRecorder:
    """Measures one asset's step and stores its figures in step_metrics.

    Steps may run in separate processes, so figures go through the database rather than
    memory: performance_metrics reads them back by run id.
    """

    def __init__(
        self,
        context: dg.AssetExecutionContext,
        database: AcquisitionDatabase,
        settings: PipelineSettings,
    ):
        self.context = context
        self.database = database
        database.set_caching(settings.enable_caching)
        self._started_at = utcnow()
        self._started = time.perf_counter()
        self._cache_before = database.cache_stats()
        self._clients: list[JsonApiClient] = []

    def cache_counts(self) -> tuple[int, int]:
        """Return the cache hits and misses of this step so far."""
        now = self.database.cache_stats()
        return now.hits - self._cache_before.hits, now.misses - self._cache_before.misses

    def track(self, client: JsonApiClient) -> None:
        """Include an HTTP client's figures in this step's record."""
        self._clients.append(client)

    def finish(self, rows_processed: int, metadata: dict[str, Any]) -> dg.MaterializeResult:
        """Store the step's figures and return the materialization with timing metadata."""
        duration = time.perf_counter() - self._started
        cache = self.database.cache_stats()
        http = {client.name: client.stats() for client in self._clients}
        figures = {
            "cache_hits": cache.hits - self._cache_before.hits,
            "cache_misses": cache.misses - self._cache_before.misses,
            "cache_size": cache.size,
            "http": http,
        }
        asset_key = self.context.asset_key.to_user_string()
        with self.database.begin() as connection:
            connection.execute(
                step_metrics.insert().values(
                    run_id=self.context.run.run_id,
                    asset_key=asset_key,
                    started_at=self._started_at,
                    duration_seconds=duration,
                    rows_processed=rows_processed,
                    figures=json.dumps(figures),
                )
            )
        for client in self._clients:
            client.close()
        return dg.MaterializeResult(
            # The asset's own keys come last: performance_metrics reports the run's cache
            # totals under the same names as this step's counters.
            metadata={
                "rows_processed": dg.MetadataValue.int(rows_processed),
                "duration_seconds": dg.MetadataValue.float(round(duration, 4)),
                "cache_hits": dg.MetadataValue.int(figures["cache_hits"]),
                "cache_misses": dg.MetadataValue.int(figures["cache_misses"]),
                **metadata,
            }
        )


def record_deferral(
    context: dg.AssetExecutionContext,
    settings: PipelineSettings,
    what: str,
    reason: str | None,
    metadata: dict[str, Any],
) -> None:
    """Log deferred work and add its reason to `metadata`, or fail when the settings ask to.

    `what` names the deferred work ("reading sign-ups"); `reason` is None when nothing was
    deferred.
    """
    if not reason:
        return
    asset = context.asset_key.to_user_string()
    context.log.warning("%s: %s deferred: %s", asset, what, reason)
    if settings.fail_on_open_circuit:
        raise dg.Failure(description=f"{asset}: {what} deferred: {reason}")
    metadata["deferred_because"] = dg.MetadataValue.text(reason[:500])


def preview(rows: list[dict[str, Any]], columns: list[str]) -> dg.MetadataValue:
    """Render the first rows as a Markdown table."""
    header = "| " + " | ".join(columns) + " |"
    divider = "| " + " | ".join("---" for _ in columns) + " |"
    lines = [header, divider]
    for row in rows[:PREVIEW_ROWS]:
        cells = [str(row.get(column, "")).replace("|", "\\|") for column in columns]
        lines.append("| " + " | ".join(cells) + " |")
    if not rows:
        lines.append("| " + " | ".join("" for _ in columns) + " |")
    return dg.MetadataValue.md("\n".join(lines))
