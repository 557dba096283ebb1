"""Assets that train the scoring model, score leads and put them into segments."""

import hashlib
import json
from typing import Any

import dagster as dg
from sqlalchemy import bindparam, func, or_, select, update

from acquisition_assets.core.clock import utcnow
from acquisition_assets.core.database import AcquisitionDatabase
from acquisition_assets.core.schema import lead_scoring_models, leads
from acquisition_assets.core.sql import chunked, insert_ignore
from acquisition_assets.core.steps import StepRecorder, preview
from acquisition_assets.scoring.features import FEATURE_COLUMNS
from acquisition_assets.scoring.model import NotEnoughLabels, ScoringModel, train_model
from acquisition_assets.scoring.points import points_score
from acquisition_assets.settings import PipelineSettings

HOT_THRESHOLD = 70.0
WARM_THRESHOLD = 40.0
# Seconds a cached model lookup stays valid; a new model version invalidates it at once.
MODEL_CACHE_TTL_SECONDS = 300.0


def latest_model(database: AcquisitionDatabase) -> ScoringModel | None:
    """Return the newest stored model, or None when none was trained."""
    rows = database.cached_rows(
        "latest_model",
        select(lead_scoring_models).order_by(lead_scoring_models.c.id.desc()).limit(1),
        tables=["lead_scoring_models"],
        ttl_seconds=MODEL_CACHE_TTL_SECONDS,
    )
    if not rows:
        return None
    row = rows[0]
    return ScoringModel(row["version"], json.loads(row["coefficients"]), row["intercept"])


@dg.asset(
    group_name="scoring",
    deps=["new_leads"],
    kinds={"scikitlearn", "sql"},
    description="Logistic regression trained on leads whose outcome is known.",
)
def lead_scoring_model(
    context: dg.AssetExecutionContext, database: AcquisitionDatabase, settings: PipelineSettings
) -> dg.MaterializeResult:
    step = StepRecorder(context, database, settings)
    columns = [leads.c[name] for name in FEATURE_COLUMNS]
    with database.connect() as connection:
        labelled = connection.execute(
            select(leads.c.id, *columns, leads.c.converted)
            .where(leads.c.converted.is_not(None))
            .order_by(leads.c.id)
        ).all()
    # Retrain only when the labelled set changed: rescoring every lead on each run would
    # also push every contact to the CRM again.
    training_key = _training_key(labelled)
    with database.connect() as connection:
        current = connection.execute(
            select(lead_scoring_models.c.version)
            .where(lead_scoring_models.c.training_key == training_key)
            .order_by(lead_scoring_models.c.id.desc())
            .limit(1)
        ).scalar_one_or_none()
    if current is not None:
        context.log.info("lead_scoring_model: labelled leads unchanged; keeping %s", current)
        return step.finish(
            0,
            {
                "trained": dg.MetadataValue.bool(False),
                "model_version": dg.MetadataValue.text(current),
                "reason": dg.MetadataValue.text(
                    "the labelled leads did not change since the last training"
                ),
            },
        )
    try:
        result = train_model(labelled)
    except NotEnoughLabels as error:
        context.log.warning("lead_scoring_model: not trained: %s; points scoring applies", error)
        return step.finish(
            len(labelled),
            {"trained": dg.MetadataValue.bool(False), "reason": dg.MetadataValue.text(str(error))},
        )

    model = result.model
    with database.begin(writes=["lead_scoring_models"]) as connection:
        known = connection.execute(
            select(lead_scoring_models.c.id).where(lead_scoring_models.c.version == model.version)
        ).first()
        if known is None:
            # A run training the same labelled set at the same time may store it first.
            insert_ignore(
                connection,
                lead_scoring_models,
                [
                    {
                        "version": model.version,
                        "training_key": training_key,
                        "trained_at": utcnow(),
                        "training_rows": result.training_rows,
                        "positive_rows": result.positive_rows,
                        "coefficients": json.dumps(model.coefficients, sort_keys=True),
                        "intercept": model.intercept,
                        "evaluation": json.dumps({"holdout_auc": result.holdout_auc}),
                    }
                ],
                ["version"],
            )
    top = sorted(model.coefficients.items(), key=lambda item: abs(item[1]), reverse=True)[:10]
    return step.finish(
        result.training_rows,
        {
            "trained": dg.MetadataValue.bool(True),
            "model_version": dg.MetadataValue.text(model.version),
            "new_version": dg.MetadataValue.bool(known is None),
            "training_rows": dg.MetadataValue.int(result.training_rows),
            "positive_rows": dg.MetadataValue.int(result.positive_rows),
            "holdout_auc": dg.MetadataValue.float(result.holdout_auc or 0.0),
            "top_coefficients": dg.MetadataValue.json(dict(top)),
        },
    )


def _training_key(labelled: list[Any]) -> str:
    """Identify a labelled set by its lead ids and outcomes."""
    digest = hashlib.sha256()
    for lead in labelled:
        digest.update(f"{lead.id}:{int(bool(lead.converted))};".encode())
    return digest.hexdigest()


def _score_rows(rows: list[Any], model: ScoringModel | None) -> list[dict[str, Any]]:
    now = utcnow()
    updates = []
    for lead in rows:
        if model is not None:
            score, reasons = model.score(lead)
            method, version = "model", model.version
        else:
            score, reasons = points_score(lead)
            method, version = "points", None
        updates.append(
            {
                "lead_id": lead.id,
                "new_score": score,
                "new_method": method,
                "new_version": version,
                "new_reasons": json.dumps(reasons, sort_keys=True),
                "new_scored_at": now,
            }
        )
    return updates


@dg.asset(
    group_name="scoring",
    deps=["new_leads", "lead_scoring_model"],
    kinds={"sql"},
    description="A 0-100 score per lead with the reasons behind it.",
)
def scored_leads(
    context: dg.AssetExecutionContext, database: AcquisitionDatabase, settings: PipelineSettings
) -> dg.MaterializeResult:
    step = StepRecorder(context, database, settings)
    model = latest_model(database) if settings.enable_ml_scoring else None
    wanted_method = "model" if model else "points"
    stale = or_(
        leads.c.scored_at.is_(None),
        leads.c.last_engaged_at > leads.c.scored_at,
        leads.c.score_method != wanted_method,
        leads.c.model_version != model.version if model else leads.c.model_version.is_not(None),
    )
    columns = [leads.c.id, *(leads.c[name] for name in FEATURE_COLUMNS)]
    with database.connect() as connection:
        rows = connection.execute(
            select(*columns).where(stale).order_by(leads.c.id).limit(settings.max_leads_per_run)
        ).all()
    updates = _score_rows(rows, model)
    statement = (
        update(leads)
        .where(leads.c.id == bindparam("lead_id"))
        .values(
            score=bindparam("new_score"),
            score_method=bindparam("new_method"),
            model_version=bindparam("new_version"),
            score_reasons=bindparam("new_reasons"),
            scored_at=bindparam("new_scored_at"),
            updated_at=bindparam("new_scored_at"),
        )
    )
    with database.begin(writes=["leads"]) as connection:
        for chunk in chunked(updates, 1_000):
            connection.execute(statement, chunk)
        remaining = connection.execute(
            select(func.count()).select_from(leads).where(stale)
        ).scalar_one()

    context.log.info("scored_leads: %d leads scored by %s", len(updates), wanted_method)
    scores = [u["new_score"] for u in updates]
    return step.finish(
        len(updates),
        {
            "leads_scored": dg.MetadataValue.int(len(updates)),
            "method": dg.MetadataValue.text(wanted_method),
            "model_version": dg.MetadataValue.text(model.version if model else "none"),
            "mean_score": dg.MetadataValue.float(
                round(sum(scores) / len(scores), 2) if scores else 0.0
            ),
            "still_unscored": dg.MetadataValue.int(remaining),
            "preview": preview(
                [
                    {"lead_id": u["lead_id"], "score": u["new_score"], "reasons": u["new_reasons"]}
                    for u in updates
                ],
                ["lead_id", "score", "reasons"],
            ),
        },
    )


def segment_for(
    score: float | None, converted: bool | None, email_status: str, email_opt_in: bool
) -> tuple[str, str, str]:
    """Return (segment, lifecycle stage, reason) for one lead."""
    score = score or 0.0
    if score >= HOT_THRESHOLD:
        segment, rule = "hot", f"score {score:g} >= {HOT_THRESHOLD:g}"
    elif score >= WARM_THRESHOLD:
        segment, rule = "warm", f"score {score:g} >= {WARM_THRESHOLD:g}"
    else:
        segment, rule = "cold", f"score {score:g} < {WARM_THRESHOLD:g}"
    if converted:
        return segment, "customer", f"{rule}; already converted, so no nurturing"
    if email_status != "active":
        return segment, "suppressed", f"{rule}; email status is {email_status}"
    if not email_opt_in:
        return segment, "suppressed", f"{rule}; no consent to email"
    return segment, "nurturing", rule


@dg.asset(
    group_name="scoring",
    deps=["scored_leads"],
    kinds={"sql"},
    description="Hot, warm or cold segment and lifecycle stage per lead, with the rule applied.",
)
def lead_segments(
    context: dg.AssetExecutionContext, database: AcquisitionDatabase, settings: PipelineSettings
) -> dg.MaterializeResult:
    step = StepRecorder(context, database, settings)
    stale = or_(leads.c.segmented_at.is_(None), leads.c.segmented_at < leads.c.updated_at)
    with database.connect() as connection:
        rows = connection.execute(
            select(
                leads.c.id,
                leads.c.score,
                leads.c.converted,
                leads.c.email_status,
                leads.c.email_opt_in,
            )
            .where(leads.c.scored_at.is_not(None), stale)
            .order_by(leads.c.id)
            .limit(settings.max_leads_per_run)
        ).all()
    now = utcnow()
    updates = []
    counts: dict[str, int] = {}
    for lead in rows:
        segment, stage, reason = segment_for(
            lead.score, lead.converted, lead.email_status, lead.email_opt_in
        )
        counts[f"{segment}/{stage}"] = counts.get(f"{segment}/{stage}", 0) + 1
        updates.append(
            {
                "lead_id": lead.id,
                "new_segment": segment,
                "new_stage": stage,
                "new_reason": reason,
                "now": now,
            }
        )
    statement = (
        update(leads)
        .where(leads.c.id == bindparam("lead_id"))
        .values(
            segment=bindparam("new_segment"),
            lifecycle_stage=bindparam("new_stage"),
            segment_reason=bindparam("new_reason"),
            segmented_at=bindparam("now"),
            updated_at=bindparam("now"),
        )
    )
    with database.begin(writes=["leads"]) as connection:
        for chunk in chunked(updates, 1_000):
            connection.execute(statement, chunk)
    context.log.info("lead_segments: %d leads segmented", len(updates))
    return step.finish(
        len(updates),
        {
            "leads_segmented": dg.MetadataValue.int(len(updates)),
            "by_segment_and_stage": dg.MetadataValue.json(counts),
            "preview": preview(
                [
                    {
                        "lead_id": u["lead_id"],
                        "segment": u["new_segment"],
                        "stage": u["new_stage"],
                        "reason": u["new_reason"],
                    }
                    for u in updates
                ],
                ["lead_id", "segment", "stage", "reason"],
            ),
        },
    )
