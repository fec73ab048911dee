"""Sessions: the recognition settings, the lifecycle state table, the session and its registry."""
