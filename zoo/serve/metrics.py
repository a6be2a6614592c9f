"""The server's Prometheus metrics, in a registry of their own (GET /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

ROWS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
TOKENS = (16, 64, 256, 1024, 4096, 16384, 65536)
SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.requests = Counter(
            "zoo_requests", "HTTP requests by route and status", ["route", "status"], registry=r
        )
        self.duration = Histogram(
            "zoo_request_duration_seconds", "Time to answer a request", ["route"], buckets=SECONDS, registry=r
        )
        self.queue_time = Histogram(
            "zoo_queue_duration_seconds",
            "Time a request waited for its first batch",
            buckets=SECONDS,
            registry=r,
        )
        self.inference_time = Histogram(
            "zoo_inference_duration_seconds", "Time the model took per batch", buckets=SECONDS, registry=r
        )
        self.batch_size = Histogram("zoo_batch_size", "Rows per batch", buckets=ROWS, registry=r)
        self.batch_tokens = Histogram(
            "zoo_batch_tokens", "Padded tokens per batch (longest row x rows)", buckets=TOKENS, registry=r
        )
        self.skipped_rows = Counter(
            "zoo_skipped_rows", "Rows taken out of the queue uncomputed: their client went away", registry=r
        )
        self.queue_depth = Gauge("zoo_queue_depth", "Rows waiting for a batch", registry=r)
        self.in_flight = Gauge("zoo_in_flight_requests", "Requests in the server", registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
