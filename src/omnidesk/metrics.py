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
        # Readiness (health.py): the states /readyz reports, for alerting.
        self.ready = Gauge("omnidesk_ready", "1 when /readyz answers 200", registry=r)
        self.store_up = Gauge("omnidesk_store_up", "1 when the store answers", registry=r)
        self.pipeline_stalled = Gauge(
            "omnidesk_pipeline_stalled",
            "1 when work has been pending without progress past [health] pipeline_stall_seconds",
            registry=r,
        )
        self.pipeline_waiting = Gauge(
            "omnidesk_pipeline_seconds_without_progress",
            "Seconds pending work has waited without the pipeline getting through it",
            registry=r,
        )
        sides = ["channel", "direction"]
        self.channel_last_success = Gauge(
            "omnidesk_channel_last_success_timestamp",
            "Unix time a channel last worked: inbound its connection or poll, outbound a delivery",
            sides,
            registry=r,
        )
        self.channel_last_failure = Gauge(
            "omnidesk_channel_last_failure_timestamp",
            "Unix time a channel last failed, per direction",
            sides,
            registry=r,
        )
        self.channel_failing_seconds = Gauge(
            "omnidesk_channel_failing_seconds",
            "Seconds a channel direction has been failing without a success (0: working)",
            sides,
            registry=r,
        )
        self.channel_failing = Gauge(
            "omnidesk_channel_failing",
            "1 when a channel direction has failed past its [health] threshold",
            sides,
            registry=r,
        )
