"""Dagster code location for organic lead acquisition."""
