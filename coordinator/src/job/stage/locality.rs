//! Delay scheduling over a stage's pending maps without a pass over them: the same choice as
//! [`crate::placement::pick`] over every pending split, from two indexes.
//!
//! - The splits sorted by URL (built once), with the run of each directory the URLs lie in:
//!   the splits a worker holds (under one of its `--local-data` directories, or a range its
//!   cache holds) are one contiguous run each, a directory's found with one hash lookup.
//! - The pending splits by where their homes are (built from [`Homes`] and rebuilt when the
//!   cluster's homes change, see [`Homes::generation`], or a map goes back to pending): those
//!   with no home on a live worker, and those with a home in each rack. Entries of maps that
//!   left the pending set are dropped as the walks meet them.
//!
//! A worker that holds many splits of a job walks its run of them (done ones included) at
//! each poll; a job whose splits nobody holds costs nothing more than its first pending map.

use std::collections::{BTreeSet, HashMap};

use quern_api::TaskKind;

use super::StageRun;
use crate::core::WorkerEntry;
use crate::placement::{Homes, Level};
use crate::task::Task;

/// A stage's locality indexes (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct Locality {
    /// Split indexes sorted by (URL, index), and where in that order the splits under
    /// each directory (each URL's ancestors) are; built at the first pick that needs them.
    by_url: Option<ByUrl>,
    /// Pending maps by where their homes are, for one generation of [`Homes`].
    homes: Option<PendingHomes>,
}

impl Locality {
    /// Drops the pending maps' homes (a map went back to pending): rebuilt when needed.
    pub(crate) fn forget_homes(&mut self) {
        self.homes = None;
    }
}

/// Split indexes sorted by (URL, index), and the run of that order under each directory
/// some split URL lies in (every prefix of a URL that ends with `/`).
#[derive(Debug)]
struct ByUrl {
    order: Vec<u32>,
    dirs: HashMap<String, (u32, u32)>,
}

/// Pending maps by where their homes are.
#[derive(Debug)]
struct PendingHomes {
    /// The [`Homes::generation`] it was built from.
    generation: u64,
    /// Maps whose split no live worker holds; None: every pending map (no split has a
    /// home, so no set is kept).
    homeless: Option<BTreeSet<u32>>,
    /// Maps with a home in each rack.
    by_rack: HashMap<String, BTreeSet<u32>>,
}

impl StageRun {
    /// Picks a pending map for worker `on` among those `allowed` accepts, at most as far
    /// from its data as `max` (delay scheduling): the lowest node-local index; else, as
    /// `max` allows, the lowest rack-local one, then the lowest one with no home (or, at
    /// [`Level::Remote`], any). None: the stage should wait for a better slot.
    pub(crate) fn pick_map(
        &mut self,
        on: &WorkerEntry,
        homes: &Homes,
        max: Level,
        allowed: &dyn Fn(&Task) -> bool,
    ) -> Option<(u32, Level)> {
        if self.locality.homes.as_ref().is_none_or(|h| h.generation != homes.generation()) {
            self.locality.homes = Some(self.pending_homes(homes));
        }
        let ok =
            |job: &StageRun, i: u32| job.pending_maps.contains(&i) && job.maps.get(i as usize).is_some_and(allowed);
        let anywhere = self.locality.homes.as_ref().is_some_and(|h| h.homeless.is_none());
        if !anywhere && self.locality.by_url.is_none() {
            self.locality.by_url = Some(by_url(&self.splits));
        }
        if !anywhere && let Some(i) = self.first_held(on, &ok) {
            return Some((i, Level::NodeLocal));
        }
        if max >= Level::RackLocal
            && let Some(i) = self.first_of(|h| h.by_rack.get_mut(&on.rack), &ok)
        {
            return Some((i, Level::RackLocal));
        }
        if max == Level::Remote || anywhere {
            let first = self.pending_maps.iter().copied().find(|&i| self.maps.get(i as usize).is_some_and(allowed));
            // At the remote level anything goes; with no homes at all, the first is homeless.
            return first.map(|i| (i, Level::Remote));
        }
        self.first_of(|h| h.homeless.as_mut(), &ok).map(|i| (i, Level::Remote))
    }

    /// The lowest map `ok` accepts whose split `on` holds (its own disk or its cache).
    fn first_held(&self, on: &WorkerEntry, ok: &dyn Fn(&StageRun, u32) -> bool) -> Option<u32> {
        let splits = &self.splits;
        let Some(ByUrl { order, dirs }) = &self.locality.by_url else { return None };
        let url = |i: u32| splits[i as usize].url.as_str();
        let mut best: Option<u32> = None;
        for prefix in &on.local_data {
            let p = prefix.as_str();
            // The splits under a directory are one run of the order, found by its name
            // (one hash: no binary search over the URLs at every poll).
            let run = if p.ends_with('/') {
                let Some(&(lo, hi)) = dirs.get(p) else { continue };
                &order[lo as usize..hi as usize]
            } else {
                let from = order.partition_point(|&i| url(i) < p);
                let len = order[from..].iter().take_while(|&&i| url(i).starts_with(p)).count();
                &order[from..from + len]
            };
            for &i in run {
                if best.is_none_or(|b| i < b) && ok(self, i) {
                    best = Some(i);
                }
            }
        }
        for c in &on.cached {
            let u = c.url.as_str();
            let from = order.partition_point(|&i| url(i) < u);
            for &i in order[from..].iter().take_while(|&&i| url(i) == u) {
                let s = &splits[i as usize];
                if s.start == c.start && c.end >= s.end && best.is_none_or(|b| i < b) && ok(self, i) {
                    best = Some(i);
                }
            }
        }
        best
    }

    /// The lowest map `ok` accepts in the set `set` chooses from the homes index, dropping
    /// the entries of maps no longer pending on the way.
    fn first_of(
        &mut self,
        set: impl FnOnce(&mut PendingHomes) -> Option<&mut BTreeSet<u32>>,
        ok: &dyn Fn(&StageRun, u32) -> bool,
    ) -> Option<u32> {
        let mut homes = self.locality.homes.take()?;
        let mut found = None;
        if let Some(set) = set(&mut homes) {
            let mut gone = Vec::new();
            for &i in set.iter() {
                if !self.pending_maps.contains(&i) {
                    gone.push(i);
                } else if ok(self, i) {
                    found = Some(i);
                    break;
                }
            }
            for i in gone {
                set.remove(&i);
            }
        }
        self.locality.homes = Some(homes);
        found
    }

    /// Indexes the pending maps by where their splits' homes are.
    fn pending_homes(&self, homes: &Homes) -> PendingHomes {
        let mut homeless = BTreeSet::new();
        let mut by_rack: HashMap<String, BTreeSet<u32>> = HashMap::new();
        for &i in self.pending(TaskKind::Map) {
            let Some(s) = self.splits.get(i as usize) else { continue };
            let mut any = false;
            for rack in homes.racks((s.url.as_str(), s.start, s.end)) {
                any = true;
                if let Some(set) = by_rack.get_mut(rack) {
                    set.insert(i);
                } else {
                    by_rack.insert(rack.to_string(), BTreeSet::from([i]));
                }
            }
            if !any {
                homeless.insert(i);
            }
        }
        let homeless = if by_rack.is_empty() { None } else { Some(homeless) };
        PendingHomes { generation: homes.generation(), homeless, by_rack }
    }
}

/// Indexes `splits` by URL.
fn by_url(splits: &[quern_api::split::Split]) -> ByUrl {
    let mut order: Vec<u32> = (0..splits.len() as u32).collect();
    order.sort_by(|&a, &b| splits[a as usize].url.cmp(&splits[b as usize].url).then(a.cmp(&b)));
    let mut dirs: HashMap<String, (u32, u32)> = HashMap::new();
    for (k, &i) in order.iter().enumerate() {
        let u = splits[i as usize].url.as_str();
        let k = k as u32;
        for (cut, _) in u.match_indices('/') {
            let dir = &u[..=cut];
            // Sorted by URL: the URLs under one directory are contiguous.
            match dirs.get_mut(dir) {
                Some(run) => run.1 = k + 1,
                None => {
                    dirs.insert(dir.to_string(), (k, k + 1));
                }
            }
        }
    }
    ByUrl { order, dirs }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::time::Instant;

    use quern_api::split::Split;
    use quern_api::{JobId, StoreUrl, WorkerId};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::convert::CachedRange;
    use crate::job::JobSpec;
    use crate::placement;

    fn url(s: &str) -> StoreUrl {
        StoreUrl::parse(s).unwrap()
    }

    fn job(splits: Vec<Split>) -> StageRun {
        let spec = JobSpec {
            name: "wordcount".into(),
            inputs: vec![],
            output: url("memory:///out/"),
            reducers: 1,
            split_size: 10,
            params: Default::default(),
            priority: 0,
            skip_bad_records: false,
            stages: Vec::new(),
            side: Default::default(),
            formats: Default::default(),
            generate_rows: 0,
        };
        let (id, scratch) = (JobId::new(1, 1), url("memory:///s/"));
        StageRun::new(super::super::StagePlace { job: &id, scratch: &scratch, epoch: 1 }, 0, true, spec, splits)
    }

    fn worker(rng: &mut StdRng, i: usize) -> WorkerEntry {
        let mut local_data = Vec::new();
        for _ in 0..rng.random_range(0..3) {
            let d = rng.random_range(0..6);
            // Mostly directories; sometimes a prefix that is not one.
            let p = if rng.random_bool(0.8) { format!("file:///d{d}/") } else { format!("file:///d{d}/f1") };
            local_data.push(url(&p));
        }
        WorkerEntry {
            host: format!("h{i}"),
            rack: format!("r{}", rng.random_range(0..3)),
            slots: 1,
            jobs: BTreeSet::new(),
            local_data,
            cached: cached(rng),
            last_seen: Instant::now(),
            running: BTreeSet::new(),
            to_cancel: Vec::new(),
            completed: 0,
            secret: String::new(),
        }
    }

    fn cached(rng: &mut StdRng) -> Vec<CachedRange> {
        (0..rng.random_range(0..3))
            .map(|_| CachedRange {
                url: url(&format!("s3://b/o{}", rng.random_range(0..4))),
                start: [0, 100][rng.random_range(0..2)],
                end: [100, 200, 300][rng.random_range(0..3)],
            })
            .collect()
    }

    fn split(rng: &mut StdRng, n: usize) -> Split {
        let (u, start, end) = match rng.random_range(0..3) {
            0 => (format!("file:///d{}/f{}", rng.random_range(0..7), rng.random_range(0..3)), 0, 10),
            1 => (
                format!("s3://b/o{}", rng.random_range(0..5)),
                [0, 100][rng.random_range(0..2)],
                100 + 100 * rng.random_range(0..2),
            ),
            _ => (format!("memory:///nowhere/{n}"), 0, 10),
        };
        Split { url: u, start, end, object_size: 300 }
    }

    /// The indexed pick equals [`placement::pick`] over every pending split, as maps start,
    /// finish, fail back to pending and workers come, go and change their caches.
    #[test]
    fn the_indexed_pick_is_the_pick_of_a_pass_over_the_pending_maps() {
        for seed in 0..40 {
            let mut rng = StdRng::seed_from_u64(seed);
            let ids: Vec<WorkerId> = (0..6).map(|i| WorkerId::new(1, i)).collect();
            let mut ws: Vec<WorkerEntry> = (0..6).map(|i| worker(&mut rng, i)).collect();
            let mut live = vec![true; ws.len()];
            let mut homes = Homes::default();
            for (id, w) in ids.iter().zip(&ws) {
                homes.add(id, w);
            }
            let splits: Vec<Split> = (0..30).map(|n| split(&mut rng, n)).collect();
            let mut j = job(splits);
            let t0 = Instant::now();
            for _ in 0..60 {
                let i = rng.random_range(0..j.maps.len() as u32);
                let w = rng.random_range(0..ws.len());
                match rng.random_range(0..6) {
                    0 | 1 => {
                        j.with_task(TaskKind::Map, i, |t| t.start(&ids[w], t0));
                    }
                    2 => {
                        let a = j.maps[i as usize].live_attempts().first().map(|l| (l.attempt, l.worker.clone()));
                        if let Some((a, on)) = a {
                            let counts = rng.random_bool(0.5);
                            j.with_task(TaskKind::Map, i, |t| t.fail(a, &on, "x", counts, 100, t0));
                        }
                    }
                    3 => {
                        let a = j.maps[i as usize].live_attempts().first().map(|l| (l.attempt, l.worker.clone()));
                        if let Some((a, on)) = a {
                            let out =
                                crate::task::MapOutput { epoch: 1, attempt: a, segments: vec![Default::default()] };
                            j.with_task(TaskKind::Map, i, |t| {
                                t.succeed(a, &on, Some(out), Default::default(), false, t0)
                            });
                        }
                    }
                    4 if live[w] => {
                        homes.remove(&ids[w], &ws[w]);
                        ws[w].cached = cached(&mut rng);
                        homes.add(&ids[w], &ws[w]);
                    }
                    _ => {
                        if live[w] {
                            homes.remove(&ids[w], &ws[w]);
                        } else {
                            homes.add(&ids[w], &ws[w]);
                        }
                        live[w] = !live[w];
                    }
                }
                for (on_id, on) in ids.iter().zip(&ws).zip(&live).filter(|(_, l)| **l).map(|(p, _)| p) {
                    let allowed = |t: &Task| !t.failed_on.contains(on_id);
                    for max in [Level::NodeLocal, Level::RackLocal, Level::Remote] {
                        let candidates: Vec<(u32, (&str, u64, u64))> = j
                            .pending(TaskKind::Map)
                            .iter()
                            .copied()
                            .filter(|&i| allowed(&j.maps[i as usize]))
                            .map(|i| {
                                let s = &j.splits[i as usize];
                                (i, (s.url.as_str(), s.start, s.end))
                            })
                            .collect();
                        let want = placement::pick(candidates.iter().copied(), on, &homes, max);
                        let got = j.pick_map(on, &homes, max, &allowed);
                        assert_eq!(got, want, "seed {seed}, worker {}, {max:?}", on.host);
                    }
                }
            }
        }
    }
}
