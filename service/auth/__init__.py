"""Client authentication, browser tokens, origin checks and per-key abuse limits."""
