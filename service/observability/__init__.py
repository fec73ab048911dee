"""Operations: Prometheus metrics and structured logs."""
