"""The inference server's metrics: hot-path series resolved once, counting into the same series."""

from __future__ import annotations

from agent.serving.metrics import Metrics


def test_model_series_count_into_the_labelled_series_and_stay_bounded() -> None:
    m = Metrics()
    for _ in range(2):
        m.model_series("resnet", "2").ok.inc()
    m.model_series("resnet", "2").latency.observe(0.003)
    assert m.model_series("resnet", "2") is m.model_series("resnet", "2")
    for i in range(Metrics.MAX_CACHED_MODELS + 5):  # versions come and go on a long-lived agent
        m.model_series("resnet", f"v{i}").ok.inc()
    m.model_series("resnet", "2").ok.inc()  # resolved again after the cache was cleared
    text = m.render().decode()
    assert m.requests.labels("resnet", "ok")._value.get() == 3 + Metrics.MAX_CACHED_MODELS + 5
    assert 'edgefleet_agent_inference_seconds_count{model="resnet",version="2"} 1.0' in text
    assert len(m._series) <= Metrics.MAX_CACHED_MODELS
