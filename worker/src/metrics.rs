//! The worker's Prometheus metrics, served by [`crate::http`] at `/metrics`.
//!
//! [`WorkerMetrics`] owns a `prometheus-client` registry. The poll loop tells it when an
//! attempt starts ([`WorkerMetrics::started`]) and how it ended ([`WorkerMetrics::ended`]);
//! what a succeeded attempt did (records, shuffle bytes) comes from the counters it reports
//! to the coordinator, so the metrics and `quern status` agree. Two things are read at
//! scrape time instead, because they are already counted elsewhere: every store request of
//! the process ([`quern_api::counted::StoreStats::global`], failed attempts and the store
//! check included) and the cache's lookups.
//!
//! Every name starts with `quern_worker_`; label values come from closed enums (task kind,
//! outcome, store operation), never from job names, URLs or other user strings, so the
//! number of series is fixed and nothing a submitter chooses shows up here.
//!
//! ```
//! use quern_worker::metrics::{AttemptEnd, TaskKind, WorkerMetrics};
//! let m = WorkerMetrics::new(2, None);
//! m.started();
//! m.ended(TaskKind::Map, AttemptEnd::Succeeded, std::time::Duration::from_millis(20), None);
//! assert!(m.encode().contains("quern_worker_attempts_ended_total{kind=\"map\",outcome=\"succeeded\"} 1"));
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeLabelValue, EncodeMetric, LabelValueEncoder,
};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use quern_api::counters::names;

use crate::cache::Cache;

/// Which phase an attempt ran.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum TaskKind {
    /// A map task (map-only ones included).
    Map,
    /// A reduce task.
    Reduce,
}

/// How an attempt ended, as its report to the coordinator says.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum AttemptEnd {
    /// It finished and reported its output.
    Succeeded,
    /// It failed (user code, the store, a lost map output, the worker itself).
    Failed,
    /// It was cancelled: by the coordinator (a backup won, the job was killed, preemption)
    /// or because the worker re-registered or stopped.
    Killed,
}

impl TaskKind {
    /// The label value: `map` or `reduce`.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::Map => "map",
            TaskKind::Reduce => "reduce",
        }
    }
}

impl AttemptEnd {
    /// The label value: `succeeded`, `failed` or `killed`.
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptEnd::Succeeded => "succeeded",
            AttemptEnd::Failed => "failed",
            AttemptEnd::Killed => "killed",
        }
    }
}

impl EncodeLabelValue for TaskKind {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> std::fmt::Result {
        encoder.write_str(self.as_str())
    }
}

impl EncodeLabelValue for AttemptEnd {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> std::fmt::Result {
        encoder.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndLabels {
    kind: TaskKind,
    outcome: AttemptEnd,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: TaskKind,
}

/// The worker's metrics; cheap to share (`Arc`), updated from any task.
#[derive(Debug)]
pub struct WorkerMetrics {
    registry: Registry,
    running: Gauge,
    ended: Family<EndLabels, Counter>,
    duration: Family<KindLabels, Histogram>,
    records_in: Family<KindLabels, Counter>,
    records_out: Family<KindLabels, Counter>,
    shuffle_written: Counter,
    shuffle_read: Counter,
}

impl WorkerMetrics {
    /// Metrics of a worker with `slots` slots and, if it has one, a local cache.
    pub fn new(slots: u32, cache: Option<Arc<Cache>>) -> WorkerMetrics {
        let mut registry = Registry::with_prefix("quern_worker");
        let slots_gauge = Gauge::<i64>::default();
        slots_gauge.set(i64::from(slots));
        registry.register("slots", "Tasks this worker runs at once (--slots)", slots_gauge);
        let running = Gauge::default();
        registry.register("running_attempts", "Attempts running now", running.clone());
        let ended = Family::<EndLabels, Counter>::default();
        registry.register("attempts_ended", "Attempts ended, by task kind and outcome", ended.clone());
        // 10 ms to about 1.5 hours: a tiny test split up to the default 10 minute task timeout
        // and well beyond.
        let duration = Family::<KindLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.01, 4.0, 10))
        });
        registry.register("attempt_duration_seconds", "Wall time of ended attempts, by task kind", duration.clone());
        let records_in = Family::<KindLabels, Counter>::default();
        registry.register(
            "records_in",
            "Records read by succeeded attempts: input records of maps, shuffled pairs of reduces",
            records_in.clone(),
        );
        let records_out = Family::<KindLabels, Counter>::default();
        registry.register(
            "records_out",
            "Records emitted by succeeded attempts: map output pairs (before combining), reduce output records",
            records_out.clone(),
        );
        let shuffle_written = Counter::default();
        registry.register(
            "shuffle_written_bytes",
            "Shuffle bytes written by succeeded map attempts",
            shuffle_written.clone(),
        );
        let shuffle_read = Counter::default();
        registry.register(
            "shuffle_read_bytes",
            "Shuffle bytes fetched by succeeded reduce attempts",
            shuffle_read.clone(),
        );
        registry.register_collector(Box::new(ReadAtScrape { cache }));
        WorkerMetrics { registry, running, ended, duration, records_in, records_out, shuffle_written, shuffle_read }
    }

    /// An attempt started running.
    pub fn started(&self) {
        self.running.inc();
    }

    /// An attempt ended after `took`; `counters` are a succeeded attempt's reported counters.
    pub fn ended(&self, kind: TaskKind, outcome: AttemptEnd, took: Duration, counters: Option<&BTreeMap<String, i64>>) {
        self.running.dec();
        self.ended.get_or_create(&EndLabels { kind, outcome }).inc();
        self.duration.get_or_create(&KindLabels { kind }).observe(took.as_secs_f64());
        let Some(c) = counters else { return };
        // Counters are i64 on the wire; a negative one (a buggy job's own) adds nothing.
        let get = |name: &str| c.get(name).and_then(|&v| u64::try_from(v).ok()).unwrap_or(0);
        let (input, output) = match kind {
            TaskKind::Map => (names::MAP_INPUT_RECORDS, names::MAP_OUTPUT_RECORDS),
            TaskKind::Reduce => (names::REDUCE_INPUT_RECORDS, names::REDUCE_OUTPUT_RECORDS),
        };
        self.records_in.get_or_create(&KindLabels { kind }).inc_by(get(input));
        self.records_out.get_or_create(&KindLabels { kind }).inc_by(get(output));
        self.shuffle_written.inc_by(get(names::MAP_OUTPUT_BYTES));
        self.shuffle_read.inc_by(get(names::REDUCE_SHUFFLE_BYTES));
    }

    /// The metrics in Prometheus' text format (version 0.0.4).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail; an encoder error would be a bug in a metric.
        if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        out
    }
}

/// The content type of [`WorkerMetrics::encode`]'s text.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Counts kept elsewhere, read on each scrape.
struct ReadAtScrape {
    cache: Option<Arc<Cache>>,
}

impl std::fmt::Debug for ReadAtScrape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadAtScrape").field("cache", &self.cache.is_some()).finish()
    }
}

impl Collector for ReadAtScrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = quern_api::counted::StoreStats::global().snapshot();
        let requests = ConstCounter::new(0u64);
        let mut family = encoder.encode_descriptor(
            "store_requests",
            "Store requests this process made, by the kind S3 bills them as (failed attempts and the store check included)",
            None,
            requests.metric_type(),
        )?;
        for (op, n) in [("get", s.get), ("put", s.put), ("list", s.list), ("delete", s.delete)] {
            ConstCounter::new(n).encode(family.encode_family(&[("op", op)])?)?;
        }
        let mut one = |name: &str, help: &str, n: u64| -> Result<(), std::fmt::Error> {
            let c = ConstCounter::new(n);
            c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)
        };
        one("store_retries", "Store calls made again after a transient failure", s.retries)?;
        one("store_read_bytes", "Bytes of object data store GETs returned", s.bytes_read)?;
        one("store_written_bytes", "Bytes of payload store PUTs sent", s.bytes_written)?;
        if let Some(cache) = &self.cache {
            let (hits, misses) = cache.lookups();
            one("cache_hits", "Reads served by the local cache (--cache-dir)", hits)?;
            one("cache_misses", "Reads the local cache could not serve", misses)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn attempts_are_counted_by_kind_and_outcome() {
        let m = WorkerMetrics::new(3, None);
        for _ in 0..3 {
            m.started();
        }
        let counters: BTreeMap<String, i64> = [
            (names::MAP_INPUT_RECORDS, 10),
            (names::MAP_OUTPUT_RECORDS, 25),
            (names::MAP_OUTPUT_BYTES, 400),
            (names::REDUCE_SHUFFLE_BYTES, -5),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        m.ended(TaskKind::Map, AttemptEnd::Succeeded, Duration::from_millis(30), Some(&counters));
        m.ended(TaskKind::Map, AttemptEnd::Failed, Duration::from_secs(2), None);
        let t = m.encode();
        assert_eq!(value(&t, "quern_worker_slots"), Some(3.0));
        assert_eq!(value(&t, "quern_worker_running_attempts"), Some(1.0));
        assert_eq!(value(&t, r#"quern_worker_attempts_ended_total{kind="map",outcome="succeeded"}"#), Some(1.0));
        assert_eq!(value(&t, r#"quern_worker_attempts_ended_total{kind="map",outcome="failed"}"#), Some(1.0));
        assert_eq!(value(&t, r#"quern_worker_attempt_duration_seconds_count{kind="map"}"#), Some(2.0));
        assert_eq!(value(&t, r#"quern_worker_records_in_total{kind="map"}"#), Some(10.0));
        assert_eq!(value(&t, r#"quern_worker_records_out_total{kind="map"}"#), Some(25.0));
        assert_eq!(value(&t, "quern_worker_shuffle_written_bytes_total"), Some(400.0));
        // A negative counter from a job adds nothing.
        assert_eq!(value(&t, "quern_worker_shuffle_read_bytes_total"), Some(0.0));
        assert!(value(&t, r#"quern_worker_store_requests_total{op="get"}"#).is_some());
        assert!(!t.contains("cache_hits"), "no cache, no cache metrics");
    }

    #[test]
    fn cache_lookups_are_read_at_scrape() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Arc::new(Cache::open(dir.path().to_path_buf(), 1 << 20).unwrap());
        let m = WorkerMetrics::new(1, Some(cache.clone()));
        cache.put("file:///a", 0, 4, b"abcd");
        assert!(cache.get("file:///a", 0, 4, Some(4)).is_some());
        assert!(cache.get("file:///b", 0, 4, Some(4)).is_none());
        let t = m.encode();
        assert_eq!(value(&t, "quern_worker_cache_hits_total"), Some(1.0));
        assert_eq!(value(&t, "quern_worker_cache_misses_total"), Some(1.0));
    }

    #[test]
    fn every_line_is_a_quern_worker_metric() {
        let m = WorkerMetrics::new(1, None);
        m.started();
        m.ended(TaskKind::Reduce, AttemptEnd::Killed, Duration::ZERO, None);
        for line in m.encode().lines().filter(|l| !l.is_empty()) {
            let name = line.trim_start_matches("# HELP ").trim_start_matches("# TYPE ");
            assert!(name.starts_with("quern_worker_"), "{line}");
        }
    }
}
