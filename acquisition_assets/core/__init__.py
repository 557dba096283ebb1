"""Shared plumbing: database, HTTP clients, circuit breaker and query cache."""
