"""Lead features shared by the points rules and the trained model."""

from typing import Any

# Lead columns the features are computed from.
FEATURE_COLUMNS = (
    "total_visits", "time_on_site_seconds", "page_views_per_visit", "lead_source",
    "lead_origin", "last_activity", "occupation", "engagement_score", "email_opt_in",
)  # fmt: skip


def lead_features(lead: Any, *, with_engagement: bool = True) -> dict[str, float | str]:
    """Return one lead's features: numbers as floats, categories as strings.

    The model trains without `engagement_score`, the pipeline's own running signal: it
    changes every run, so a model trained on it would be retrained, and every lead
    rescored, on each run.
    """
    features: dict[str, float | str] = {
        "total_visits": float(lead.total_visits or 0),
        "minutes_on_site": float(lead.time_on_site_seconds or 0) / 60.0,
        "page_views_per_visit": float(lead.page_views_per_visit or 0.0),
        "email_opt_in": 1.0 if lead.email_opt_in else 0.0,
    }
    if with_engagement:
        features["engagement_score"] = float(lead.engagement_score or 0)
    for name in ("lead_source", "lead_origin", "last_activity", "occupation"):
        features[name] = str(getattr(lead, name) or "unknown")
    return features
