"""Reading the Prometheus text of ``/metrics``."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def samples(text: str, name: str, **labels: str) -> list[float]:
    """Values of every sample called ``name`` whose labels include ``labels``."""
    out = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                out.append(sample.value)
    return out


def metric(text: str, name: str, **labels: str) -> float:
    """Sum over the matching samples (0 when there are none yet)."""
    return sum(samples(text, name, **labels))
