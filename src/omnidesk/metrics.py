"""Prometheus metrics, one registry per daemon (tests run several daemons in
one process; the global default registry would refuse the duplicates)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.accepted = Counter(
            "omnidesk_inbound_accepted", "Envelopes durably accepted", ["channel"], registry=r
        )
        self.duplicates = Counter(
            "omnidesk_inbound_duplicates", "Redelivered envelopes ignored", ["channel"], registry=r
        )
        self.processed = Counter(
            "omnidesk_pipeline_processed", "Envelopes processed", ["outcome"], registry=r
        )
        self.pending = Gauge("omnidesk_inbound_pending", "Envelopes waiting", registry=r)
        self.outbox = Counter(
            "omnidesk_outbox_results", "Outbound deliveries", ["channel", "result"], registry=r
        )
        self.channel_up = Gauge(
            "omnidesk_channel_healthy", "1 when the channel works", ["channel"], registry=r
        )
        self.batch_seconds = Histogram(
            "omnidesk_pipeline_batch_seconds", "Pipeline batch duration", registry=r
        )
        self.rules_reload = Counter(
            "omnidesk_rules_reloads", "Rules reloads", ["result"], registry=r
        )
        self.pipeline_ready = Gauge(
            "omnidesk_pipeline_processes_ready",
            "Pipeline processes up and ready ([pipeline] processes)",
            registry=r,
        )
        self.pipeline_restarts = Gauge(
            "omnidesk_pipeline_process_restarts",
            "Pipeline processes started again after they died",
            registry=r,
        )
