//! Where map tasks run: data locality with delay scheduling (Zaharia et al., EuroSys 2010).
//!
//! Object stores do not say where data lives, so locality has a signal of its own: a worker
//! started with `--local-data PATH` declares that input under PATH is on its own disk. A split
//! is *node-local* on such a worker, *rack-local* on a worker in the same rack as one, and
//! *remote* elsewhere; a split no live worker declares has no preference and runs anywhere.
//!
//! Delay scheduling: when a job's next free slot is on a worker with no node-local task for
//! it, the job waits up to `node_wait` for a better slot before it accepts rack-local tasks,
//! then `rack_wait` more before it accepts any. Launching a node-local task ends the wait.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use quern_api::WorkerId;
use serde::{Deserialize, Serialize};

use crate::core::WorkerEntry;

/// How close a map task ran to its data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// On a worker whose own disk holds the data.
    NodeLocal,
    /// On a worker in the same rack as one that holds it.
    RackLocal,
    /// Anywhere else (or the data has no home).
    Remote,
}

impl Level {
    /// `node_local`, `rack_local` or `remote`.
    pub fn name(self) -> &'static str {
        match self {
            Level::NodeLocal => "node_local",
            Level::RackLocal => "rack_local",
            Level::Remote => "remote",
        }
    }
}

/// Delay-scheduling waits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delay {
    /// How long a job waits for a node-local slot before taking rack-local ones.
    pub node_wait: Duration,
    /// How much longer before it takes any slot.
    pub rack_wait: Duration,
}

impl Default for Delay {
    fn default() -> Self {
        Delay { node_wait: Duration::from_secs(1), rack_wait: Duration::from_secs(1) }
    }
}

/// Whether `worker` has the split `(url, start, end)` on its own disk or in its cache.
fn holds(worker: &WorkerEntry, (url, start, end): (&str, u64, u64)) -> bool {
    worker.local_data.iter().any(|prefix| url.starts_with(prefix.as_str()))
        || worker.cached.iter().any(|c| c.url.as_str() == url && c.start == start && c.end >= end)
}

/// The level of a split on worker `on`, or None when no live worker holds it.
pub fn level(split: (&str, u64, u64), on: &WorkerEntry, workers: &BTreeMap<WorkerId, WorkerEntry>) -> Option<Level> {
    if holds(on, split) {
        return Some(Level::NodeLocal);
    }
    let homes: Vec<&WorkerEntry> = workers.values().filter(|w| holds(w, split)).collect();
    if homes.is_empty() {
        None
    } else if homes.iter().any(|w| w.rack == on.rack) {
        Some(Level::RackLocal)
    } else {
        Some(Level::Remote)
    }
}

/// The most distant level a job may accept now, given when it started waiting.
pub fn allowed(waiting_since: Option<Instant>, now: Instant, delay: &Delay) -> Level {
    let Some(since) = waiting_since else { return Level::NodeLocal };
    let waited = now.saturating_duration_since(since);
    if waited < delay.node_wait {
        Level::NodeLocal
    } else if waited < delay.node_wait + delay.rack_wait {
        Level::RackLocal
    } else {
        Level::Remote
    }
}

/// Picks among candidate splits `(index, (url, start, end))` for worker `on`: the best level
/// first, and only levels the delay allows; a split nobody holds is always acceptable.
/// Returns the index and level, or None when the job should wait for a better slot.
pub fn pick<'a>(
    candidates: impl Iterator<Item = (u32, (&'a str, u64, u64))>,
    on: &WorkerEntry,
    workers: &BTreeMap<WorkerId, WorkerEntry>,
    max_level: Level,
) -> Option<(u32, Level)> {
    let mut best: Option<(Level, u32)> = None;
    for (idx, split) in candidates {
        let lvl = match level(split, on, workers) {
            Some(Level::NodeLocal) => return Some((idx, Level::NodeLocal)),
            Some(l) if l <= max_level => l,
            Some(_) => continue,
            // No home: fine anywhere, but a local task of another split would be better.
            None => Level::Remote,
        };
        if best.is_none_or(|(b, _)| lvl < b) {
            best = Some((lvl, idx));
        }
    }
    best.map(|(l, i)| (i, l))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn w(host: &str, rack: &str, data: &[&str]) -> WorkerEntry {
        WorkerEntry {
            host: host.into(),
            rack: rack.into(),
            slots: 1,
            jobs: BTreeSet::new(),
            local_data: data.iter().map(|s| quern_api::StoreUrl::parse(s).unwrap()).collect(),
            cached: Vec::new(),
            last_seen: Instant::now(),
            running: BTreeSet::new(),
            to_cancel: Vec::new(),
            completed: 0,
            secret: String::new(),
        }
    }

    fn cluster() -> BTreeMap<WorkerId, WorkerEntry> {
        BTreeMap::from([
            (WorkerId::new(1, 1), w("a", "r1", &["file:///a/"])),
            (WorkerId::new(1, 2), w("b", "r1", &["file:///b/"])),
            (WorkerId::new(1, 3), w("c", "r2", &["file:///c/"])),
        ])
    }

    #[test]
    fn levels_follow_hosts_and_racks() {
        let ws = cluster();
        let a = &ws[&WorkerId::new(1, 1)];
        assert_eq!(level(("file:///a/x.txt", 0, 9), a, &ws), Some(Level::NodeLocal));
        assert_eq!(level(("file:///b/x.txt", 0, 9), a, &ws), Some(Level::RackLocal));
        assert_eq!(level(("file:///c/x.txt", 0, 9), a, &ws), Some(Level::Remote));
        assert_eq!(level(("s3://bucket/x.txt", 0, 9), a, &ws), None);
        assert_eq!(level(("file:///ab/x.txt", 0, 9), a, &ws), None, "prefixes are whole directories");
    }

    #[test]
    fn pick_prefers_local_and_respects_the_allowed_level() {
        let ws = cluster();
        let a = &ws[&WorkerId::new(1, 1)];
        let cands = [(0, ("file:///c/0", 0, 1)), (1, ("file:///b/1", 0, 1)), (2, ("file:///a/2", 0, 1))];
        assert_eq!(pick(cands.iter().copied(), a, &ws, Level::NodeLocal), Some((2, Level::NodeLocal)));
        let no_local = [(0, ("file:///c/0", 0, 1)), (1, ("file:///b/1", 0, 1))];
        assert_eq!(pick(no_local.iter().copied(), a, &ws, Level::NodeLocal), None, "wait for a better slot");
        assert_eq!(pick(no_local.iter().copied(), a, &ws, Level::RackLocal), Some((1, Level::RackLocal)));
        assert_eq!(pick([(0, ("file:///c/0", 0, 1))].into_iter(), a, &ws, Level::Remote), Some((0, Level::Remote)));
        // Data with no home never waits.
        assert_eq!(pick([(5, ("s3://b/k", 0, 1))].into_iter(), a, &ws, Level::NodeLocal), Some((5, Level::Remote)));
    }

    #[test]
    fn a_cached_split_is_node_local_where_it_is_cached() {
        let mut ws = cluster();
        if let Some(c) = ws.get_mut(&WorkerId::new(1, 3)) {
            let url = quern_api::StoreUrl::parse("s3://b/k").unwrap();
            c.cached.push(crate::convert::CachedRange { url, start: 100, end: 260 });
        }
        let c = &ws[&WorkerId::new(1, 3)];
        let a = &ws[&WorkerId::new(1, 1)];
        assert_eq!(level(("s3://b/k", 100, 200), c, &ws), Some(Level::NodeLocal));
        assert_eq!(level(("s3://b/k", 0, 100), c, &ws), None, "another range of the object");
        assert_eq!(level(("s3://b/k", 100, 200), a, &ws), Some(Level::Remote), "cached on another rack");
    }

    #[test]
    fn delay_scheduling_relaxes_with_time() {
        let d = Delay { node_wait: Duration::from_secs(2), rack_wait: Duration::from_secs(3) };
        let t0 = Instant::now();
        assert_eq!(allowed(None, t0, &d), Level::NodeLocal);
        assert_eq!(allowed(Some(t0), t0 + Duration::from_millis(1999), &d), Level::NodeLocal);
        assert_eq!(allowed(Some(t0), t0 + Duration::from_secs(2), &d), Level::RackLocal);
        assert_eq!(allowed(Some(t0), t0 + Duration::from_millis(4999), &d), Level::RackLocal);
        assert_eq!(allowed(Some(t0), t0 + Duration::from_secs(5), &d), Level::Remote);
    }
}
