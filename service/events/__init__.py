"""A session's events: an append-only log with per-reader cursors, and SSE framing."""
