//! Counters and histograms of what happens to attempts and jobs, observed as it happens and
//! read by `/metrics` ([`crate::http`]).
//!
//! One [`Observed`] per process ([`observed`]), like the store's request counts
//! ([`quern_api::counted::StoreStats::global`]): a process runs one coordinator. Observing
//! is a few atomic additions, no I/O and no clock: the core calls it from its transitions
//! (with the `now` it was given), and stays a pure function of its inputs. Label values are
//! Quern's own words (task kinds, outcomes), never a user's string, so every family has a
//! handful of series at most.

use std::sync::LazyLock;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use quern_api::counters::names;
use quern_api::{Counters, TaskKind};

use crate::task::{Ran, Task};

/// A fixed label set: (name, value) pairs of Quern's own words.
pub type Labels<const N: usize> = [(&'static str, &'static str); N];

/// Everything observed at the moment it happened.
#[derive(Debug)]
pub struct Observed {
    /// Attempts handed out, by `kind` (map, reduce) and `backup` (true, false).
    pub attempts_started: Family<Labels<2>, Counter>,
    /// Attempts ended, by `kind` and `outcome` (succeeded, failed, lost, preempted,
    /// cancelled, killed).
    pub attempts_ended: Family<Labels<2>, Counter>,
    /// How long ended attempts ran, in seconds, by `kind` and `outcome` (killed attempts,
    /// whose end is their job's, are not timed).
    pub attempt_seconds: Family<Labels<2>, Histogram, fn() -> Histogram>,
    /// Jobs accepted.
    pub jobs_submitted: Counter,
    /// Input bytes of winning map attempts (`MAP_INPUT_BYTES`).
    pub bytes_read: Counter,
    /// Output bytes of winning attempts (`OUTPUT_BYTES`).
    pub bytes_written: Counter,
    /// Shuffle bytes fetched by winning reduce attempts (`REDUCE_SHUFFLE_BYTES`).
    pub shuffle_bytes: Counter,
}

fn attempt_histogram() -> Histogram {
    // 50 ms to about 27 minutes, doubling.
    Histogram::new(exponential_buckets(0.05, 2.0, 16))
}

impl Default for Observed {
    fn default() -> Self {
        Observed {
            attempts_started: Family::default(),
            attempts_ended: Family::default(),
            attempt_seconds: Family::new_with_constructor(attempt_histogram),
            jobs_submitted: Counter::default(),
            bytes_read: Counter::default(),
            bytes_written: Counter::default(),
            shuffle_bytes: Counter::default(),
        }
    }
}

static OBSERVED: LazyLock<Observed> = LazyLock::new(Observed::default);

/// This process's observations.
pub fn observed() -> &'static Observed {
    &OBSERVED
}

/// `map` or `reduce`.
pub fn kind_name(kind: TaskKind) -> &'static str {
    match kind {
        TaskKind::Map => "map",
        TaskKind::Reduce => "reduce",
    }
}

/// A task before a transition: enough to see afterwards which attempts started and ended.
#[derive(Debug)]
pub(crate) struct TaskBefore {
    len: usize,
    done: bool,
    /// Attempts open and live before (their history indexes).
    open: Vec<usize>,
}

impl TaskBefore {
    /// Notes `task` as it is now.
    pub(crate) fn of(task: &Task) -> Self {
        let open = task
            .history
            .iter()
            .enumerate()
            .filter(|(_, r)| r.ended.is_none() && task.is_live(r.attempt, &r.worker))
            .map(|(i, _)| i)
            .collect();
        TaskBefore { len: task.history.len(), done: task.is_done(), open }
    }

    /// Observes what changed between this and `task`, a task of `kind`.
    pub(crate) fn observe(self, kind: TaskKind, task: &Task) {
        let o = observed();
        let k = kind_name(kind);
        for r in task.history.iter().skip(self.len) {
            let backup = if r.backup { "true" } else { "false" };
            o.attempts_started.get_or_create(&[("kind", k), ("backup", backup)]).inc();
        }
        for r in self.open.iter().filter_map(|i| task.history.get(*i)) {
            ended(o, k, r, task);
        }
        if !self.done
            && task.is_done()
            && let Some(c) = task.counters()
        {
            add_bytes(o, c);
        }
    }
}

/// Observes `r` if it ended (or, open but no longer live, was killed with its job).
fn ended(o: &Observed, kind: &'static str, r: &Ran, task: &Task) {
    let (outcome, took) = match &r.ended {
        Some((at, how)) => (how.name(), Some(at.saturating_duration_since(r.started))),
        None if !task.is_live(r.attempt, &r.worker) => ("killed", None),
        None => return,
    };
    let labels = [("kind", kind), ("outcome", outcome)];
    o.attempts_ended.get_or_create(&labels).inc();
    if let Some(took) = took {
        o.attempt_seconds.get_or_create(&labels).observe(took.as_secs_f64());
    }
}

fn add_bytes(o: &Observed, c: &Counters) {
    let get = |name| c.get(name).max(0) as u64;
    o.bytes_read.inc_by(get(names::MAP_INPUT_BYTES));
    o.bytes_written.inc_by(get(names::OUTPUT_BYTES));
    o.shuffle_bytes.inc_by(get(names::REDUCE_SHUFFLE_BYTES));
}
