"""Trains the lead scoring model and applies it from coefficients stored in the database."""

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

from acquisition_assets.scoring.features import lead_features
from acquisition_assets.scoring.points import engagement_points

MIN_TRAINING_ROWS = 50
MIN_ROWS_PER_CLASS = 10
TOP_REASONS = 5


@dataclass(frozen=True)
class ScoringModel:
    """A logistic regression over one-hot features, kept as plain numbers (no pickle)."""

    version: str
    coefficients: dict[str, float]
    intercept: float

    def score(self, lead: Any) -> tuple[float, dict[str, float]]:
        """Return the conversion probability as 0-100 plus engagement points, with reasons.

        The reasons are the largest contributions to the logit, and the engagement points
        that the pipeline's own email events added on top.
        """
        contributions: dict[str, float] = {}
        for name, value in lead_features(lead, with_engagement=False).items():
            key = f"{name}={value}" if isinstance(value, str) else name
            weight = self.coefficients.get(key)
            if weight is None:
                continue
            contribution = weight * (1.0 if isinstance(value, str) else float(value))
            if contribution:
                contributions[key] = contribution
        logit = self.intercept + sum(contributions.values())
        probability = 1.0 / (1.0 + math.exp(-max(min(logit, 50.0), -50.0)))
        top = sorted(contributions.items(), key=lambda item: abs(item[1]), reverse=True)
        reasons = {k: round(v, 3) for k, v in top[:TOP_REASONS]}
        bonus = engagement_points(lead)
        if bonus:
            reasons["engagement_points"] = bonus
        return round(min(probability * 100.0 + bonus, 100.0), 2), reasons


@dataclass(frozen=True)
class TrainingResult:
    model: ScoringModel
    training_rows: int
    positive_rows: int
    holdout_auc: float | None


class NotEnoughLabels(ValueError):
    """Too few leads with a known outcome to train on."""


def train_model(labelled: list[Any]) -> TrainingResult:
    """Fit a model on leads whose outcome (converted) is known.

    The holdout AUC comes from a stratified 80/20 split; the stored model is then refit on
    every labelled lead.
    """
    # Imported here, not at module level: every step process loads the definitions, and
    # scikit-learn adds about two seconds to that import while only this step needs it.
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split

    outcomes = [1 if lead.converted else 0 for lead in labelled]
    positives = sum(outcomes)
    if (
        len(labelled) < MIN_TRAINING_ROWS
        or min(positives, len(outcomes) - positives) < MIN_ROWS_PER_CLASS
    ):
        raise NotEnoughLabels(
            f"{len(labelled)} labelled leads ({positives} converted); training needs at least "
            f"{MIN_TRAINING_ROWS}, with {MIN_ROWS_PER_CLASS} of each outcome"
        )
    vectorizer = DictVectorizer(sparse=True)
    matrix = vectorizer.fit_transform(
        [lead_features(lead, with_engagement=False) for lead in labelled]
    )

    train_x, test_x, train_y, test_y = train_test_split(
        matrix, outcomes, test_size=0.2, random_state=0, stratify=outcomes
    )
    holdout = LogisticRegression(max_iter=2000).fit(train_x, train_y)
    auc = float(roc_auc_score(test_y, holdout.predict_proba(test_x)[:, 1]))

    final = LogisticRegression(max_iter=2000).fit(matrix, outcomes)
    coefficients = {
        name: round(float(weight), 6)
        for name, weight in zip(vectorizer.get_feature_names_out(), final.coef_[0], strict=True)
    }
    intercept = round(float(final.intercept_[0]), 6)
    digest = hashlib.sha256(
        json.dumps([coefficients, intercept], sort_keys=True).encode()
    ).hexdigest()[:12]
    model = ScoringModel(f"logreg-{digest}", coefficients, intercept)
    return TrainingResult(model, len(labelled), positives, round(auc, 4))
