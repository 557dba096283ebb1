"""Lead scoring model, scores and segments."""
