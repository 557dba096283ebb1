"""Transparent points scoring, used when ML scoring is off or no model is trained yet."""

from typing import Any

from acquisition_assets.scoring.features import lead_features

# Each rule: points per unit, the cap in points. A marketer can read the score off the
# stored reasons without any model.
NUMERIC_RULES = {
    "total_visits": (3.0, 24.0),
    "minutes_on_site": (1.0, 30.0),
    "page_views_per_visit": (2.0, 10.0),
    "engagement_score": (2.0, 20.0),
}
CATEGORY_POINTS = {
    ("lead_origin", "Lead Add Form"): 10.0,
    ("lead_source", "Reference"): 10.0,
    ("lead_source", "Referral Sites"): 6.0,
    ("lead_source", "referral"): 10.0,
    ("last_activity", "Email Link Clicked"): 6.0,
    ("last_activity", "Email Opened"): 4.0,
    ("last_activity", "SMS Sent"): 4.0,
    ("last_activity", "Email Bounced"): -10.0,
    ("occupation", "Working Professional"): 10.0,
}
MAX_SCORE = 100.0


def engagement_points(lead: Any) -> float:
    """Return the capped points earned from the pipeline's own email events."""
    per_unit, cap = NUMERIC_RULES["engagement_score"]
    return min(float(lead.engagement_score or 0) * per_unit, cap)


def points_score(lead: Any) -> tuple[float, dict[str, float]]:
    """Return a 0-100 score and the points each rule contributed."""
    features = lead_features(lead)
    reasons: dict[str, float] = {}
    for name, (per_unit, cap) in NUMERIC_RULES.items():
        points = min(float(features[name]) * per_unit, cap)
        if points:
            reasons[name] = round(points, 2)
    for (name, value), points in CATEGORY_POINTS.items():
        if features.get(name) == value:
            reasons[f"{name}={value}"] = points
    score = max(0.0, min(MAX_SCORE, sum(reasons.values())))
    return round(score, 2), reasons
