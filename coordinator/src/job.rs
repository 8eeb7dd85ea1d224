//! The job lifecycle, as a pure state machine over its tasks.
//!
//! ```text
//!          all parts committed               _SUCCESS written
//! Running ─────────────────────▶ Committing ─────────────────▶ Succeeded{finished}
//!    │ a task ran out of attempts,    │ writing _SUCCESS failed
//!    │ no worker runs it, ...         │
//!    ├───────────────────────────────▶├──────────────────────▶ Failed{error, finished}
//!    └─ kill ────────────────────────────────────────────────▶ Killed{finished}
//! ```
//!
//! The state is private: it changes only through [`Job::begin_commit`], [`Job::committed`]
//! and [`Job::end`] (and their replays from the journal), which refuse transitions the
//! diagram does not have. Reduce tasks become runnable once every map task has succeeded; a
//! map whose output a reducer found missing or corrupt goes back to pending, and the reduces
//! wait for it again.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use quern_api::split::{InputObject, Split};
use quern_api::{Counters, InputFormat, JobId, StageInput, StoreUrl, TaskKind, WorkerId};

use crate::convert::CachedRange;
use crate::placement::Level;
use crate::spec::stage_spec;
pub use crate::spec::{Formats, JobSpec, Stage};
use crate::task::{MapOutput, Task, TaskState, Won};

/// Where a pipeline job is: the user's request, the running stage, and the counters of the
/// stages already done.
#[derive(Clone, Debug)]
pub struct Pipeline {
    /// What the user submitted (its name, inputs and output are the job's).
    pub user: JobSpec,
    /// Index of the running stage.
    pub current: usize,
    /// Counters of finished stages.
    pub done: Counters,
    /// The job's input objects as listed at submit (from the first stage's splits): what a
    /// later stage reading the job's input reads, without listing it again.
    pub input_objects: Vec<InputObject>,
}

/// Attempt numbers of stage k start above k * this, so an attempt of one stage can never be
/// mistaken for one of the next.
const STAGE_ATTEMPT_BASE: u32 = 10_000;

/// The state of a job. The final states carry when the job ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobState {
    /// Tasks are pending or running.
    Running,
    /// Every part is committed; `_SUCCESS` is being written.
    Committing,
    /// Done, output complete.
    Succeeded {
        /// Wall-clock end (ms since the epoch).
        finished_ms: u64,
    },
    /// Gave up.
    Failed {
        /// Why.
        error: String,
        /// Wall-clock end.
        finished_ms: u64,
    },
    /// Killed by a user.
    Killed {
        /// Wall-clock end.
        finished_ms: u64,
    },
}

impl JobState {
    /// Whether the job has ended.
    pub fn is_final(&self) -> bool {
        self.finished_ms().is_some()
    }

    /// When the job ended, once it has.
    pub fn finished_ms(&self) -> Option<u64> {
        match self {
            JobState::Running | JobState::Committing => None,
            JobState::Succeeded { finished_ms }
            | JobState::Failed { finished_ms, .. }
            | JobState::Killed { finished_ms } => Some(*finished_ms),
        }
    }
}

/// How a job that did not succeed ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unsuccessful {
    /// It failed, for this reason.
    Failed(String),
    /// A user killed it.
    Killed,
}

/// A job and its tasks.
#[derive(Debug)]
pub struct Job {
    /// Its id.
    id: JobId,
    /// Submission order, for FIFO.
    seq: u64,
    /// What was asked.
    spec: JobSpec,
    /// Input splits, one per map task.
    splits: Vec<Split>,
    /// Map tasks.
    maps: Vec<Task>,
    /// Reduce tasks.
    reduces: Vec<Task>,
    /// Lifecycle state.
    state: JobState,
    /// Wall-clock submit time (ms since epoch).
    submitted_ms: u64,
    /// Where the job's intermediate objects live (`STORE/jobs/ID/`).
    scratch: StoreUrl,
    /// Start time of the coordinator incarnation that runs the job: part of every attempt's
    /// object names, so attempts of an earlier incarnation never collide with new ones.
    epoch: u64,
    /// Since when the job has been passing up non-local slots (delay scheduling).
    waiting_since: Option<Instant>,
    /// The locality level each map attempt was started at.
    attempt_levels: std::collections::HashMap<(u32, u32), Level>,
    /// The level of each succeeded map.
    map_levels: Vec<Option<Level>>,
    /// Set for pipeline jobs.
    pipeline: Option<Pipeline>,
    /// Since when no registered worker could run the job's running stage.
    unrunnable_since: Option<Instant>,
    /// Backup attempts started.
    backups_started: u32,
    /// Tasks whose backup attempt won.
    backups_won: u32,
    /// Whether the data of the ended job outside its output is known to be deleted.
    cleaned: bool,
    pending_maps: BTreeSet<u32>,
    pending_reduces: BTreeSet<u32>,
    maps_done: u32,
    reduces_done: u32,
    /// Tasks with a live attempt, per kind: kept in step by [`Job::with_task`], so the
    /// fair policy reads them without a scan at every poll.
    maps_running: u32,
    reduces_running: u32,
    /// Bytes of input of the running stage (for the shortest-first policy).
    input_bytes: u64,
    /// Attempts taken back from this job to serve starved jobs (`--preemption`).
    preempted: u32,
    /// Median run times of the winning attempts, per kind, for spotting stragglers.
    map_times: backup::Median,
    reduce_times: backup::Median,
    /// Tasks running exactly one attempt, per kind, oldest first (backup candidates).
    single_maps: backup::Singles,
    single_reduces: backup::Singles,
    /// Where the pending maps' splits live, for delay scheduling without a pass over them.
    locality: locality::Locality,
    /// Whether the coordinator's job index must look at the job again (set when it was
    /// borrowed for a change, cleared when the index caught up).
    stale: bool,
}

/// When to start backup attempts (MapReduce paper, 3.6): once a phase has no pending task
/// left, a task whose only attempt has run longer than `factor` times the median run time of
/// the phase's finished tasks (and at least `min_runtime`) gets one backup on another worker.
#[derive(Clone, Debug, PartialEq)]
pub struct Speculation {
    /// How many times slower than the median counts as a straggler.
    pub factor: f64,
    /// Tasks running less than this never get a backup.
    pub min_runtime: Duration,
}

impl Default for Speculation {
    fn default() -> Self {
        Speculation { factor: 2.0, min_runtime: Duration::from_secs(1) }
    }
}

impl Job {
    /// A new running job with one map task per split.
    pub fn new(
        id: JobId,
        seq: u64,
        spec: JobSpec,
        splits: Vec<Split>,
        scratch: StoreUrl,
        epoch: u64,
        submitted_ms: u64,
    ) -> Self {
        if spec.stages.is_empty() {
            return Self::build(id, seq, spec, splits, scratch, epoch, submitted_ms, None);
        }
        let first = stage_spec(&spec, 0, &scratch);
        let mut input_objects: Vec<InputObject> = splits
            .iter()
            .filter(|s| s.url != quern_api::split::GENERATE_URL)
            .map(|s| InputObject { url: s.url.clone(), size: s.object_size })
            .collect();
        input_objects.dedup();
        let pipeline = Pipeline { user: spec, current: 0, done: Counters::new(), input_objects };
        Self::build(id, seq, first, splits, scratch, epoch, submitted_ms, Some(pipeline))
    }

    #[allow(clippy::too_many_arguments)]
    fn build(
        id: JobId,
        seq: u64,
        spec: JobSpec,
        splits: Vec<Split>,
        scratch: StoreUrl,
        epoch: u64,
        submitted_ms: u64,
        pipeline: Option<Pipeline>,
    ) -> Self {
        // A map-only job needs a task to commit its (then empty) part even when its input
        // is empty: one generator split of no rows.
        let splits = if splits.is_empty() && spec.reducers == 0 {
            vec![Split { url: quern_api::split::GENERATE_URL.into(), start: 0, end: 0, object_size: 0 }]
        } else {
            splits
        };
        let m = splits.len();
        let r = spec.reducers as usize;
        let base = pipeline.as_ref().map_or(0, |p| p.current as u32 * STAGE_ATTEMPT_BASE);
        let input_bytes = splits.iter().map(|s| s.end - s.start).sum();
        Job {
            id,
            seq,
            maps: (0..m).map(|_| Task::starting_at(base)).collect(),
            reduces: (0..r).map(|_| Task::starting_at(base)).collect(),
            pending_maps: (0..m as u32).collect(),
            pending_reduces: (0..r as u32).collect(),
            spec,
            splits,
            state: JobState::Running,
            submitted_ms,
            scratch,
            epoch,
            maps_done: 0,
            reduces_done: 0,
            maps_running: 0,
            reduces_running: 0,
            input_bytes,
            preempted: 0,
            waiting_since: None,
            attempt_levels: Default::default(),
            map_levels: vec![None; m],
            pipeline,
            unrunnable_since: None,
            backups_started: 0,
            backups_won: 0,
            cleaned: false,
            map_times: Default::default(),
            reduce_times: Default::default(),
            single_maps: Default::default(),
            single_reduces: Default::default(),
            locality: Default::default(),
            stale: false,
        }
    }

    // ------------------------------------------------------------ what it is

    /// Its id.
    pub fn id(&self) -> &JobId {
        &self.id
    }

    /// Submission order, for FIFO.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// What the running stage runs (for a pipeline: its stage's spec; see [`Job::user_spec`]).
    pub fn spec(&self) -> &JobSpec {
        &self.spec
    }

    /// What the user submitted (a pipeline's own spec, not its running stage's).
    pub fn user_spec(&self) -> &JobSpec {
        self.pipeline.as_ref().map_or(&self.spec, |p| &p.user)
    }

    /// The running stage's input splits, one per map task.
    pub fn splits(&self) -> &[Split] {
        &self.splits
    }

    /// Wall-clock submit time (ms since the epoch).
    pub fn submitted_ms(&self) -> u64 {
        self.submitted_ms
    }

    /// Where the job's intermediate objects live (`STORE/jobs/ID/`).
    pub fn scratch(&self) -> &StoreUrl {
        &self.scratch
    }

    /// The coordinator incarnation whose attempt names this job's new attempts carry.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    // ------------------------------------------------------------ lifecycle

    /// The job's state.
    pub fn state(&self) -> &JobState {
        &self.state
    }

    /// Whether tasks may run (not committing, not ended).
    pub fn is_running(&self) -> bool {
        self.state == JobState::Running
    }

    /// Running → Committing, once every part of the last stage is committed.
    pub fn begin_commit(&mut self) -> bool {
        let ok = self.state == JobState::Running && self.outputs_complete() && !self.stage_finished();
        if ok {
            self.state = JobState::Committing;
        }
        ok
    }

    /// Committing → Succeeded, once `_SUCCESS` is written.
    pub fn committed(&mut self, now_ms: u64) -> bool {
        let ok = self.state == JobState::Committing;
        if ok {
            self.state = JobState::Succeeded { finished_ms: now_ms };
        }
        ok
    }

    /// Running or Committing → Failed or Killed. Ends every live attempt and returns them as
    /// (kind, index, attempt, worker), to be cancelled at their workers; an ended job stays
    /// as it was (None).
    pub fn end(&mut self, how: Unsuccessful, now_ms: u64) -> Option<Vec<(TaskKind, u32, u32, WorkerId)>> {
        if self.state.is_final() {
            return None;
        }
        let aborted = self.abort_all();
        self.state = match how {
            Unsuccessful::Failed(error) => JobState::Failed { error, finished_ms: now_ms },
            Unsuccessful::Killed => JobState::Killed { finished_ms: now_ms },
        };
        Some(aborted)
    }

    /// Replays a journalled start of the commit.
    pub fn restore_committing(&mut self) {
        if self.state == JobState::Running {
            self.state = JobState::Committing;
        }
    }

    /// Replays a journalled end.
    pub fn restore_end(&mut self, ended: crate::journal::Ended, finished_ms: u64) {
        self.abort_all();
        self.state = match ended {
            crate::journal::Ended::Succeeded => JobState::Succeeded { finished_ms },
            crate::journal::Ended::Failed { error } => JobState::Failed { error, finished_ms },
            crate::journal::Ended::Killed => JobState::Killed { finished_ms },
        };
    }

    /// Notes that the ended job's scratch and temporary directories are deleted; true if
    /// that is news. A job that has not ended keeps its data.
    pub fn mark_cleaned(&mut self) -> bool {
        let news = self.state.is_final() && !self.cleaned;
        self.cleaned |= news;
        news
    }

    /// Whether the ended job's scratch and temporary directories are known to be deleted.
    pub fn is_cleaned(&self) -> bool {
        self.cleaned
    }

    /// Whether the job has waited for a worker that can run it for `wait` (no registered
    /// worker runs its running stage's job): then it should fail.
    pub fn unrunnable_for(&mut self, runnable: bool, now: Instant, wait: Duration) -> bool {
        match (runnable, self.unrunnable_since) {
            (true, _) => {
                self.unrunnable_since = None;
                false
            }
            (false, None) => {
                self.unrunnable_since = Some(now);
                false
            }
            (false, Some(since)) => now.saturating_duration_since(since) >= wait,
        }
    }

    // ------------------------------------------------------------ scheduling

    /// Since when the job has passed up slots waiting for local ones (delay scheduling).
    pub fn waiting_since(&self) -> Option<Instant> {
        self.waiting_since
    }

    /// The job passed up a slot at `now` for want of a local one.
    pub fn passed_up(&mut self, now: Instant) {
        self.waiting_since.get_or_insert(now);
    }

    /// Starts an attempt of pending task `idx` on `worker`, map attempts at locality `level`.
    pub fn start_attempt(
        &mut self,
        kind: TaskKind,
        idx: u32,
        worker: &WorkerId,
        now: Instant,
        level: Option<Level>,
    ) -> Option<u32> {
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

    fn tasks_mut(&mut self, kind: TaskKind) -> &mut Vec<Task> {
        match kind {
            TaskKind::Map => &mut self.maps,
            TaskKind::Reduce => &mut self.reduces,
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
        let t = self.tasks_mut(kind).get_mut(idx as usize)?;
        let before = Before {
            done: t.is_done(),
            running: matches!(t.state, TaskState::Running { .. }),
            pending: matches!(t.state, TaskState::Pending),
            single: t.single_live().map(|(_, since)| since),
        };
        let r = f(t);
        self.sync(kind, idx, before);
        Some(r)
    }

    /// Whether all map tasks have succeeded (so reduces may run).
    pub fn maps_complete(&self) -> bool {
        self.maps_done as usize == self.maps.len()
    }

    /// The next runnable task that `allowed` accepts, maps first; reduces only once every
    /// map is done.
    pub fn next_pending(&self, allowed: impl Fn(&Task) -> bool) -> Option<(TaskKind, u32)> {
        if self.state != JobState::Running {
            return None;
        }
        let first = |set: &BTreeSet<u32>, kind: TaskKind| {
            set.iter().copied().find(|&i| self.tasks(kind).get(i as usize).is_some_and(&allowed)).map(|i| (kind, i))
        };
        if !self.pending_maps.is_empty() {
            return first(&self.pending_maps, TaskKind::Map);
        }
        if self.maps_complete() { first(&self.pending_reduces, TaskKind::Reduce) } else { None }
    }

    /// The output the user asked for (a pipeline's last stage writes it).
    pub fn user_output(&self) -> &StoreUrl {
        self.pipeline.as_ref().map_or(&self.spec.output, |p| &p.user.output)
    }

    /// Whether the running stage of a pipeline is done and another follows.
    pub fn stage_finished(&self) -> bool {
        self.pipeline.as_ref().is_some_and(|p| p.current + 1 < p.user.stages.len()) && self.outputs_complete()
    }

    /// What the next pipeline stage reads.
    /// What the next pipeline stage reads: directories of earlier stages' output to list,
    /// and the job's input objects (as listed at submit) if it reads those.
    pub fn next_inputs(&self) -> (Vec<StoreUrl>, Vec<InputObject>) {
        let Some(p) = &self.pipeline else { return Default::default() };
        let k = p.current + 1;
        let Some(stage) = p.user.stages.get(k) else { return Default::default() };
        let dir = |j: usize| self.scratch.join(&format!("stage-{j}/"));
        match &stage.inputs[..] {
            [] => (vec![dir(k - 1)], Vec::new()),
            sources => {
                let dirs = sources
                    .iter()
                    .filter_map(|s| match s {
                        StageInput::Stage(j) => Some(dir(*j)),
                        StageInput::JobInput => None,
                    })
                    .collect();
                let job_input = sources.contains(&StageInput::JobInput);
                (dirs, if job_input { p.input_objects.clone() } else { Vec::new() })
            }
        }
    }

    /// The input format of the next pipeline stage.
    pub fn next_input_format(&self) -> InputFormat {
        self.pipeline
            .as_ref()
            .and_then(|p| p.user.stages.get(p.current + 1))
            .map(|s| s.formats.input)
            .unwrap_or_default()
    }

    /// Whether the job runs without reducers: its map tasks commit the parts.
    pub fn map_only(&self) -> bool {
        self.spec.reducers == 0
    }

    /// The kind of task that commits parts: reduce, or map in a map-only job.
    pub fn final_kind(&self) -> TaskKind {
        if self.map_only() { TaskKind::Map } else { TaskKind::Reduce }
    }

    /// Whether every part of the running stage is committed.
    pub fn outputs_complete(&self) -> bool {
        if self.map_only() { self.maps_complete() } else { self.reduces_complete() }
    }

    /// Starts the next stage of a pipeline over `splits` (of the finished stage's output).
    pub fn advance(&mut self, splits: Vec<Split>) {
        // All stages so far: the finished one's tasks and the earlier ones' (held in `done`).
        let done = self.counters();
        let Some(mut p) = self.pipeline.take() else { return };
        p.done = done;
        p.current += 1;
        let spec = stage_spec(&p.user, p.current, &self.scratch);
        let mut next = Job::build(
            self.id.clone(),
            self.seq,
            spec,
            splits,
            self.scratch.clone(),
            self.epoch,
            self.submitted_ms,
            Some(p),
        );
        // (`done` already holds the backup counters of the stages so far.)
        next.state = self.state.clone();
        *self = next;
    }

    /// (running stage from 1, stages) for pipelines, (0, 0) otherwise.
    pub fn stage_of(&self) -> (u32, u32) {
        self.pipeline.as_ref().map_or((0, 0), |p| (p.current as u32 + 1, p.user.stages.len() as u32))
    }

    /// Pending task indexes of one kind.
    pub fn pending(&self, kind: TaskKind) -> &BTreeSet<u32> {
        match kind {
            TaskKind::Map => &self.pending_maps,
            TaskKind::Reduce => &self.pending_reduces,
        }
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

    /// Whether every reduce task has committed.
    pub fn reduces_complete(&self) -> bool {
        self.reduces_done as usize == self.reduces.len()
    }

    /// Progress of one kind: (total, done, running).
    pub fn progress(&self, kind: TaskKind) -> (u32, u32, u32) {
        let tasks = self.tasks(kind);
        let done = match kind {
            TaskKind::Map => self.maps_done,
            TaskKind::Reduce => self.reduces_done,
        };
        let running = match kind {
            TaskKind::Map => self.maps_running,
            TaskKind::Reduce => self.reduces_running,
        };
        (tasks.len() as u32, done, running)
    }

    /// The job's counters: the sum over tasks of their committed attempt's counters, so
    /// retried, killed, superseded and re-run attempts never count twice.
    pub fn counters(&self) -> Counters {
        let mut c = Counters::new();
        for t in self.maps.iter().chain(&self.reduces) {
            if let Some(tc) = t.counters() {
                c.merge(tc);
            }
        }
        if let Some(p) = &self.pipeline {
            c.merge(&p.done);
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

    /// Whether any attempt was ever handed out.
    pub fn started(&self) -> bool {
        self.maps.iter().chain(&self.reduces).any(|t| t.attempts > 0)
    }

    /// The URL a map attempt of this coordinator writes its shuffle object to.
    pub fn shuffle_url(&self, idx: u32, attempt: u32) -> StoreUrl {
        self.scratch.join(&format!("map-{idx:05}-e{}-a{attempt}.arrows", self.epoch))
    }

    /// The shuffle object of map `idx`'s output `o` (written under any coordinator epoch).
    pub fn shuffle_url_of(&self, idx: u32, o: &MapOutput) -> StoreUrl {
        self.scratch.join(&format!("map-{idx:05}-e{}-a{}.arrows", o.epoch, o.attempt))
    }

    /// Where reduce attempts write before commit: `OUTPUT/_temporary/JOB/` (hidden from
    /// input listing, removed before `_SUCCESS` is written).
    pub fn temporary_dir(&self) -> StoreUrl {
        temporary_dir(&self.spec.output, &self.id)
    }

    /// The object a reduce attempt writes its part to.
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
        match &self.pipeline {
            Some(p) if p.current + 1 < p.user.stages.len() => {
                self.spec.output.join(&format!("stage{}-part-{idx:05}", p.current))
            }
            _ => self.spec.output.join(&format!("part-{idx:05}")),
        }
    }

    /// The parts committed so far.
    pub fn committed_parts(&self) -> Vec<StoreUrl> {
        let tasks = self.tasks(self.final_kind());
        // A granted commit may have made its part visible before its attempt was lost.
        let written = |t: &Task| t.is_done() || t.granted;
        (0..tasks.len() as u32).filter(|&i| written(&tasks[i as usize])).map(|i| self.part_url(i)).collect()
    }

    /// Ends every live attempt; returns them as (kind, index, attempt, worker).
    fn abort_all(&mut self) -> Vec<(TaskKind, u32, u32, WorkerId)> {
        let mut out = Vec::new();
        for kind in [TaskKind::Map, TaskKind::Reduce] {
            for idx in 0..self.tasks(kind).len() as u32 {
                let aborted = self.with_task(kind, idx, Task::abort).unwrap_or_default();
                out.extend(aborted.into_iter().map(|(a, w)| (kind, idx, a, w)));
            }
        }
        // Aborted tasks are not runnable: the job has ended.
        self.pending_maps.clear();
        self.pending_reduces.clear();
        out
    }
}

/// What a task was before a change, for [`Job::sync`].
struct Before {
    done: bool,
    running: bool,
    pending: bool,
    /// The start of its only live attempt, if it ran exactly one.
    single: Option<Instant>,
}

/// Where reduce attempts of job `id` writing `output` put their parts before commit.
pub fn temporary_dir(output: &StoreUrl, id: &JobId) -> StoreUrl {
    output.join(&format!("_temporary/{id}/"))
}

mod assign;
mod backup;
mod locality;
mod share;
