"""Shared helpers for the agent and integration tests."""
