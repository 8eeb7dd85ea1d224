//! The coordinator's whole state and its transitions: pure and synchronous.
//!
//! Every method takes the current time as an argument and returns the I/O to do as
//! [`Action`]s; the gRPC shell ([`crate::service`]) turns calls and timers into these method
//! calls and performs the actions. Nothing here touches the network, the store or a clock,
//! which is what lets scheduling and failure handling be unit-tested with a fake clock.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use quern_api::split::Split;
use quern_api::{AttemptId, Counters, InputFormat, JobId, StoreUrl, TaskId, WorkerId};

use crate::convert::{CachedRange, Registration};
use crate::job::{Job, JobSpec, JobState, Speculation, Unsuccessful};
use crate::journal::{Ended, Record};
use crate::placement::{Delay, Homes};
use crate::policy::Policy;
use crate::task::Segment;

/// Coordinator settings the state machine needs.
#[derive(Clone, Debug)]
pub struct CoreConfig {
    /// Root of the coordinator's store; intermediates go under `jobs/`.
    pub store: StoreUrl,
    /// A worker silent this long is lost.
    pub heartbeat_timeout: Duration,
    /// Counted failures after which a task (and its job) fails.
    pub max_attempts: u32,
    /// When this coordinator started (ms since epoch), for unique ids.
    pub epoch_ms: u64,
    /// Backup attempts for stragglers; None turns them off.
    pub speculation: Option<Speculation>,
    /// Delay scheduling for data locality.
    pub delay: Delay,
    /// Jobs not yet ended, at most: more submissions are refused until some end.
    pub max_jobs: usize,
    /// A job that no registered worker can run fails after waiting this long.
    pub job_wait: Duration,
    /// A running attempt whose progress stands still this long is failed and run again
    /// (Hadoop's `mapreduce.task.timeout`).
    pub task_timeout: Duration,
    /// Bytes one poll response may carry (a share of the gRPC message limit): assignments
    /// beyond it wait for the next poll.
    pub poll_bytes: usize,
    /// Fair-share preemption (`--preemption on`, fair policy only): a job below its fair
    /// share, with tasks waiting, for longer than this gets slots back from jobs above
    /// theirs. None: off.
    pub preemption: Option<Duration>,
    /// How many ended jobs, and for how long, stay listed (with their archives).
    pub history: History,
}

/// The limits of the history of ended jobs (Hadoop's job history server keeps a week):
/// past either, an ended job whose data is deleted is forgotten.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct History {
    /// Ended jobs kept, at most (`--history-jobs`).
    pub max_jobs: usize,
    /// How long an ended job is kept (`--history-age`).
    pub max_age: Duration,
}

impl Default for History {
    fn default() -> Self {
        History { max_jobs: 1000, max_age: Duration::from_secs(7 * 24 * 3600) }
    }
}

/// Where an ended job's archive (its final status, task list and failed attempts' logs) is
/// kept: a name the coordinator builds from the id alone.
pub fn archive_url(store: &StoreUrl, job: &JobId) -> StoreUrl {
    store.join(&format!("history/{job}.pb"))
}

/// Why a submission cannot be taken next to the jobs already here.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Conflict {
    /// An unfinished job writes the same output.
    #[error("output {output} is being written by job {job}")]
    OutputInUse {
        /// The output.
        output: StoreUrl,
        /// The job writing it.
        job: JobId,
    },
    /// An input lies in (or holds) the output of a job still writing it.
    #[error("input {input} is being written by job {job} (its output {output} is not complete)")]
    InputBeingWritten {
        /// The input.
        input: StoreUrl,
        /// The output it overlaps.
        output: StoreUrl,
        /// The job writing it.
        job: JobId,
    },
    /// Too many jobs have not ended.
    #[error("{0} jobs have not ended yet, the most this coordinator takes (--max-jobs); try again later")]
    TooManyJobs(usize),
}

/// A registered worker.
#[derive(Clone, Debug)]
pub struct WorkerEntry {
    /// Host name, for locality.
    pub host: String,
    /// Rack name, for locality.
    pub rack: String,
    /// Tasks it runs at once.
    pub slots: u32,
    /// Jobs its binary can run.
    pub jobs: BTreeSet<String>,
    /// Directories of input on its own disk (`--local-data`).
    pub local_data: Vec<StoreUrl>,
    /// What its cache holds (`--cache-dir`), as of its last heartbeat.
    pub cached: Vec<CachedRange>,
    /// Last time it called in.
    pub last_seen: Instant,
    /// Attempts running there.
    pub running: BTreeSet<AttemptId>,
    /// Attempts it must abandon (sent with the next heartbeat).
    pub to_cancel: Vec<AttemptId>,
    /// Attempts it completed successfully.
    pub completed: u32,
    /// The secret its calls must carry (its id is public).
    pub(crate) secret: String,
}

impl WorkerEntry {
    /// Whether `given` is this worker's secret (compared in constant time).
    fn is_secret(&self, given: &str) -> bool {
        crate::service::constant_time_eq(self.secret.as_bytes(), given.as_bytes())
    }
}

/// Why an attempt failed, as far as retry policy cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// User code error or panic: counts against `max_attempts`.
    UserCode,
    /// Input unreadable: counts.
    Input,
    /// A map output the reducer needed is gone: re-run that map; does not count.
    MapOutputLost,
    /// Store trouble: counts.
    Store,
    /// The worker could not run the task: counts.
    Config,
    /// Anything else: counts.
    Internal,
}

/// What an attempt reported.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// It finished (and, for reduces, committed).
    Succeeded {
        /// Its counters.
        counters: Counters,
        /// The index of its shuffle object (maps of jobs with reducers): one segment per
        /// reduce task. The object is the one the coordinator named for the attempt.
        segments: Option<Vec<Segment>>,
    },
    /// It failed.
    Failed {
        /// Why, for retry policy.
        kind: FailureKind,
        /// The message to show.
        message: String,
        /// For lost map output: which map's output, written by which attempt.
        lost_map: Option<LostMap>,
    },
    /// It gave up because it was told to.
    Killed,
}

/// A map output a reducer could not use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LostMap {
    /// The map task.
    pub index: u32,
    /// The attempt that wrote the output.
    pub attempt: u32,
}

/// I/O for the shell to perform.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Delete the output's temporary directory, write the empty `_SUCCESS` marker, then
    /// call [`Core::finalized`].
    WriteSuccess {
        /// The job.
        job: JobId,
        /// Its output directory.
        output: StoreUrl,
        /// Its reduce attempts' temporary directory under the output.
        temporary: StoreUrl,
    },
    /// Delete directories (scratch and temporary data) and objects (committed parts of a job
    /// that did not succeed).
    Cleanup {
        /// The job.
        job: JobId,
        /// Directories to delete with everything under them.
        dirs: Vec<StoreUrl>,
        /// Objects to delete.
        objects: Vec<StoreUrl>,
    },
    /// Delete one object (output of an attempt whose result was not taken).
    Delete(StoreUrl),
    /// A pipeline stage may start (its inputs are the job's input or finished stages): list
    /// what it reads, split it, and call [`Core::start_stage`] with the splits (or
    /// [`Core::start_stage_failed`]).
    StartStage {
        /// The job.
        job: JobId,
        /// The stage to start.
        stage: usize,
        /// Directories of earlier stages' output it reads.
        inputs: Vec<StoreUrl>,
        /// Objects of the job's input it reads, as listed at submit.
        objects: Vec<quern_api::split::InputObject>,
        /// Split size.
        split_size: u64,
        /// Its input format.
        input_format: InputFormat,
    },
    /// A pipeline stage finished: delete its part attempts' temporary directory (nothing
    /// reads it; the job's cleanup would delete it at the end anyway).
    ClearStage {
        /// The job.
        job: JobId,
        /// The stage's output directory.
        output: StoreUrl,
        /// Its temporary directory under `output`.
        temporary: StoreUrl,
    },
}

/// The action that writes `_SUCCESS` of `job`, whose every part is committed.
fn write_success(job: &Job) -> Action {
    Action::WriteSuccess { job: job.id().clone(), output: job.user_output().clone(), temporary: job.temporary_dir() }
}

/// The current time: monotonic for timeouts, wall-clock for what users see.
#[derive(Clone, Copy, Debug)]
pub struct Now {
    /// Monotonic time.
    pub at: Instant,
    /// Milliseconds since the Unix epoch.
    pub wall_ms: u64,
}

/// A granted commit: move `temp` to `part`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Promotion {
    /// What the attempt wrote.
    pub temp: StoreUrl,
    /// The part it becomes.
    pub part: StoreUrl,
}

/// A part attempt may upload: the part's URL and where to note the upload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartUpload {
    /// The part (the upload's key).
    pub part: StoreUrl,
    /// The note of the upload in the coordinator's store.
    pub marker: StoreUrl,
}

/// The outcome was not taken.
pub type Rejection = &'static str;

/// All coordinator state.
#[derive(Debug)]
pub struct Core {
    cfg: CoreConfig,
    policy: Box<dyn Policy>,
    /// The jobs, with an index of the running ones that polls read (kept up to date by
    /// [`Core::refresh_index`] before each use).
    jobs: index::Jobs,
    workers: BTreeMap<WorkerId, WorkerEntry>,
    next_job: u64,
    next_worker: u64,
    /// Decisions to journal, drained by the shell while it still holds the lock.
    journal: Vec<Record>,
    /// Fault injection for tests: no reduce task is handed out while set (the shell sets
    /// it from the config's `hold_reduces_while` test hook; the core itself reads no files).
    hold_reduces: bool,
    /// I/O decided where the caller takes no actions back (a poll that failed a job), for
    /// the shell to take with [`Core::take_actions`].
    later: Vec<Action>,
    /// Slots of the workers by the jobs they run, kept in step with registrations, losses
    /// and `running`: a poll's load balancing reads them instead of visiting every worker.
    classes: BTreeMap<BTreeSet<String>, poll::Load>,
    /// Which workers hold which input, for locality without visiting every worker.
    homes: Homes,
    /// Since when each starved job has been below its fair share (`--preemption`).
    starved: BTreeMap<JobId, Instant>,
    /// When workers were last heard from and attempts last progressed, in deadline order.
    deadlines: checks::Deadlines,
    /// Job names no registered worker ran at the last check (see [`Core::fail_unrunnable`]).
    unrunnable_names: BTreeSet<String>,
}

impl Core {
    /// An empty coordinator.
    pub fn new(cfg: CoreConfig, policy: Box<dyn Policy>) -> Self {
        Core {
            cfg,
            policy,
            jobs: index::Jobs::default(),
            workers: BTreeMap::new(),
            next_job: 1,
            next_worker: 1,
            journal: Vec::new(),
            hold_reduces: false,
            later: Vec::new(),
            classes: BTreeMap::new(),
            homes: Homes::default(),
            starved: BTreeMap::new(),
            deadlines: checks::Deadlines::default(),
            unrunnable_names: BTreeSet::new(),
        }
    }

    /// Brings the job index up to date with the jobs changed since its last use.
    fn refresh_index(&mut self) {
        self.jobs.refresh(&*self.policy, self.cfg.speculation.as_ref());
    }

    /// Takes the records to journal, in decision order.
    pub fn take_journal(&mut self) -> Vec<Record> {
        std::mem::take(&mut self.journal)
    }

    /// I/O decided where no actions could be returned, in decision order.
    pub fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.later)
    }

    /// Holds back reduce tasks (a test hook) while `hold` is true.
    pub fn set_hold_reduces(&mut self, hold: bool) {
        self.hold_reduces = hold;
    }

    /// Settings.
    pub fn config(&self) -> &CoreConfig {
        &self.cfg
    }

    /// A job by id.
    pub fn job(&self, id: &JobId) -> Option<&Job> {
        self.jobs.get(id)
    }

    /// All jobs, by id.
    pub fn jobs(&self) -> impl Iterator<Item = &Job> {
        self.jobs.values()
    }

    /// All workers.
    pub fn workers(&self) -> &BTreeMap<WorkerId, WorkerEntry> {
        &self.workers
    }

    /// Whether an unfinished job already writes to `output`.
    pub fn output_in_use(&self, output: &StoreUrl) -> Option<&JobId> {
        // Nested outputs conflict too: one job's cleanup would delete the other's parts.
        let dir = output.as_dir();
        self.jobs.values().find(|j| !j.state().is_final() && j.user_output().as_dir().overlaps(&dir)).map(|j| j.id())
    }

    /// Whether `spec` can run next to the unfinished jobs: it writes no output another one
    /// writes, reads no output still being written (a job reading a half-written directory
    /// would see some of its parts), and the number of unfinished jobs is under the limit.
    pub fn conflicts(&self, spec: &JobSpec) -> Option<Conflict> {
        if let Some(job) = self.output_in_use(&spec.output) {
            return Some(Conflict::OutputInUse { output: spec.output.clone(), job: job.clone() });
        }
        let unfinished: Vec<&Job> = self.jobs.values().filter(|j| !j.state().is_final()).collect();
        for j in &unfinished {
            let output = j.user_output().as_dir();
            if let Some(input) = spec.inputs.iter().find(|i| i.overlaps(&output)) {
                return Some(Conflict::InputBeingWritten { input: input.clone(), output, job: j.id().clone() });
            }
        }
        (unfinished.len() >= self.cfg.max_jobs).then_some(Conflict::TooManyJobs(unfinished.len()))
    }

    // ------------------------------------------------------------------ workers

    /// Registers a worker under a fresh id (with an empty secret: for tests).
    pub fn register(&mut self, host: String, rack: String, slots: u32, jobs: BTreeSet<String>, now: Now) -> WorkerId {
        self.register_with(Registration { host, rack, slots, jobs, local_data: Vec::new() }, String::new(), now)
    }

    /// Whether a call that names `worker` may act for it: it carries the worker's secret, or
    /// names no worker known here (the caller is then told to register).
    pub fn speaks_for(&self, worker: &WorkerId, secret: &str) -> bool {
        self.workers.get(worker).is_none_or(|w| w.is_secret(secret))
    }

    /// Registers a worker as it described itself; its later calls must carry `secret`.
    pub fn register_with(&mut self, r: Registration, secret: String, now: Now) -> WorkerId {
        let id = WorkerId::new(self.cfg.epoch_ms, self.next_worker);
        self.next_worker += 1;
        let entry = WorkerEntry {
            host: r.host,
            rack: r.rack,
            slots: r.slots.max(1),
            jobs: r.jobs,
            local_data: r.local_data,
            cached: Vec::new(),
            last_seen: now.at,
            running: BTreeSet::new(),
            to_cancel: Vec::new(),
            completed: 0,
            secret,
        };
        let class = self.classes.entry(entry.jobs.clone()).or_default();
        class.workers += 1;
        class.slots += entry.slots as usize;
        self.homes.add(&id, &entry);
        self.track_worker(&id, entry.last_seen);
        self.workers.insert(id.clone(), entry);
        id
    }

    /// A reduce attempt asks to commit its part. Granted to one live attempt at a time; the
    /// answer names the attempt's temporary object and the part it becomes, and the shell
    /// moves one to the other. Only the coordinator ever writes a part, so an attempt that was
    /// cut off (a zombie) cannot.
    pub fn commit(&mut self, worker: &WorkerId, attempt: &AttemptId) -> Result<Promotion, Rejection> {
        let mut job = self.jobs.get_mut(&attempt.task.job).ok_or("unknown job")?;
        if !job.is_running() {
            return Err("job is not running");
        }
        let run = job.run_of_mut(attempt.attempt).ok_or("stage is not running")?;
        let kind = run.final_kind();
        if attempt.task.kind != kind {
            return Err("only attempts that write parts commit");
        }
        let (idx, n) = (attempt.task.index, attempt.attempt);
        run.with_task(kind, idx, |t| t.request_commit(n, worker)).ok_or("unknown task")??;
        Ok(Promotion { temp: run.temp_part_url(idx, n), part: run.part_url(idx) })
    }

    /// The store has answered the commit of `attempt` (its part is visible, or it is not):
    /// other attempts of its task may be granted the commit again.
    pub fn commit_done(&mut self, attempt: &AttemptId) {
        if let Some(mut job) = self.jobs.get_mut(&attempt.task.job)
            && let Some(run) = job.run_of_mut(attempt.attempt)
        {
            run.with_task(attempt.task.kind, attempt.task.index, |t| t.published(attempt.attempt));
        }
    }

    /// A live part attempt asks where to upload its part (stores without atomic rename):
    /// its task's part, under a name the coordinator built. Only the commit makes it visible.
    pub fn start_part(&self, worker: &WorkerId, attempt: &AttemptId) -> Result<PartUpload, Rejection> {
        let job = self.jobs.get(&attempt.task.job).ok_or("unknown job")?;
        if !job.is_running() {
            return Err("job is not running");
        }
        let run = job.run_of(attempt.attempt).ok_or("stage is not running")?;
        let kind = run.final_kind();
        if attempt.task.kind != kind {
            return Err("only attempts that write parts upload them");
        }
        let (idx, n) = (attempt.task.index, attempt.attempt);
        let task = run.tasks(kind).get(idx as usize).ok_or("unknown task")?;
        if !task.holds(n, worker) {
            return Err("attempt is not live");
        }
        Ok(PartUpload { part: run.part_url(idx), marker: run.upload_marker_url(idx, n) })
    }

    // ------------------------------------------------------------------ jobs

    /// Accepts a job whose inputs were listed and split by the shell.
    pub fn submit(&mut self, spec: JobSpec, splits: Vec<Split>, now_ms: u64) -> JobId {
        let id = JobId::new(self.cfg.epoch_ms, self.next_job);
        let seq = self.next_job;
        self.next_job += 1;
        let scratch = self.cfg.store.join(&format!("jobs/{id}/"));
        crate::observe::observed().jobs_submitted.inc();
        self.journal.push(Record::JobSubmitted {
            id: id.clone(),
            seq,
            spec: Box::new(spec.clone()),
            splits: splits.clone(),
            submitted_ms: now_ms,
        });
        self.jobs.insert(id.clone(), Job::new(id.clone(), seq, spec, splits, scratch, self.cfg.epoch_ms, now_ms));
        // Pipeline stages that read only the job's input start beside stage 0: the shell
        // takes their starts with [`Core::take_actions`].
        let started = self.stages_moved(&id);
        self.later.extend(started);
        id
    }

    /// Kills a job. Returns its state afterwards (a finished job stays as it was).
    pub fn kill(&mut self, id: &JobId, now_ms: u64) -> Option<(JobState, Vec<Action>)> {
        let job = self.jobs.get(id)?;
        // Once every part is committed, writing `_SUCCESS` is the point of no return: a kill
        // now would delete the parts while the marker is being written.
        if job.state().is_final() || *job.state() == JobState::Committing {
            return Some((job.state().clone(), Vec::new()));
        }
        let actions = self.end_job(id, Unsuccessful::Killed, now_ms);
        Some((self.jobs.get(id)?.state().clone(), actions))
    }

    /// `_SUCCESS` was written (or failed to be).
    pub fn finalized(&mut self, id: &JobId, result: Result<(), String>, now_ms: u64) -> Vec<Action> {
        let Some(mut job) = self.jobs.get_mut(id) else {
            return Vec::new();
        };
        if *job.state() != JobState::Committing {
            return Vec::new();
        }
        match result {
            Ok(()) => {
                job.committed(now_ms);
                self.journal.push(Record::JobEnded { job: id.clone(), outcome: Ended::Succeeded, finished_ms: now_ms });
                vec![Action::Cleanup { job: id.clone(), dirs: vec![job.scratch().clone()], objects: Vec::new() }]
            }
            Err(e) => {
                drop(job);
                self.end_job(id, Unsuccessful::Failed(format!("writing _SUCCESS: {e}")), now_ms)
            }
        }
    }

    /// Keeps the lines failed `attempt` sent back with its report.
    pub fn keep_log(&mut self, attempt: &AttemptId, lines: Vec<String>) {
        if let Some(mut job) = self.jobs.get_mut(&attempt.task.job) {
            let (kind, index) = (attempt.task.kind, attempt.task.index);
            job.keep_log(crate::job::logs::AttemptLog { kind, index, attempt: attempt.attempt, lines });
        }
    }

    /// Ended job `id`'s archive is written: it is answered from there from now on.
    pub fn archived(&mut self, id: &JobId) {
        if let Some(mut job) = self.jobs.get_mut(id) {
            job.mark_archived();
        }
    }

    /// Forgets the ended, cleaned jobs past the history limits, oldest first: they leave
    /// the state and, through the journal, every later replay. Returns the deletes of their
    /// archives.
    pub fn forget_old(&mut self, now_ms: u64) -> Vec<Action> {
        let mut ended: Vec<(u64, JobId)> =
            self.jobs.values().filter_map(|j| Some((j.state().finished_ms()?, j.id().clone()))).collect();
        ended.sort();
        let max_age = u64::try_from(self.cfg.history.max_age.as_millis()).unwrap_or(u64::MAX);
        let over = ended.len().saturating_sub(self.cfg.history.max_jobs);
        let mut actions = Vec::new();
        for (i, (finished, id)) in ended.into_iter().enumerate() {
            let old = i < over || now_ms.saturating_sub(finished) > max_age;
            // Data not yet deleted keeps its job: forgetting it would leave the data to the
            // sweep's rules for unknown jobs.
            if !old || !self.jobs.get(&id).is_some_and(Job::is_cleaned) {
                continue;
            }
            self.jobs.remove(&id);
            self.journal.push(Record::JobForgotten { job: id.clone() });
            actions.push(Action::Delete(archive_url(&self.cfg.store, &id)));
        }
        actions
    }

    /// Every object of ended job `id` outside its output is deleted (its scratch and
    /// temporary directories): journalled, so sweeps need not look for them again.
    pub fn cleaned(&mut self, id: &JobId) {
        if let Some(mut job) = self.jobs.get_mut(id)
            && job.mark_cleaned()
        {
            self.journal.push(Record::JobCleaned { job: id.clone() });
        }
    }

    /// Ends a job that did not succeed: cancels its attempts, and deletes its scratch data
    /// and the parts it committed, so a failed job leaves its output directory as it found it.
    fn end_job(&mut self, id: &JobId, how: Unsuccessful, now_ms: u64) -> Vec<Action> {
        let Some(mut job) = self.jobs.get_mut(id) else {
            return Vec::new();
        };
        let parts = job.committed_parts();
        let outcome = match &how {
            Unsuccessful::Failed(error) => Ended::Failed { error: error.clone() },
            Unsuccessful::Killed => Ended::Killed,
        };
        let Some(aborted) = job.end(how, now_ms) else { return Vec::new() };
        let dirs = vec![job.scratch().clone(), job.temporary_dir()];
        drop(job);
        self.journal.push(Record::JobEnded { job: id.clone(), outcome, finished_ms: now_ms });
        for (kind, index, attempt, worker) in aborted {
            let aid = AttemptId { task: TaskId { job: id.clone(), kind, index }, attempt };
            self.unassign(&worker, &aid);
            if let Some(w) = self.workers.get_mut(&worker) {
                w.to_cancel.push(aid);
            }
        }
        vec![Action::Cleanup { job: id.clone(), dirs, objects: parts }]
    }
}

/// A duration as people write it (`30s`, `1.5s`).
fn humanize(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

mod checks;
mod index;
mod poll;
mod preempt;
mod replay;
mod report;
mod stages;

pub use report::{OutputKeptLost, StoreHint};

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "core_lost_tests.rs"]
mod lost_tests;

#[cfg(test)]
#[path = "core_placement_tests.rs"]
mod placement_tests;

#[cfg(test)]
#[path = "core_preempt_tests.rs"]
mod preempt_tests;

#[cfg(test)]
#[path = "core_dag_tests.rs"]
mod dag_tests;

#[cfg(test)]
#[path = "core_index_tests.rs"]
mod index_tests;

#[cfg(test)]
#[path = "core_history_tests.rs"]
mod history_tests;
