"""Funnel report and run performance figures."""
