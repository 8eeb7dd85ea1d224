//! One running stage of a job: its map and reduce task tables, the counts the scheduler reads
//! at every poll, and the names of every object its attempts write. A plain job is one stage;
//! a pipeline runs every stage whose inputs are ready, each a [`StageRun`] of its own.
//!
//! Reduce tasks become runnable once every map task of their stage has succeeded; a map
//! whose output a reducer found missing or corrupt goes back to pending, and the reduces wait
//! for it again. Attempt numbers of stage k are `k * STAGE_ATTEMPT_BASE + 1 ..=
//! (k + 1) * STAGE_ATTEMPT_BASE`, so the attempt number alone names the stage an attempt
//! belongs to ([`stage_of_attempt`]): a stale attempt of one stage can never be taken for
//! an attempt of another, whichever stages run at the time.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use quern_api::split::Split;
use quern_api::{Counters, JobId, StoreUrl, TaskKind, WorkerId};

use super::temporary_dir;
use crate::convert::CachedRange;
use crate::placement::Level;
use crate::spec::JobSpec;
use crate::task::{MapOutput, Task, TaskState, Won};

/// Attempt numbers of stage k start above k * this, so an attempt of one stage can never be
/// mistaken for one of another.
pub(crate) const STAGE_ATTEMPT_BASE: u32 = 10_000;

/// The stage an attempt number belongs to (0 for a plain job).
pub fn stage_of_attempt(attempt: u32) -> usize {
    (attempt.saturating_sub(1) / STAGE_ATTEMPT_BASE) as usize
}

/// A running stage (the whole of a plain job) and its tasks.
#[derive(Debug)]
pub struct StageRun {
    /// Which stage (0 for a plain job).
    index: usize,
    /// Whether it writes the user's output (the last stage, or a plain job).
    last: bool,
    /// The job it belongs to, its scratch directory and coordinator epoch: parts of the
    /// names of every object its attempts write.
    pub(super) job: JobId,
    scratch: StoreUrl,
    epoch: u64,
    /// What the stage runs.
    pub(super) spec: JobSpec,
    /// Input splits, one per map task.
    pub(super) splits: Vec<Split>,
    pub(super) maps: Vec<Task>,
    reduces: Vec<Task>,
    pending_maps: BTreeSet<u32>,
    pending_reduces: BTreeSet<u32>,
    maps_done: u32,
    reduces_done: u32,
    /// Tasks with a live attempt, per kind: kept in step by [`StageRun::with_task`], so the
    /// fair policy reads them without a scan at every poll.
    maps_running: u32,
    reduces_running: u32,
    /// Bytes of input (for the shortest-first policy).
    input_bytes: u64,
    /// Since when the stage has been passing up non-local slots (delay scheduling).
    waiting_since: Option<Instant>,
    /// The locality level each map attempt was started at.
    attempt_levels: HashMap<(u32, u32), Level>,
    /// The level of each succeeded map.
    map_levels: Vec<Option<Level>>,
    /// Backup attempts started.
    backups_started: u32,
    /// Tasks whose backup attempt won.
    backups_won: u32,
    /// Attempts taken back to serve starved jobs (`--preemption`).
    preempted: u32,
    /// Median run times of the winning attempts, per kind, for spotting stragglers.
    map_times: backup::Median,
    reduce_times: backup::Median,
    /// Tasks running exactly one attempt, per kind, oldest first (backup candidates).
    single_maps: backup::Singles,
    single_reduces: backup::Singles,
    /// Where the pending maps' splits live, for delay scheduling without a pass over them.
    locality: locality::Locality,
}

/// Where a stage run lives and what it runs: the arguments of [`StageRun::new`].
pub(crate) struct StagePlace<'a> {
    /// The job.
    pub(crate) job: &'a JobId,
    /// Its scratch directory.
    pub(crate) scratch: &'a StoreUrl,
    /// The coordinator epoch its attempts are named with.
    pub(crate) epoch: u64,
}

impl StageRun {
    /// Stage `index` running `spec` over `splits`, one map task per split; `last` if it
    /// writes the user's output.
    pub(crate) fn new(at: StagePlace<'_>, index: usize, last: bool, spec: JobSpec, splits: Vec<Split>) -> Self {
        // A map-only stage needs a task to commit its (then empty) part even when its input
        // is empty: one generator split of no rows.
        let splits = if splits.is_empty() && spec.reducers == 0 {
            vec![Split { url: quern_api::split::GENERATE_URL.into(), start: 0, end: 0, object_size: 0 }]
        } else {
            splits
        };
        let (m, r) = (splits.len(), spec.reducers as usize);
        let base = index as u32 * STAGE_ATTEMPT_BASE;
        StageRun {
            index,
            last,
            job: at.job.clone(),
            scratch: at.scratch.clone(),
            epoch: at.epoch,
            maps: (0..m).map(|_| Task::starting_at(base)).collect(),
            reduces: (0..r).map(|_| Task::starting_at(base)).collect(),
            pending_maps: (0..m as u32).collect(),
            pending_reduces: (0..r as u32).collect(),
            input_bytes: splits.iter().map(|s| s.end - s.start).sum(),
            spec,
            splits,
            maps_done: 0,
            reduces_done: 0,
            maps_running: 0,
            reduces_running: 0,
            waiting_since: None,
            attempt_levels: HashMap::new(),
            map_levels: vec![None; m],
            backups_started: 0,
            backups_won: 0,
            preempted: 0,
            map_times: Default::default(),
            reduce_times: Default::default(),
            single_maps: Default::default(),
            single_reduces: Default::default(),
            locality: Default::default(),
        }
    }

    /// Which stage this is (0 for a plain job).
    pub fn index(&self) -> usize {
        self.index
    }

    /// Whether it writes the user's output.
    pub fn is_last(&self) -> bool {
        self.last
    }

    /// What the stage runs.
    pub fn spec(&self) -> &JobSpec {
        &self.spec
    }

    /// Its input splits, one per map task.
    pub fn splits(&self) -> &[Split] {
        &self.splits
    }

    /// Whether attempt number `attempt` may be handed out here: past the stage's range it
    /// would read as an attempt of the next stage.
    fn in_range(&self, attempt: u32) -> bool {
        stage_of_attempt(attempt) == self.index
    }

    // ------------------------------------------------------------ scheduling

    /// Since when the stage has passed up slots waiting for local ones (delay scheduling).
    pub fn waiting_since(&self) -> Option<Instant> {
        self.waiting_since
    }

    /// The stage passed up a slot at `now` for want of a local one.
    pub fn passed_up(&mut self, now: Instant) {
        self.waiting_since.get_or_insert(now);
    }

    /// The number the next attempt of task `idx` gets.
    pub fn next_attempt(&self, kind: TaskKind, idx: u32) -> u32 {
        self.tasks(kind).get(idx as usize).map_or(1, |t| t.attempts + 1)
    }

    /// Starts an attempt of pending task `idx` on `worker`, map attempts at locality `level`.
    /// None if the task is not pending, or has used up its stage's attempt numbers.
    pub fn start_attempt(
        &mut self,
        kind: TaskKind,
        idx: u32,
        worker: &WorkerId,
        now: Instant,
        level: Option<Level>,
    ) -> Option<u32> {
        if !self.in_range(self.next_attempt(kind, idx)) {
            return None;
        }
        let attempt = self.with_task(kind, idx, |t| t.start(worker, now))??;
        if let Some(l) = level {
            if l == Level::NodeLocal {
                self.waiting_since = None;
            }
            self.attempt_levels.insert((idx, attempt), l);
        }
        Some(attempt)
    }

    /// Starts a backup attempt of straggler `idx` on `worker`.
    pub fn start_backup(&mut self, kind: TaskKind, idx: u32, worker: &WorkerId, now: Instant) -> Option<u32> {
        if !self.in_range(self.next_attempt(kind, idx)) {
            return None;
        }
        let attempt = self.with_task(kind, idx, |t| t.start_backup(worker, now))??;
        self.backups_started += 1;
        Some(attempt)
    }

    /// The locality level map attempt `attempt` of task `idx` started at.
    pub fn attempt_level(&self, idx: u32, attempt: u32) -> Option<Level> {
        self.attempt_levels.get(&(idx, attempt)).copied()
    }

    /// The tasks of one kind.
    pub fn tasks(&self, kind: TaskKind) -> &[Task] {
        match kind {
            TaskKind::Map => &self.maps,
            TaskKind::Reduce => &self.reduces,
        }
    }

    /// Keeps the pending sets, done and running counts and the backup and locality
    /// indexes in step with task `idx`, which was as `before` says.
    fn sync(&mut self, kind: TaskKind, idx: u32, before: Before) {
        let Some(t) = self.tasks(kind).get(idx as usize) else {
            return;
        };
        let (pending, done) = (matches!(t.state, TaskState::Pending), t.is_done());
        let running = matches!(t.state, TaskState::Running { .. });
        let single = t.single_live().map(|(_, since)| since);
        self.sync_single(kind, idx, before.single, single);
        if pending && !before.pending && kind == TaskKind::Map {
            // A map back in the pending set: the locality index was built without it.
            self.locality.forget_homes();
        }
        let (set, count, live) = match kind {
            TaskKind::Map => (&mut self.pending_maps, &mut self.maps_done, &mut self.maps_running),
            TaskKind::Reduce => (&mut self.pending_reduces, &mut self.reduces_done, &mut self.reduces_running),
        };
        match (before.running, running) {
            (false, true) => *live += 1,
            (true, false) => *live -= 1,
            _ => {}
        }
        if pending {
            set.insert(idx);
        } else {
            set.remove(&idx);
        }
        match (before.done, done) {
            (false, true) => *count += 1,
            (true, false) => *count -= 1,
            _ => {}
        }
    }

    /// Applies `f` to task `idx` and keeps the bookkeeping right.
    pub fn with_task<R>(&mut self, kind: TaskKind, idx: u32, f: impl FnOnce(&mut Task) -> R) -> Option<R> {
        let tasks = match kind {
            TaskKind::Map => &mut self.maps,
            TaskKind::Reduce => &mut self.reduces,
        };
        let t = tasks.get_mut(idx as usize)?;
        let observing = crate::observe::TaskBefore::of(t);
        let before = Before {
            done: t.is_done(),
            running: matches!(t.state, TaskState::Running { .. }),
            pending: matches!(t.state, TaskState::Pending),
            single: t.single_live().map(|(_, since)| since),
        };
        let r = f(t);
        observing.observe(kind, t);
        self.sync(kind, idx, before);
        Some(r)
    }

    /// Whether all map tasks have succeeded (so reduces may run).
    pub fn maps_complete(&self) -> bool {
        self.maps_done as usize == self.maps.len()
    }

    /// Whether every reduce task has committed.
    pub fn reduces_complete(&self) -> bool {
        self.reduces_done as usize == self.reduces.len()
    }

    /// The next runnable task that `allowed` accepts, maps first; reduces only once every
    /// map is done.
    pub fn next_pending(&self, allowed: impl Fn(&Task) -> bool) -> Option<(TaskKind, u32)> {
        let first = |set: &BTreeSet<u32>, kind: TaskKind| {
            set.iter().copied().find(|&i| self.tasks(kind).get(i as usize).is_some_and(&allowed)).map(|i| (kind, i))
        };
        if !self.pending_maps.is_empty() {
            return first(&self.pending_maps, TaskKind::Map);
        }
        if self.maps_complete() { first(&self.pending_reduces, TaskKind::Reduce) } else { None }
    }

    /// Pending task indexes of one kind.
    pub fn pending(&self, kind: TaskKind) -> &BTreeSet<u32> {
        match kind {
            TaskKind::Map => &self.pending_maps,
            TaskKind::Reduce => &self.pending_reduces,
        }
    }

    /// Tasks that could start now: pending maps, and pending reduces once every map is done.
    pub fn runnable(&self) -> usize {
        let reduces = if self.maps_complete() { self.pending_reduces.len() } else { 0 };
        self.pending_maps.len() + reduces
    }

    /// Tasks with a live attempt (maps and reduces).
    pub fn running(&self) -> u32 {
        self.maps_running + self.reduces_running
    }

    /// Bytes of input.
    pub fn input_bytes(&self) -> u64 {
        self.input_bytes
    }

    /// Attempts taken back from the stage to serve starved jobs.
    pub fn preempted(&self) -> u32 {
        self.preempted
    }

    /// Takes back live attempt `attempt` of task `idx` (preemption): the attempt ends
    /// without counting as a failure, and the task is pending again unless another attempt
    /// of it still runs. Returns the worker it ran on; None if it is not live (or holds the
    /// commit, which is never taken back: its part may be becoming visible).
    pub fn preempt(&mut self, kind: TaskKind, idx: u32, attempt: u32, now: Instant) -> Option<WorkerId> {
        let worker = self.with_task(kind, idx, |t| t.preempt(attempt, now)).flatten()?;
        self.preempted += 1;
        Some(worker)
    }

    /// Among `candidates` (pending reduce indexes), the one with the most partition bytes in
    /// map outputs that `cached` (a worker's cache) holds whole; None if it holds none.
    pub fn best_reduce_for(&self, candidates: impl Iterator<Item = u32>, cached: &[CachedRange]) -> Option<u32> {
        let held: std::collections::HashSet<&StoreUrl> =
            cached.iter().filter(|c| c.start == 0).map(|c| &c.url).collect();
        if held.is_empty() {
            return None;
        }
        let outputs: Vec<&MapOutput> = self
            .maps
            .iter()
            .enumerate()
            .filter_map(|(m, t)| match &t.state {
                TaskState::Succeeded { output: Some(o), .. } if held.contains(&self.shuffle_url_of(m as u32, o)) => {
                    Some(o)
                }
                _ => None,
            })
            .collect();
        candidates
            .map(|r| (outputs.iter().filter_map(|o| o.segments.get(r as usize)).map(|s| s.length).sum::<u64>(), r))
            .filter(|(bytes, _)| *bytes > 0)
            .max_by_key(|&(bytes, r)| (bytes, std::cmp::Reverse(r)))
            .map(|(_, r)| r)
    }

    /// Records how close to its data map `idx` ran (None: unknown).
    pub fn set_level(&mut self, idx: u32, level: Option<Level>) {
        if let Some(l) = self.map_levels.get_mut(idx as usize) {
            *l = level;
        }
    }

    /// The level of map `idx`, once it succeeded (unknown counts as remote).
    pub fn map_level(&self, idx: u32) -> Option<Level> {
        let done = self.maps.get(idx as usize).is_some_and(Task::is_done);
        done.then(|| self.map_levels.get(idx as usize).copied().flatten().unwrap_or(Level::Remote))
    }

    /// Records a task's win: its run time, and whether a backup won.
    pub fn record_win(&mut self, kind: TaskKind, won: &Won) {
        match kind {
            TaskKind::Map => self.map_times.push(won.took),
            TaskKind::Reduce => self.reduce_times.push(won.took),
        }
        if won.backup {
            self.backups_won += 1;
        }
    }

    /// Progress of one kind: (total, done, running).
    pub fn progress(&self, kind: TaskKind) -> (u32, u32, u32) {
        match kind {
            TaskKind::Map => (self.maps.len() as u32, self.maps_done, self.maps_running),
            TaskKind::Reduce => (self.reduces.len() as u32, self.reduces_done, self.reduces_running),
        }
    }

    /// The stage's counters: the sum over tasks of their committed attempt's counters, so
    /// retried, killed, superseded and re-run attempts never count twice.
    pub fn counters(&self) -> Counters {
        let mut c = Counters::new();
        for t in self.maps.iter().chain(&self.reduces) {
            if let Some(tc) = t.counters() {
                c.merge(tc);
            }
        }
        if self.backups_started > 0 {
            c.add(quern_api::counters::names::BACKUP_ATTEMPTS, i64::from(self.backups_started));
            c.add(quern_api::counters::names::BACKUP_ATTEMPTS_WON, i64::from(self.backups_won));
        }
        if self.preempted > 0 {
            c.add(quern_api::counters::names::PREEMPTED_ATTEMPTS, i64::from(self.preempted));
        }
        c
    }

    /// Whether any attempt was ever handed out (or restored from the journal).
    pub fn started(&self) -> bool {
        let base = self.index as u32 * STAGE_ATTEMPT_BASE;
        self.maps.iter().chain(&self.reduces).any(|t| t.attempts > base)
    }

    /// (node-local, rack-local, remote) counts over succeeded maps.
    pub fn locality(&self) -> (u32, u32, u32) {
        let mut c = (0, 0, 0);
        for i in 0..self.maps.len() as u32 {
            match self.map_level(i) {
                Some(Level::NodeLocal) => c.0 += 1,
                Some(Level::RackLocal) => c.1 += 1,
                Some(Level::Remote) => c.2 += 1,
                None => {}
            }
        }
        c
    }

    /// Live attempts as (kind, index, attempt, worker, since).
    pub fn live_attempts(&self) -> Vec<(TaskKind, u32, u32, WorkerId, Instant)> {
        let mut out = Vec::new();
        for kind in [TaskKind::Map, TaskKind::Reduce] {
            for (i, t) in self.tasks(kind).iter().enumerate() {
                for l in t.live_attempts() {
                    out.push((kind, i as u32, l.attempt, l.worker.clone(), l.since));
                }
            }
        }
        out
    }

    // ------------------------------------------------------------ output

    /// Whether the stage runs without reducers: its map tasks commit the parts.
    pub fn map_only(&self) -> bool {
        self.spec.reducers == 0
    }

    /// The kind of task that commits parts: reduce, or map in a map-only stage.
    pub fn final_kind(&self) -> TaskKind {
        if self.map_only() { TaskKind::Map } else { TaskKind::Reduce }
    }

    /// Whether every part of the stage is committed.
    pub fn outputs_complete(&self) -> bool {
        if self.map_only() { self.maps_complete() } else { self.reduces_complete() }
    }

    /// The URL a map attempt of this coordinator writes its shuffle object to.
    pub fn shuffle_url(&self, idx: u32, attempt: u32) -> StoreUrl {
        self.scratch.join(&format!("map-{idx:05}-e{}-a{attempt}.arrows", self.epoch))
    }

    /// The shuffle object of map `idx`'s output `o` (written under any coordinator epoch).
    pub fn shuffle_url_of(&self, idx: u32, o: &MapOutput) -> StoreUrl {
        self.scratch.join(&format!("map-{idx:05}-e{}-a{}.arrows", o.epoch, o.attempt))
    }

    /// Where part attempts write before commit: `OUTPUT/_temporary/JOB/` of the stage's
    /// output (hidden from input listing, removed once the stage is done).
    pub fn temporary_dir(&self) -> StoreUrl {
        temporary_dir(&self.spec.output, &self.job)
    }

    /// The object a part attempt writes its part to.
    pub fn temp_part_url(&self, idx: u32, attempt: u32) -> StoreUrl {
        self.temporary_dir().join(&format!("part-{idx:05}-e{}-a{attempt}", self.epoch))
    }

    /// Where the coordinator notes the multipart upload it started for a part attempt (so
    /// a sweep can abort it after a crash): inside the job's scratch directory.
    pub fn upload_marker_url(&self, idx: u32, attempt: u32) -> StoreUrl {
        self.scratch.join(&format!("uploads/part-{idx:05}-e{}-a{attempt}", self.epoch))
    }

    /// The URL of part `idx` (of reduce task `idx`, or of map task `idx` without reducers).
    /// An intermediate pipeline stage names its parts after itself, so a later stage reading
    /// several stages can tell their records apart by `Record::source`.
    pub fn part_url(&self, idx: u32) -> StoreUrl {
        if self.last {
            self.spec.output.join(&format!("part-{idx:05}"))
        } else {
            self.spec.output.join(&format!("stage{}-part-{idx:05}", self.index))
        }
    }

    /// The parts committed so far.
    pub fn committed_parts(&self) -> Vec<StoreUrl> {
        let tasks = self.tasks(self.final_kind());
        // A granted commit may have made its part visible before its attempt was lost.
        let written = |t: &Task| t.is_done() || t.granted;
        (0..tasks.len() as u32).filter(|&i| written(&tasks[i as usize])).map(|i| self.part_url(i)).collect()
    }

    /// Ends every live attempt; returns them as (kind, index, attempt, worker). Nothing is
    /// runnable afterwards: the stage is over.
    pub(crate) fn abort_all(&mut self) -> Vec<(TaskKind, u32, u32, WorkerId)> {
        let mut out = Vec::new();
        for kind in [TaskKind::Map, TaskKind::Reduce] {
            for idx in 0..self.tasks(kind).len() as u32 {
                let aborted = self.with_task(kind, idx, Task::abort).unwrap_or_default();
                out.extend(aborted.into_iter().map(|(a, w)| (kind, idx, a, w)));
            }
        }
        self.pending_maps.clear();
        self.pending_reduces.clear();
        out
    }
}

/// What a task was before a change, for [`StageRun::sync`].
struct Before {
    done: bool,
    running: bool,
    pending: bool,
    /// The start of its only live attempt, if it ran exactly one.
    single: Option<Instant>,
}

mod backup;
mod locality;
