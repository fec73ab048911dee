"""Talking to Riva: one shared channel per target, and the thread bridge for streams."""
