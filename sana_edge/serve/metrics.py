"""Prometheus metrics of one server (its own registry, so several apps in one process, as in the
tests or under Ray Serve, do not collide)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# Seconds: a tiny model's step is milliseconds, a 1024 px image on a laptop CPU minutes.
_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000)


class ServerMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self):
        self.registry = CollectorRegistry()
        self.queue_length = Gauge("sana_edge_queue_length", "Requests waiting for the generator",
                                  registry=self.registry)
        self.in_flight = Gauge("sana_edge_requests_in_flight", "Requests being generated now",
                               registry=self.registry)
        self.stage_seconds = Histogram(
            "sana_edge_stage_seconds", "Seconds per stage of one image (queue_wait, text_encoder, denoise, "
            "decode, png) and per request (total)", ["stage"], buckets=_BUCKETS, registry=self.registry)
        self.images = Counter("sana_edge_images", "Images generated and returned", ["model"],
                              registry=self.registry)
        self.errors = Counter("sana_edge_errors", "Requests answered with an error", ["status", "code"],
                              registry=self.registry)
        self.cancelled = Counter("sana_edge_cancelled", "Requests cancelled (client gone or shutdown)",
                                 registry=self.registry)

    def observe_stages(self, timings: dict) -> None:
        for stage, seconds in timings.items():
            self.stage_seconds.labels(stage=stage).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
