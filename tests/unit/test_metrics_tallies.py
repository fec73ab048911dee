"""The counters kept as plain numbers (``Tallies``) expose exactly what prometheus_client's
``Counter`` did: the same names, ``_total`` suffix, labels, and an unlabelled one at 0."""

from __future__ import annotations

import pytest

from service.observability.metrics import Metrics


def _samples(metrics: Metrics) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in metrics.exposition().decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def test_tallies_read_as_counters_at_every_scrape() -> None:
    metrics = Metrics()
    before = _samples(metrics)
    assert before["reserve_audio_received_seconds_total"] == 0
    assert not any(name.startswith("reserve_results_total") for name in before)  # labelled: none until used

    observer = metrics.observe_session(32_000, "LINEAR_PCM")
    observer.audio(3200)
    observer.audio(3200)
    observer.result(is_final=False)
    observer.result(is_final=True)
    observer.result(is_final=True)
    after = _samples(metrics)
    assert after['reserve_audio_received_bytes_total{encoding="LINEAR_PCM"}'] == 6400
    assert after["reserve_audio_received_seconds_total"] == pytest.approx(0.2)
    assert after['reserve_results_total{kind="interim"}'] == 1
    assert after['reserve_results_total{kind="final"}'] == 2
    text = metrics.exposition().decode()
    assert "# TYPE reserve_results_total counter" in text  # as prometheus_client writes a Counter


def test_a_tally_with_the_wrong_labels_is_refused() -> None:
    with pytest.raises(ValueError, match="takes labels"):
        Metrics().results.labels("interim", "extra")
