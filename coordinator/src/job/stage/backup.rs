//! Backup attempts for stragglers, indexed: the tasks running a single attempt ordered by
//! when it started, and the median run time of each phase kept as it grows, so finding a
//! straggler costs O(log n) instead of a pass over the phase's tasks at every poll.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};
use std::time::{Duration, Instant};

use quern_api::{TaskKind, WorkerId};

use super::StageRun;
use crate::job::Speculation;

/// The upper median (the element at index `len / 2` of the sorted values, as
/// `select_nth_unstable(len / 2)` picks) of a growing list of durations: two heaps, the
/// lower half in a max-heap and the upper half in a min-heap.
#[derive(Clone, Debug, Default)]
pub(crate) struct Median {
    low: BinaryHeap<Duration>,
    high: BinaryHeap<Reverse<Duration>>,
}

impl Median {
    /// Adds a value: O(log n).
    pub(crate) fn push(&mut self, d: Duration) {
        match self.high.peek() {
            Some(Reverse(m)) if d >= *m => self.high.push(Reverse(d)),
            _ => self.low.push(d),
        }
        let len = self.low.len() + self.high.len();
        while self.low.len() > len / 2 {
            let Some(d) = self.low.pop() else { break };
            self.high.push(Reverse(d));
        }
        while self.high.len() > len - len / 2 {
            let Some(Reverse(d)) = self.high.pop() else { break };
            self.low.push(d);
        }
    }

    /// The upper median; None while empty.
    pub(crate) fn get(&self) -> Option<Duration> {
        self.high.peek().map(|r| r.0)
    }
}

/// Tasks of one kind running exactly one attempt, oldest attempt first and, among attempts
/// started at the same instant, the highest index first (the order in which the old scan's
/// `max()` over `(run time, index)` preferred them).
pub(crate) type Singles = BTreeSet<(Instant, Reverse<u32>)>;

impl StageRun {
    /// The phase that may need backups and its straggler threshold: the phase has nothing
    /// pending and some task of it finished. None otherwise.
    pub(crate) fn backup_phase(&self, spec: &Speculation) -> Option<(TaskKind, Duration)> {
        let (kind, pending, times) = if self.maps_complete() {
            (TaskKind::Reduce, &self.pending_reduces, &self.reduce_times)
        } else {
            (TaskKind::Map, &self.pending_maps, &self.map_times)
        };
        if !pending.is_empty() {
            return None;
        }
        let median = times.get()?;
        Some((kind, median.mul_f64(spec.factor).max(spec.min_runtime)))
    }

    /// The tasks of `kind` running exactly one attempt.
    fn singles(&self, kind: TaskKind) -> &Singles {
        match kind {
            TaskKind::Map => &self.single_maps,
            TaskKind::Reduce => &self.single_reduces,
        }
    }

    /// A straggler that `worker` could run a backup of, per `spec`: among the tasks of the
    /// phase (which has nothing pending) whose only attempt has run longer than `factor`
    /// times the phase's median run time (and `min_runtime`), on another worker and not
    /// failed on `worker`, the one running longest (ties: the highest index).
    pub fn backup_candidate(&self, worker: &WorkerId, now: Instant, spec: &Speculation) -> Option<(TaskKind, u32)> {
        let (kind, threshold) = self.backup_phase(spec)?;
        // Oldest first: the walk stops at the first attempt too young to be a straggler.
        // It passes over only stragglers running on `worker` or failed there.
        for &(since, Reverse(i)) in self.singles(kind) {
            if now.saturating_duration_since(since) <= threshold {
                break;
            }
            let Some(t) = self.tasks(kind).get(i as usize) else { continue };
            match t.single_live() {
                Some((w, _)) if w != worker && !t.failed_on.contains(worker) => return Some((kind, i)),
                _ => {}
            }
        }
        None
    }

    /// The instant after which [`StageRun::backup_candidate`] may find a straggler (for some
    /// worker): the oldest single attempt's start plus the threshold. None while no backup
    /// can be due whatever the time (something is pending, nothing finished, or no task
    /// runs a single attempt).
    pub fn backup_due(&self, spec: &Speculation) -> Option<Instant> {
        let (kind, threshold) = self.backup_phase(spec)?;
        let &(since, _) = self.singles(kind).first()?;
        since.checked_add(threshold)
    }

    /// Keeps the single-attempt index in step with task `idx`, which ran one attempt
    /// started at `before` and now runs one started at `after` (None: not exactly one).
    pub(super) fn sync_single(&mut self, kind: TaskKind, idx: u32, before: Option<Instant>, after: Option<Instant>) {
        if before == after {
            return;
        }
        let set = match kind {
            TaskKind::Map => &mut self.single_maps,
            TaskKind::Reduce => &mut self.single_reduces,
        };
        if let Some(s) = before {
            set.remove(&(s, Reverse(idx)));
        }
        if let Some(s) = after {
            set.insert((s, Reverse(idx)));
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    #[test]
    fn the_running_median_is_the_selected_one() {
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..50 {
            let mut m = Median::default();
            let mut all = Vec::new();
            for _ in 0..rng.random_range(1..60) {
                let d = Duration::from_millis(rng.random_range(0..20));
                m.push(d);
                all.push(d);
                let mid = all.len() / 2;
                let want = *all.clone().select_nth_unstable(mid).1;
                assert_eq!(m.get(), Some(want), "{all:?}");
            }
        }
        assert_eq!(Median::default().get(), None);
    }
}
