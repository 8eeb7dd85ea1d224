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
//! diagram does not have. The tasks live in the job's running stages ([`StageRun`]): one
//! for a plain job; for a pipeline every stage whose inputs are ready ([`pipeline`]), side by
//! side. The job commits once its last stage's parts are all committed and every other
//! stage has finished.

use std::time::{Duration, Instant};

use quern_api::split::{InputObject, Split};
use quern_api::{Counters, JobId, StoreUrl, TaskKind, WorkerId};

pub use self::pipeline::{Pipeline, StageStart};
use self::stage::StagePlace;
pub use self::stage::{StageRun, stage_of_attempt};
use crate::spec::stage_spec;
pub use crate::spec::{Formats, JobSpec, Stage};

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

/// A job: its lifecycle state, and the task tables of its running stages (one for a plain
/// job; for a pipeline, every stage whose inputs are ready, see [`pipeline`]).
#[derive(Debug)]
pub struct Job {
    /// Its id.
    id: JobId,
    /// Submission order, for FIFO.
    seq: u64,
    /// What the user asked (a pipeline's own spec, with its stages).
    user: JobSpec,
    /// The running stages, by stage index.
    runs: Vec<StageRun>,
    /// Lifecycle state.
    state: JobState,
    /// Wall-clock submit time (ms since epoch).
    submitted_ms: u64,
    /// Where the job's intermediate objects live (`STORE/jobs/ID/`).
    scratch: StoreUrl,
    /// Start time of the coordinator incarnation that runs the job: part of every attempt's
    /// object names, so attempts of an earlier incarnation never collide with new ones.
    epoch: u64,
    /// Set for pipeline jobs.
    pipeline: Option<Pipeline>,
    /// Since when no registered worker could run one of the job's running stages.
    unrunnable_since: Option<Instant>,
    /// Whether the data of the ended job outside its output is known to be deleted.
    cleaned: bool,
    /// Whether the coordinator's job index must look at the job again (set when it was
    /// borrowed for a change, cleared when the index caught up).
    stale: bool,
    /// The lines failed attempts sent back (bounded).
    logs: logs::Logs,
    /// Its attempts' history and logs are in its archive (`crate::history`): written, or
    /// rebuilt from the journal (which does not hold them). Its logs are no longer kept here.
    archived: bool,
}

/// A pipeline stage whose every part is committed, taken out of the running stages.
#[derive(Debug)]
pub struct FinishedStage {
    /// Which stage.
    pub stage: usize,
    /// Its output directory (in the job's scratch directory).
    pub output: StoreUrl,
    /// Its part attempts' temporary directory under `output`, to delete.
    pub temporary: StoreUrl,
    /// Attempts of it still live (a map re-run no reduce needs any more), now ended, to be
    /// cancelled at their workers: (kind, index, attempt, worker).
    pub aborted: Vec<(TaskKind, u32, u32, WorkerId)>,
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
    /// A new running job: a plain job's one stage, or a pipeline's stage 0, with one map
    /// task per split. Other stages of a pipeline start through [`Job::start_stage`].
    pub fn new(
        id: JobId,
        seq: u64,
        spec: JobSpec,
        splits: Vec<Split>,
        scratch: StoreUrl,
        epoch: u64,
        submitted_ms: u64,
    ) -> Self {
        let place = StagePlace { job: &id, scratch: &scratch, epoch };
        let (run, pipeline) = if spec.stages.is_empty() {
            (StageRun::new(place, 0, true, spec.clone(), splits), None)
        } else {
            let mut input_objects: Vec<InputObject> = splits
                .iter()
                .filter(|s| s.url != quern_api::split::GENERATE_URL)
                .map(|s| InputObject { url: s.url.clone(), size: s.object_size })
                .collect();
            input_objects.dedup();
            let first = stage_spec(&spec, 0, &scratch);
            let run = StageRun::new(place, 0, spec.stages.len() == 1, first, splits);
            (run, Some(Pipeline::new(input_objects)))
        };
        Job {
            id,
            seq,
            user: spec,
            runs: vec![run],
            state: JobState::Running,
            submitted_ms,
            scratch,
            epoch,
            pipeline,
            unrunnable_since: None,
            cleaned: false,
            stale: false,
            logs: logs::Logs::default(),
            archived: false,
        }
    }

    /// The lines its failed attempts sent back.
    pub fn logs(&self) -> &logs::Logs {
        &self.logs
    }

    /// Keeps the lines a failed attempt sent back.
    pub fn keep_log(&mut self, log: logs::AttemptLog) {
        self.logs.keep(log);
    }

    /// Marks the job as answered from its archive (written, or rebuilt from the journal),
    /// and drops the logs kept here: only running jobs hold logs in memory.
    pub fn mark_archived(&mut self) {
        self.archived = true;
        self.logs = logs::Logs::default();
    }

    /// Whether the job is answered from its archive.
    pub fn is_archived(&self) -> bool {
        self.archived
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

    /// What the user submitted (a pipeline's own spec; each stage runs its own, see
    /// [`StageRun::spec`]).
    pub fn user_spec(&self) -> &JobSpec {
        &self.user
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

    // ------------------------------------------------------------ stages

    /// The running stages, by stage index (a plain job's one stage is stage 0).
    pub fn runs(&self) -> &[StageRun] {
        &self.runs
    }

    /// Running stage `stage`.
    pub fn run(&self, stage: usize) -> Option<&StageRun> {
        self.runs.iter().find(|r| r.index() == stage)
    }

    /// Running stage `stage`, to change.
    pub fn run_mut(&mut self, stage: usize) -> Option<&mut StageRun> {
        self.runs.iter_mut().find(|r| r.index() == stage)
    }

    /// The running stage attempt number `attempt` belongs to; None if that stage is not
    /// running (finished, not started, or no such stage).
    pub fn run_of(&self, attempt: u32) -> Option<&StageRun> {
        self.run(stage_of_attempt(attempt))
    }

    /// The running stage attempt number `attempt` belongs to, to change.
    pub fn run_of_mut(&mut self, attempt: u32) -> Option<&mut StageRun> {
        self.run_mut(stage_of_attempt(attempt))
    }

    /// How many stages a pipeline has (0 for a plain job).
    pub fn stage_count(&self) -> usize {
        self.user.stages.len()
    }

    /// The stages to show as running (from 0): those running now, or, between stages, the
    /// first not finished (its input is being listed). Empty for a plain job.
    pub fn shown_stages(&self) -> Vec<usize> {
        let Some(p) = &self.pipeline else { return Vec::new() };
        let running: Vec<usize> = self.runs.iter().map(StageRun::index).collect();
        if !running.is_empty() {
            return running;
        }
        (0..self.stage_count()).find(|k| !p.finished.contains(k)).into_iter().collect()
    }

    /// Stage `k`'s job name.
    pub fn stage_job(&self, k: usize) -> Option<&str> {
        self.user.stages.get(k).map(|s| s.job.as_str())
    }

    /// Takes the stages whose every part is committed (all but the last) out of the running
    /// ones, keeping their counters; their live attempts end.
    pub fn finish_stages(&mut self) -> Vec<FinishedStage> {
        let Some(p) = &mut self.pipeline else { return Vec::new() };
        let mut out = Vec::new();
        let mut i = 0;
        while i < self.runs.len() {
            let run = &self.runs[i];
            if run.is_last() || !run.outputs_complete() {
                i += 1;
                continue;
            }
            let mut run = self.runs.remove(i);
            p.done.merge(&run.counters());
            p.finished.insert(run.index());
            out.push(FinishedStage {
                stage: run.index(),
                output: run.spec().output.clone(),
                temporary: run.temporary_dir(),
                aborted: run.abort_all(),
            });
        }
        out
    }

    /// Stages of a running pipeline that may start now, each returned once: their inputs
    /// are the job's input or finished stages. What each reads is [`Job::stage_start`].
    pub fn take_ready_stages(&mut self) -> Vec<usize> {
        match &mut self.pipeline {
            Some(p) if self.state == JobState::Running => p.take_ready(&self.user),
            _ => Vec::new(),
        }
    }

    /// What the shell lists and splits to start stage `k`.
    pub fn stage_start(&self, k: usize) -> Option<StageStart> {
        self.pipeline.as_ref()?.start_of(&self.user, k, &self.scratch)
    }

    /// Starts stage `k` of a pipeline over `splits`; false (nothing changes) if the job is
    /// not a pipeline, has no such stage, or started it already.
    pub fn start_stage(&mut self, k: usize, splits: Vec<Split>) -> bool {
        let n = self.stage_count();
        let Some(p) = &mut self.pipeline else { return false };
        if k >= n || !p.started.insert(k) {
            return false;
        }
        p.requested.remove(&k);
        let place = StagePlace { job: &self.id, scratch: &self.scratch, epoch: self.epoch };
        let run = StageRun::new(place, k, k + 1 == n, stage_spec(&self.user, k, &self.scratch), splits);
        let at = self.runs.partition_point(|r| r.index() < k);
        self.runs.insert(at, run);
        true
    }

    /// Replays a journalled stage start. A record that names no stage was written when
    /// stages ran one at a time, in order: it started the first stage not started yet.
    pub fn restore_stage(&mut self, stage: Option<usize>, splits: Vec<Split>) {
        let n = self.stage_count();
        let Some(k) = stage.or_else(|| self.pipeline.as_ref()?.first_unstarted(n)) else { return };
        self.start_stage(k, splits);
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

    /// Whether every part of every stage is committed: the last stage's are the output.
    pub fn outputs_complete(&self) -> bool {
        let others_done = self.pipeline.as_ref().is_none_or(|p| p.finished.len() + 1 == self.stage_count());
        others_done && self.runs.iter().any(|r| r.is_last() && r.outputs_complete())
    }

    /// Running → Committing, once every part of the last stage is committed (and every
    /// other stage finished).
    pub fn begin_commit(&mut self) -> bool {
        let ok = self.state == JobState::Running && self.outputs_complete();
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
    /// worker runs one of its running stages' jobs): then it should fail.
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

    // ------------------------------------------------------------ output

    /// The output the user asked for (a pipeline's last stage writes it).
    pub fn user_output(&self) -> &StoreUrl {
        &self.user.output
    }

    /// Where the last stage's part attempts write before commit: `OUTPUT/_temporary/JOB/`
    /// (hidden from input listing, removed before `_SUCCESS` is written). Intermediate
    /// stages' temporary directories are in the scratch directory.
    pub fn temporary_dir(&self) -> StoreUrl {
        temporary_dir(&self.user.output, &self.id)
    }

    /// The parts committed so far, of every running stage.
    pub fn committed_parts(&self) -> Vec<StoreUrl> {
        self.runs.iter().flat_map(StageRun::committed_parts).collect()
    }

    /// The job's counters: the sum over tasks of their committed attempt's counters, so
    /// retried, killed, superseded and re-run attempts never count twice, over every stage.
    pub fn counters(&self) -> Counters {
        let mut c = Counters::new();
        for run in &self.runs {
            c.merge(&run.counters());
        }
        if let Some(p) = &self.pipeline {
            c.merge(&p.done);
        }
        c
    }

    /// Whether any attempt was ever handed out.
    pub fn started(&self) -> bool {
        self.pipeline.as_ref().is_some_and(|p| !p.finished.is_empty()) || self.runs.iter().any(StageRun::started)
    }

    /// Progress of one kind over the running stages: (total, done, running).
    pub fn progress(&self, kind: TaskKind) -> (u32, u32, u32) {
        self.runs.iter().map(|r| r.progress(kind)).fold((0, 0, 0), |a, b| (a.0 + b.0, a.1 + b.1, a.2 + b.2))
    }

    /// Ends every live attempt; returns them as (kind, index, attempt, worker).
    fn abort_all(&mut self) -> Vec<(TaskKind, u32, u32, WorkerId)> {
        self.runs.iter_mut().flat_map(StageRun::abort_all).collect()
    }
}

/// Where reduce attempts of job `id` writing `output` put their parts before commit.
pub fn temporary_dir(output: &StoreUrl, id: &JobId) -> StoreUrl {
    output.join(&format!("_temporary/{id}/"))
}

mod assign;
pub mod logs;
pub mod pipeline;
mod share;
mod stage;
