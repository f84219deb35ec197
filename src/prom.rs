//! Prometheus instruments, one registry per app (tests run many apps in one process).

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

pub struct Prom {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub org_nodes: IntGauge,
    pub start_checkpoint_seq: IntGauge,
    pub start_replayed_records: IntGauge,
    pub ingest_accepted: IntCounter,
    pub ingest_duplicates: IntCounter,
    pub ingest_rejected: IntCounter,
    pub screens: IntGauge,
    pub spool_bytes: IntGauge,
    pub audit_dropped: IntGauge,
    pub ingest_checkpoint: IntGauge,
    pub live_quarantined: IntCounter,
    pub resume_epochs: IntGauge,
    pub history_ticks: IntGauge,
    pub history_bytes: IntGauge,
    pub clickhouse_up: IntGauge,
    pub clickhouse_restarts: IntCounter,
    pub writer_blocked: IntGauge,
    pub insert_failures: IntCounterVec,
    pub metric_definitions: IntGauge,
    pub definitions_reload_ok: IntGauge,
    pub definitions_switches: IntCounter,
}

impl Prom {
    pub fn new() -> Self {
        let registry =
            Registry::new_custom(Some("vscc".into()), None).expect("static prefix is valid");
        let http_requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests answered, by route and status",
            ),
            &["method", "route", "status"],
        )
        .expect("static metric definition");
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "Time to answer HTTP requests, by route",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
            ]),
            &["route"],
        )
        .expect("static metric definition");
        let org_nodes = IntGauge::new("org_nodes", "Nodes in the loaded org tree")
            .expect("static metric definition");
        let counter =
            |name: &str, help: &str| IntCounter::new(name, help).expect("static metric definition");
        let gauge =
            |name: &str, help: &str| IntGauge::new(name, help).expect("static metric definition");
        let start_checkpoint_seq = gauge(
            "start_checkpoint_seq",
            "The record position of the checkpoint the live state started from (0: every stored record was replayed)",
        );
        let start_replayed_records = gauge(
            "start_replayed_records",
            "Stored records replayed into the live state at start-up (after the checkpoint, if one was loaded)",
        );
        let ingest_accepted = counter(
            "ingest_records_accepted_total",
            "Records accepted (durable)",
        );
        let ingest_duplicates = counter(
            "ingest_records_duplicate_total",
            "Records whose id was already accepted",
        );
        let ingest_rejected = counter(
            "ingest_records_rejected_total",
            "Records rejected by validation",
        );
        let screens = gauge("stream_screens", "Connected WebSocket screens");
        let spool_bytes = gauge(
            "ingest_spool_bytes",
            "Bytes in the durable log not yet deleted",
        );
        let audit_dropped = gauge(
            "audit_entries_dropped",
            "Audit entries not stored since the start (the queue to ClickHouse was full; each was logged instead)",
        );
        let ingest_checkpoint = gauge(
            "ingest_checkpoint_seq",
            "Highest log seq known to be in ClickHouse",
        );
        let live_quarantined = counter(
            "live_records_quarantined_total",
            "Records kept out of the live figures (stored under other rules, or applying them failed); GET /api/v1/quarantine lists the latest",
        );
        let resume_epochs = gauge(
            "stream_resume_epochs",
            "Stream epochs a screen could resume (open connections' and recently closed ones')",
        );
        let history_ticks = gauge("stream_history_ticks", "Ticks kept for resume");
        let history_bytes = gauge(
            "stream_history_bytes",
            "Estimated bytes of the ticks kept for resume",
        );
        let clickhouse_up = gauge(
            "clickhouse_managed_up",
            "Managed ClickHouse: 1 running, 0 down or starting again (always 0 with an external ClickHouse)",
        );
        let clickhouse_restarts = counter(
            "clickhouse_managed_restarts_total",
            "Times the managed ClickHouse died and was started again",
        );
        let writer_blocked = gauge(
            "ingest_writer_blocked",
            "1 while inserts into ClickHouse fail in a way retrying cannot fix (records stay in the log; see /readyz)",
        );
        let insert_failures = IntCounterVec::new(
            Opts::new(
                "ingest_insert_failures_total",
                "Failed inserts into ClickHouse, by whether retrying can help",
            ),
            &["retryable"],
        )
        .expect("static metric definition");
        let metric_definitions = gauge(
            "metric_definitions",
            "Metrics of the catalogue in service (dashboards/metrics/*.toml)",
        );
        let definitions_reload_ok = gauge(
            "metric_definitions_last_reload_successful",
            "0 while the newest metric definition files are refused (the log says why; the last good catalogue stays)",
        );
        let definitions_switches = counter(
            "metric_definitions_switches_total",
            "Times a changed catalogue was put in service after rebuilding the live state",
        );
        for c in [
            Box::new(http_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(metric_definitions.clone()),
            Box::new(definitions_reload_ok.clone()),
            Box::new(definitions_switches.clone()),
            Box::new(http_duration.clone()),
            Box::new(org_nodes.clone()),
            Box::new(start_checkpoint_seq.clone()),
            Box::new(start_replayed_records.clone()),
            Box::new(ingest_accepted.clone()),
            Box::new(ingest_duplicates.clone()),
            Box::new(ingest_rejected.clone()),
            Box::new(screens.clone()),
            Box::new(spool_bytes.clone()),
            Box::new(audit_dropped.clone()),
            Box::new(ingest_checkpoint.clone()),
            Box::new(live_quarantined.clone()),
            Box::new(resume_epochs.clone()),
            Box::new(history_ticks.clone()),
            Box::new(history_bytes.clone()),
            Box::new(clickhouse_up.clone()),
            Box::new(clickhouse_restarts.clone()),
            Box::new(writer_blocked.clone()),
            Box::new(insert_failures.clone()),
        ] {
            registry.register(c).expect("each metric registered once");
        }
        Prom {
            registry,
            http_requests,
            http_duration,
            org_nodes,
            start_checkpoint_seq,
            start_replayed_records,
            ingest_accepted,
            ingest_duplicates,
            ingest_rejected,
            screens,
            spool_bytes,
            audit_dropped,
            ingest_checkpoint,
            live_quarantined,
            resume_epochs,
            history_ticks,
            history_bytes,
            clickhouse_up,
            clickhouse_restarts,
            writer_blocked,
            insert_failures,
            metric_definitions,
            definitions_reload_ok,
            definitions_switches,
        }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Prom {
    fn default() -> Self {
        Self::new()
    }
}
