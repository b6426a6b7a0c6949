"""The frame log's counters: one label per OCPP name, whatever a peer sends."""

from __future__ import annotations

from station.metrics import StationMetrics
from station.ocpp.frame_log import FrameLog


def _series(metrics: StationMetrics, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for family in metrics.registry.collect()
        for sample in family.samples
        if sample.name == name
    }


def test_actions_and_error_codes_a_peer_invents_share_one_label() -> None:
    metrics = StationMetrics()
    frames = FrameLog(metrics=metrics)

    frames.record("CP-1", "in", 2, "a", "Heartbeat", {}, "[2]")
    for n in range(50):
        frames.record("CP-1", "in", 2, f"x{n}", f"Invented{n}", {}, "[2]")
        frames.record("CP-1", "in", 4, f"e{n}", None, [f"MadeUp{n}", "", {}], "[4]")
    frames.record("CP-1", "in", 4, "e", None, [["not", "hashable"], "", {}], "[4]")
    frames.record("CP-1", "out", 4, "f", None, ["NotImplemented", "", {}], "[4]")

    messages = _series(metrics, "chargepay_ocpp_messages_total")
    errors = _series(metrics, "chargepay_ocpp_errors_total")
    assert messages == {
        (("action", "Heartbeat"), ("direction", "in")): 1,
        (("action", "other"), ("direction", "in")): 50,
        (("action", "unknown"), ("direction", "in")): 51,
        (("action", "unknown"), ("direction", "out")): 1,
    }
    assert errors == {
        (("action", "unknown"), ("error", "other")): 51,
        (("action", "unknown"), ("error", "NotImplemented")): 1,
    }
