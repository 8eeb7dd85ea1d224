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

use std::collections::{BTreeMap, HashMap};
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

/// Which workers hold what, indexed so that finding a split's homes costs the same however
/// many workers there are: `--local-data` directories by their URL (a split lies under one
/// when one of its own ancestor directories is it), cached ranges by object.
#[derive(Debug, Default)]
pub struct Homes {
    /// Directory prefix -> (worker, rack).
    dirs: HashMap<String, Vec<(WorkerId, String)>>,
    /// Prefixes that are not directories (only built by hand): looked at one by one.
    odd: Vec<(String, WorkerId, String)>,
    /// Object -> (worker, rack, start, end) of the ranges cached.
    cached: HashMap<String, Vec<(WorkerId, String, u64, u64)>>,
    /// Grows whenever what is indexed changes, so users can cache what they derive.
    generation: u64,
}

impl Homes {
    /// A number that changes whenever what is indexed changes: what a job derived from the
    /// index (its pending maps' homes) stays right while this stays the same.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Indexes what `w` holds.
    pub fn add(&mut self, id: &WorkerId, w: &WorkerEntry) {
        self.generation += u64::from(!w.local_data.is_empty() || !w.cached.is_empty());
        for p in &w.local_data {
            let (p, rack) = (p.as_str().to_string(), w.rack.clone());
            if p.ends_with('/') {
                self.dirs.entry(p).or_default().push((id.clone(), rack));
            } else {
                self.odd.push((p, id.clone(), rack));
            }
        }
        for c in &w.cached {
            self.cached.entry(c.url.as_str().to_string()).or_default().push((
                id.clone(),
                w.rack.clone(),
                c.start,
                c.end,
            ));
        }
    }

    /// Forgets what `w` holds.
    pub fn remove(&mut self, id: &WorkerId, w: &WorkerEntry) {
        self.generation += u64::from(!w.local_data.is_empty() || !w.cached.is_empty());
        for p in &w.local_data {
            if let Some(v) = self.dirs.get_mut(p.as_str()) {
                v.retain(|(o, _)| o != id);
                if v.is_empty() {
                    self.dirs.remove(p.as_str());
                }
            }
        }
        self.odd.retain(|(_, o, _)| o != id);
        for c in &w.cached {
            if let Some(v) = self.cached.get_mut(c.url.as_str()) {
                v.retain(|(o, ..)| o != id);
                if v.is_empty() {
                    self.cached.remove(c.url.as_str());
                }
            }
        }
    }

    /// The racks of the workers holding `split`.
    pub(crate) fn racks<'a>(&'a self, (url, start, end): (&'a str, u64, u64)) -> impl Iterator<Item = &'a str> + 'a {
        let dirs = url
            .char_indices()
            .filter(|&(_, c)| c == '/')
            .filter_map(move |(i, _)| self.dirs.get(&url[..=i]))
            .flatten()
            .map(|(_, rack)| rack.as_str());
        let odd = self.odd.iter().filter(move |(p, ..)| url.starts_with(p.as_str())).map(|(_, _, r)| r.as_str());
        let cached = self
            .cached
            .get(url)
            .into_iter()
            .flatten()
            .filter(move |(_, _, s, e)| *s == start && *e >= end)
            .map(|(_, r, ..)| r.as_str());
        dirs.chain(odd).chain(cached)
    }

    /// The level of a split on worker `on`, or None when no live worker holds it: as
    /// [`level`], from the index.
    pub fn level(&self, split: (&str, u64, u64), on: &WorkerEntry) -> Option<Level> {
        if holds(on, split) {
            return Some(Level::NodeLocal);
        }
        let mut homes = self.racks(split).peekable();
        homes.peek()?;
        if homes.any(|r| r == on.rack) { Some(Level::RackLocal) } else { Some(Level::Remote) }
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
///
/// The first node-local candidate wins; otherwise the first rack-local one (if allowed),
/// otherwise the first acceptable remote one. So a first pass looks only for node-local
/// candidates (which needs `on` alone), and the second stops at the first rack-local one.
///
/// This is the reference definition: polls pick through a running stage's locality indexes
/// (`StageRun::pick_map`), which give the same answer without a pass over the candidates (a
/// property test checks the two against each other).
pub fn pick<'a, I>(candidates: I, on: &WorkerEntry, homes: &Homes, max_level: Level) -> Option<(u32, Level)>
where
    I: Iterator<Item = (u32, (&'a str, u64, u64))> + Clone,
{
    if let Some((idx, _)) = candidates.clone().find(|&(_, split)| holds(on, split)) {
        return Some((idx, Level::NodeLocal));
    }
    let mut remote = None;
    for (idx, split) in candidates {
        match homes.level(split, on) {
            Some(Level::RackLocal) if max_level >= Level::RackLocal => return Some((idx, Level::RackLocal)),
            Some(Level::Remote) if max_level >= Level::Remote => {
                remote.get_or_insert(idx);
            }
            // No home: fine anywhere, but a local task of another split would be better.
            None => {
                remote.get_or_insert(idx);
            }
            _ => {}
        }
    }
    remote.map(|i| (i, Level::Remote))
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

    fn index(ws: &BTreeMap<WorkerId, WorkerEntry>) -> Homes {
        let mut h = Homes::default();
        for (id, w) in ws {
            h.add(id, w);
        }
        h
    }

    #[test]
    fn the_index_gives_the_levels_a_scan_of_the_workers_gives() {
        let mut ws = cluster();
        if let Some(c) = ws.get_mut(&WorkerId::new(1, 3)) {
            let url = quern_api::StoreUrl::parse("s3://b/k").unwrap();
            c.cached.push(crate::convert::CachedRange { url, start: 100, end: 260 });
        }
        let mut homes = index(&ws);
        let splits = [
            ("file:///a/x.txt", 0, 9),
            ("file:///b/sub/x.txt", 0, 9),
            ("file:///c/x.txt", 0, 9),
            ("file:///ab/x.txt", 0, 9),
            ("s3://bucket/x.txt", 0, 9),
            ("s3://b/k", 100, 200),
            ("s3://b/k", 0, 100),
        ];
        for on in ws.values() {
            for s in splits {
                assert_eq!(homes.level(s, on), level(s, on, &ws), "{s:?} on {}", on.host);
            }
        }
        // A lost worker's data has no home any more.
        let id = WorkerId::new(1, 3);
        homes.remove(&id, &ws[&id]);
        ws.remove(&id);
        for on in ws.values() {
            for s in splits {
                assert_eq!(homes.level(s, on), level(s, on, &ws), "{s:?} on {} after a loss", on.host);
            }
        }
    }

    #[test]
    fn pick_prefers_local_and_respects_the_allowed_level() {
        let all = cluster();
        let ws = index(&all);
        let a = &all[&WorkerId::new(1, 1)];
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
