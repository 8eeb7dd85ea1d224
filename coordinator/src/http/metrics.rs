//! `/metrics`: Prometheus text from the `prometheus-client` registry.
//!
//! Counters and histograms of events ([`crate::observe`]) are registered as they are; gauges
//! of the state (jobs, tasks, workers, slots, the lease) are computed from the core at each
//! scrape, and the store's request counts are the process's ([`StoreStats::global`]).
//! Labels carry Quern's own words only, never a job's name or any other user string.

use std::time::Instant;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use quern_api::TaskKind;
use quern_api::counted::StoreStats;

use super::App;
use crate::observe::{Labels, kind_name, observed};
use crate::status::job_state;

/// The state gauges, read from the core at one moment.
#[derive(Default)]
struct Gauges {
    jobs: Family<Labels<1>, Gauge>,
    tasks: Family<Labels<2>, Gauge>,
    locality: Family<Labels<1>, Gauge>,
    workers: Gauge,
    slots: Gauge,
    slots_busy: Gauge,
    lag_max: Gauge<f64, std::sync::atomic::AtomicU64>,
}

const JOB_STATES: [&str; 5] = ["queued", "running", "succeeded", "failed", "killed"];

impl Gauges {
    fn read(app: &App) -> Self {
        let g = Gauges::default();
        for s in JOB_STATES {
            g.jobs.get_or_create(&[("state", s)]).set(0);
        }
        let now = Instant::now();
        let core = app.shared.core();
        for job in core.jobs() {
            let state = quern_api::json::state_name(job_state(job) as i32);
            g.jobs.get_or_create(&[("state", state)]).inc();
            for kind in [TaskKind::Map, TaskKind::Reduce] {
                let (total, done, running) = job.progress(kind);
                let k = kind_name(kind);
                let pending = total.saturating_sub(done).saturating_sub(running);
                for (state, n) in [("succeeded", done), ("running", running), ("pending", pending)] {
                    g.tasks.get_or_create(&[("kind", k), ("state", state)]).inc_by(i64::from(n));
                }
            }
            let (node, rack, remote) = job.locality();
            for (level, n) in [("node_local", node), ("rack_local", rack), ("remote", remote)] {
                g.locality.get_or_create(&[("level", level)]).inc_by(i64::from(n));
            }
        }
        let mut lag = 0f64;
        for w in core.workers().values() {
            g.workers.inc();
            g.slots.inc_by(i64::from(w.slots));
            g.slots_busy.inc_by(w.running.len() as i64);
            lag = lag.max(now.saturating_duration_since(w.last_seen).as_secs_f64());
        }
        g.lag_max.set(lag);
        g
    }
}

fn counter(n: u64) -> Counter {
    let c = Counter::default();
    c.inc_by(n);
    c
}

/// The registry of one scrape.
fn registry(app: &App) -> Registry {
    let mut r = Registry::with_prefix("quern");
    let g = Gauges::read(app);
    r.register("jobs", "Jobs the coordinator holds, by state", g.jobs);
    r.register("tasks", "Tasks of the jobs the coordinator holds (running stages), by kind and state", g.tasks);
    r.register("map_tasks_by_locality", "Finished map tasks by where their input was", g.locality);
    r.register("workers", "Workers registered", g.workers);
    r.register("slots", "Task slots of the registered workers", g.slots);
    r.register("slots_busy", "Task slots running an attempt", g.slots_busy);
    r.register("worker_heartbeat_lag_seconds_max", "Longest time since a registered worker was heard from", g.lag_max);
    let leading = Gauge::<i64>::default();
    leading.set(i64::from(app.leader.valid(Instant::now())));
    r.register("leader", "1 while this coordinator holds the store's lease", leading);
    let o = observed();
    r.register("jobs_submitted", "Jobs accepted", o.jobs_submitted.clone());
    r.register("attempts_started", "Attempts handed out, by kind and backup", o.attempts_started.clone());
    r.register("attempts_ended", "Attempts ended, by kind and outcome", o.attempts_ended.clone());
    r.register(
        "attempt_duration_seconds",
        "How long ended attempts ran, by kind and outcome",
        o.attempt_seconds.clone(),
    );
    r.register("bytes_read", "Input bytes read by winning map attempts (MAP_INPUT_BYTES)", o.bytes_read.clone());
    r.register("bytes_written", "Output bytes written by winning attempts (OUTPUT_BYTES)", o.bytes_written.clone());
    r.register("shuffle_bytes", "Shuffle bytes fetched by winning reduce attempts", o.shuffle_bytes.clone());
    let s = StoreStats::global().snapshot();
    let requests = Family::<Labels<1>, Counter>::default();
    for (kind, n) in [("get", s.get), ("put", s.put), ("list", s.list), ("delete", s.delete)] {
        requests.get_or_create(&[("kind", kind)]).inc_by(n);
    }
    r.register("store_requests", "Store requests this process made, by the kind S3 bills them as", requests);
    let bytes = Family::<Labels<1>, Counter>::default();
    for (direction, n) in [("read", s.bytes_read), ("written", s.bytes_written)] {
        bytes.get_or_create(&[("direction", direction)]).inc_by(n);
    }
    r.register("store_bytes", "Bytes this process read from and wrote to the store", bytes);
    r.register("store_retries", "Store calls made again after a transient failure", counter(s.retries));
    r
}

pub(super) async fn metrics(State(app): State<App>) -> Response {
    let mut body = String::new();
    match encode(&mut body, &registry(&app)) {
        Ok(()) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body).into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "could not encode the metrics\n").into_response(),
    }
}
