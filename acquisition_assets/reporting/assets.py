"""The acquisition_report and performance_metrics assets."""

import json
from typing import Any

import dagster as dg
from sqlalchemy import select

from acquisition_assets.core.breaker import BreakerSnapshot
from acquisition_assets.core.clock import as_utc, utcnow
from acquisition_assets.core.database import AcquisitionDatabase
from acquisition_assets.core.schema import (
    acquisition_reports,
    circuit_breaker_transitions,
    circuit_breakers,
    performance_reports,
    step_metrics,
)
from acquisition_assets.core.steps import StepRecorder
from acquisition_assets.reporting.funnel import funnel_counts, render_report
from acquisition_assets.settings import PipelineSettings

BREAKER_STATE_CODES = {"closed": 0, "half_open": 1, "open": 2}


@dg.asset(
    group_name="reporting",
    deps=["crm_sync"],
    kinds={"sql"},
    description="The funnel from intake to CRM, as a table and a chart.",
)
def acquisition_report(
    context: dg.AssetExecutionContext, database: AcquisitionDatabase, settings: PipelineSettings
) -> dg.MaterializeResult:
    step = StepRecorder(context, database, settings)
    counts = funnel_counts(database)
    markdown = render_report(counts)
    with database.begin(writes=["acquisition_reports"]) as connection:
        connection.execute(
            acquisition_reports.insert().values(
                run_id=context.run.run_id,
                generated_at=utcnow(),
                funnel=json.dumps(counts),
                markdown=markdown,
            )
        )
    return step.finish(
        counts["leads"],
        {
            "report": dg.MetadataValue.md(markdown),
            **{name: dg.MetadataValue.int(value) for name, value in counts.items()},
        },
    )


def _breakers(database: AcquisitionDatabase) -> list[BreakerSnapshot]:
    with database.connect() as connection:
        rows = connection.execute(select(circuit_breakers).order_by(circuit_breakers.c.name)).all()
    return [
        BreakerSnapshot(
            r.name, r.state, r.failure_count, r.opened_at, r.probe_started_at, r.last_error
        )
        for r in rows
    ]


def run_figures(database: AcquisitionDatabase, run_id: str) -> dict[str, Any]:
    """Collect the run's figures from the step records that every asset stored."""
    with database.connect() as connection:
        steps = connection.execute(
            select(step_metrics).where(step_metrics.c.run_id == run_id).order_by(step_metrics.c.id)
        ).all()
        transitions = connection.execute(
            select(circuit_breaker_transitions.c.name, circuit_breaker_transitions.c.to_state)
        ).all()
    per_asset: dict[str, float] = {}
    rows_by_asset: dict[str, int] = {}
    cache_hits = cache_misses = cache_size = 0
    http: dict[str, dict[str, float]] = {}
    for record in steps:
        per_asset[record.asset_key] = round(record.duration_seconds, 4)
        rows_by_asset[record.asset_key] = record.rows_processed
        figures = json.loads(record.figures)
        cache_hits += figures["cache_hits"]
        cache_misses += figures["cache_misses"]
        cache_size = max(cache_size, figures["cache_size"])
        for client, stats in figures["http"].items():
            totals = http.setdefault(client, {})
            for name in (
                "requests",
                "retries",
                "errors",
                "seconds",
                "connections_opened",
                "connections_reused",
            ):
                totals[name] = totals.get(name, 0) + stats.get(name, 0)
            totals["pool_maxsize"] = max(
                totals.get("pool_maxsize", 0), stats.get("pool_maxsize", 0)
            )
    started = min((as_utc(r.started_at) for r in steps), default=utcnow())
    wall_seconds = (utcnow() - started).total_seconds()
    busy_seconds = sum(per_asset.values())
    leads_processed = rows_by_asset.get("new_leads", 0)
    opened = {}
    for name, to_state in transitions:
        if to_state == "open":
            opened[name] = opened.get(name, 0) + 1
    breakers = {
        b.name: {
            "state": b.state,
            "state_code": BREAKER_STATE_CODES.get(b.state, -1),
            "failure_count": b.failure_count,
            "times_opened": opened.get(b.name, 0),
        }
        for b in _breakers(database)
    }
    lookups = cache_hits + cache_misses
    return {
        "run_id": run_id,
        "seconds_per_asset": per_asset,
        "rows_per_asset": rows_by_asset,
        "total_step_seconds": round(busy_seconds, 4),
        "wall_seconds": round(wall_seconds, 4),
        "cache": {
            "hits": cache_hits,
            "misses": cache_misses,
            "size": cache_size,
            "hit_ratio": round(cache_hits / lookups, 4) if lookups else 0.0,
        },
        "breakers": breakers,
        "http": http,
        "leads_per_second": round(leads_processed / busy_seconds, 2) if busy_seconds else 0.0,
    }


def figures_metadata(figures: dict[str, Any]) -> dict[str, Any]:
    """Flatten the figures into numeric metadata, which the UI plots across runs."""
    metadata: dict[str, Any] = {
        "total_step_seconds": dg.MetadataValue.float(figures["total_step_seconds"]),
        "wall_seconds": dg.MetadataValue.float(figures["wall_seconds"]),
        "leads_per_second": dg.MetadataValue.float(figures["leads_per_second"]),
        "cache_hits": dg.MetadataValue.int(figures["cache"]["hits"]),
        "cache_misses": dg.MetadataValue.int(figures["cache"]["misses"]),
        "cache_size": dg.MetadataValue.int(figures["cache"]["size"]),
        "cache_hit_ratio": dg.MetadataValue.float(figures["cache"]["hit_ratio"]),
    }
    for asset, seconds in figures["seconds_per_asset"].items():
        metadata[f"seconds_{asset}"] = dg.MetadataValue.float(seconds)
    for name, breaker in figures["breakers"].items():
        metadata[f"breaker_{name}_state"] = dg.MetadataValue.int(breaker["state_code"])
        metadata[f"breaker_{name}_failures"] = dg.MetadataValue.int(breaker["failure_count"])
        metadata[f"breaker_{name}_times_opened"] = dg.MetadataValue.int(breaker["times_opened"])
    for client, stats in figures["http"].items():
        for name, value in stats.items():
            metadata[f"http_{client}_{name}"] = dg.MetadataValue.float(float(value))
    metadata["figures"] = dg.MetadataValue.json(figures)
    return metadata


@dg.asset(
    group_name="reporting",
    deps=["acquisition_report"],
    kinds={"sql"},
    description="Time per asset, cache, breaker and HTTP pool figures and throughput of this run.",
)
def performance_metrics(
    context: dg.AssetExecutionContext, database: AcquisitionDatabase, settings: PipelineSettings
) -> dg.MaterializeResult:
    step = StepRecorder(context, database, settings)
    # The same cached counts acquisition_report read: hits when both run in one process.
    funnel = funnel_counts(database)
    figures = run_figures(database, context.run.run_id)
    figures["funnel"] = funnel
    # This step's own lookups are not in step_metrics yet, because finish() stores them.
    hits, misses = step.cache_counts()
    cache = figures["cache"]
    cache["hits"] += hits
    cache["misses"] += misses
    lookups = cache["hits"] + cache["misses"]
    cache["hit_ratio"] = round(cache["hits"] / lookups, 4) if lookups else 0.0
    with database.begin(writes=["performance_reports"]) as connection:
        connection.execute(
            performance_reports.insert().values(
                run_id=context.run.run_id, generated_at=utcnow(), figures=json.dumps(figures)
            )
        )
    context.log.info(
        "performance_metrics: %d steps, %.2f s in steps, %.2f leads/s",
        len(figures["seconds_per_asset"]),
        figures["total_step_seconds"],
        figures["leads_per_second"],
    )
    return step.finish(len(figures["seconds_per_asset"]), figures_metadata(figures))
