"""Shared state in Redis: one hub per process (its link and its tasks) and what it carries."""
