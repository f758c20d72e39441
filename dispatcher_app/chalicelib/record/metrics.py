"""Prometheus metrics for /metrics (one registry per dispatcher, so tests can run several)."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class Metrics:
    def __init__(self, describe_state=lambda: {}):
        self.registry = CollectorRegistry()
        r = self.registry
        self.invocations = Counter("mk1_invocations", "Finished invocations",
                                   ["function", "user", "status"], registry=r)
        self.duration = Histogram("mk1_duration_seconds", "Execution time (without init)",
                                  ["function"], buckets=BUCKETS, registry=r)
        self.wait = Histogram("mk1_wait_seconds", "Time queued before a slot", ["function"],
                              buckets=BUCKETS, registry=r)
        self.cold_starts = Counter("mk1_cold_starts", "Cold starts", ["function"], registry=r)
        self.throttles = Counter("mk1_throttles", "Calls answered 429", ["function"], registry=r)
        self.record_failures = Counter("mk1_record_write_failures", "Failed usage/log writes (retried)",
                                       registry=r)
        self._describe_state = describe_state
        r.register(_StateCollector(self))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _StateCollector:
    """Gauges read at scrape time from the live state (running, queued, containers by state)."""

    def __init__(self, metrics: Metrics):
        self.m = metrics

    def collect(self):
        state = self.m._describe_state()
        running = GaugeMetricFamily("mk1_running", "Executions running", labels=["function"])
        queued = GaugeMetricFamily("mk1_queued", "Calls waiting for a slot", labels=["function"])
        containers = GaugeMetricFamily("mk1_containers", "Containers by state", labels=["function", "state"])
        for fn, info in state.items():
            running.add_metric([fn], info.get("in_use", 0))
            queued.add_metric([fn], info.get("waiting", 0))
            counts: dict[str, int] = {}
            for c in info.get("containers", []):
                counts[c["state"]] = counts.get(c["state"], 0) + 1
            for st, n in counts.items():
                containers.add_metric([fn, st], n)
        yield running
        yield queued
        yield containers
