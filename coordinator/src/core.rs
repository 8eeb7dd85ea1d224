//! The coordinator's whole state and its transitions: pure and synchronous.
//!
//! Every method takes the current time as an argument and returns the I/O to do as
//! [`Action`]s; the gRPC shell ([`crate::service`]) turns calls and timers into these method
//! calls and performs the actions. Nothing here touches the network, the store or a clock,
//! which is what lets scheduling and failure handling be unit-tested with a fake clock.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use quern_api::split::Split;
use quern_api::{AttemptId, Counters, JobId, StoreUrl, TaskId, TaskKind, WorkerId, pb};

use crate::job::{Job, JobSpec, JobState};
use crate::policy::Policy;
use crate::task::{FailureEffect, MapOutputMeta, Verdict};

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
    /// Last time it called in.
    pub last_seen: Instant,
    /// Attempts running there.
    pub running: BTreeSet<AttemptId>,
    /// Attempts it must abandon (sent with the next heartbeat).
    pub to_cancel: Vec<AttemptId>,
    /// Attempts it completed successfully.
    pub completed: u32,
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

impl From<pb::FailureKind> for FailureKind {
    fn from(k: pb::FailureKind) -> Self {
        match k {
            pb::FailureKind::UserCode => FailureKind::UserCode,
            pb::FailureKind::Input => FailureKind::Input,
            pb::FailureKind::MapOutputLost => FailureKind::MapOutputLost,
            pb::FailureKind::Store => FailureKind::Store,
            pb::FailureKind::Config => FailureKind::Config,
            pb::FailureKind::Internal | pb::FailureKind::Unspecified => FailureKind::Internal,
        }
    }
}

/// What an attempt reported.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// It finished (and, for reduces, committed).
    Succeeded {
        /// Its counters.
        counters: Counters,
        /// Its shuffle object (maps).
        map_output: Option<MapOutputMeta>,
    },
    /// It failed.
    Failed {
        /// Why, for retry policy.
        kind: FailureKind,
        /// The message to show.
        message: String,
        /// For lost map output: which map.
        lost_map: Option<u32>,
    },
    /// It gave up because it was told to.
    Killed,
}

/// I/O for the shell to perform.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Write the empty `_SUCCESS` marker, then call [`Core::finalized`].
    WriteSuccess {
        /// The job.
        job: JobId,
        /// Its output directory.
        output: StoreUrl,
    },
    /// Delete the job's scratch directory and the given objects (committed parts of a job
    /// that did not succeed).
    Cleanup {
        /// The job.
        job: JobId,
        /// Its scratch directory.
        scratch: StoreUrl,
        /// Other objects to delete.
        delete: Vec<StoreUrl>,
    },
    /// Delete one object (output of an attempt whose result was not taken).
    Delete(StoreUrl),
}

/// The current time: monotonic for timeouts, wall-clock for what users see.
#[derive(Clone, Copy, Debug)]
pub struct Now {
    /// Monotonic time.
    pub at: Instant,
    /// Milliseconds since the Unix epoch.
    pub wall_ms: u64,
}

/// The outcome was not taken.
pub type Rejection = &'static str;

/// All coordinator state.
#[derive(Debug)]
pub struct Core {
    cfg: CoreConfig,
    policy: Box<dyn Policy>,
    jobs: BTreeMap<JobId, Job>,
    workers: BTreeMap<WorkerId, WorkerEntry>,
    next_job: u64,
    next_worker: u64,
}

impl Core {
    /// An empty coordinator.
    pub fn new(cfg: CoreConfig, policy: Box<dyn Policy>) -> Self {
        Core { cfg, policy, jobs: BTreeMap::new(), workers: BTreeMap::new(), next_job: 1, next_worker: 1 }
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
        let dir = output.as_dir();
        self.jobs.values().find(|j| !j.state.is_final() && j.spec.output.as_dir() == dir).map(|j| &j.id)
    }

    // ------------------------------------------------------------------ workers

    /// Registers a worker under a fresh id.
    pub fn register(&mut self, host: String, rack: String, slots: u32, jobs: BTreeSet<String>, now: Now) -> WorkerId {
        let id = WorkerId::new(self.cfg.epoch_ms, self.next_worker);
        self.next_worker += 1;
        let entry = WorkerEntry {
            host,
            rack,
            slots: slots.max(1),
            jobs,
            last_seen: now.at,
            running: BTreeSet::new(),
            to_cancel: Vec::new(),
            completed: 0,
        };
        self.workers.insert(id.clone(), entry);
        id
    }

    /// A heartbeat; returns the attempts to cancel, or None for an unknown worker (which
    /// must register again).
    pub fn heartbeat(&mut self, worker: &WorkerId, now: Now) -> Option<Vec<AttemptId>> {
        let w = self.workers.get_mut(worker)?;
        w.last_seen = now.at;
        Some(std::mem::take(&mut w.to_cancel))
    }

    /// Declares silent workers lost and re-queues their attempts; true if any was lost.
    pub fn tick(&mut self, now: Now) -> bool {
        let timeout = self.cfg.heartbeat_timeout;
        let lost: Vec<WorkerId> = self
            .workers
            .iter()
            .filter(|(_, w)| now.at.saturating_duration_since(w.last_seen) > timeout)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &lost {
            self.worker_lost(id);
        }
        !lost.is_empty()
    }

    /// Forgets a worker and re-queues whatever it was running. Its finished map outputs stay:
    /// they live in the shared store, not on the worker.
    pub fn worker_lost(&mut self, id: &WorkerId) {
        let Some(w) = self.workers.remove(id) else {
            return;
        };
        tracing::warn!(worker = %id, running = w.running.len(), "worker lost");
        for a in &w.running {
            if let Some(job) = self.jobs.get_mut(&a.task.job) {
                job.with_task(a.task.kind, a.task.index, |t| t.worker_lost(id));
            }
        }
    }

    /// A worker asks for up to `free` tasks. None for an unknown worker.
    pub fn poll(&mut self, worker: &WorkerId, free: u32, now: Now) -> Option<Vec<pb::TaskAssignment>> {
        let w = self.workers.get_mut(worker)?;
        w.last_seen = now.at;
        let free = free.min(w.slots.saturating_sub(w.running.len() as u32));
        let can_run = w.jobs.clone();
        let mut out = Vec::new();
        for job_id in self.policy.order(&self.jobs) {
            if out.len() as u32 >= free {
                break;
            }
            let Some(job) = self.jobs.get_mut(&job_id) else {
                continue;
            };
            if !can_run.contains(&job.spec.name) {
                continue;
            }
            while (out.len() as u32) < free {
                let Some((kind, idx)) = job.next_pending() else {
                    break;
                };
                let Some(Some(attempt)) = job.with_task(kind, idx, |t| t.start(worker, now.at)) else {
                    break;
                };
                out.push(job.assignment(kind, idx, attempt));
                let aid = AttemptId { task: TaskId { job: job_id.clone(), kind, index: idx }, attempt };
                if let Some(w) = self.workers.get_mut(worker) {
                    w.running.insert(aid);
                }
            }
        }
        Some(out)
    }

    /// A reduce attempt asks to commit its part.
    pub fn commit(&mut self, worker: &WorkerId, attempt: &AttemptId) -> Result<(), Rejection> {
        let job = self.jobs.get_mut(&attempt.task.job).ok_or("unknown job")?;
        if job.state != JobState::Running {
            return Err("job is not running");
        }
        if attempt.task.kind != TaskKind::Reduce {
            return Err("only reduce attempts commit");
        }
        job.with_task(attempt.task.kind, attempt.task.index, |t| t.request_commit(attempt.attempt, worker))
            .ok_or("unknown task")?
    }

    /// An attempt reports its outcome.
    pub fn report(
        &mut self,
        worker: &WorkerId,
        attempt: &AttemptId,
        outcome: Outcome,
        now: Now,
    ) -> (Result<(), Rejection>, Vec<Action>) {
        if let Some(w) = self.workers.get_mut(worker) {
            w.last_seen = now.at;
            w.running.remove(attempt);
        }
        let mut actions = Vec::new();
        let max = self.cfg.max_attempts;
        let Some(job) = self.jobs.get_mut(&attempt.task.job) else {
            return (Err("unknown job"), actions);
        };
        let (kind, idx, n) = (attempt.task.kind, attempt.task.index, attempt.attempt);
        let result = match outcome {
            Outcome::Succeeded { counters, map_output } => {
                let url = map_output.as_ref().and_then(|m| StoreUrl::parse(&m.url).ok());
                let verdict = if job.state != JobState::Running {
                    Verdict::Stale("job is not running")
                } else {
                    job.with_task(kind, idx, |t| t.succeed(n, worker, map_output, counters, kind == TaskKind::Reduce))
                        .unwrap_or(Verdict::Stale("unknown task"))
                };
                match verdict {
                    Verdict::Accepted => {
                        if kind == TaskKind::Reduce && job.reduces_complete() {
                            job.state = JobState::Committing;
                            actions.push(Action::WriteSuccess { job: job.id.clone(), output: job.spec.output.clone() });
                        }
                        if let Some(w) = self.workers.get_mut(worker) {
                            w.completed += 1;
                        }
                        Ok(())
                    }
                    Verdict::Stale(why) => {
                        // A map output nobody will read: delete it.
                        actions.extend(url.map(Action::Delete));
                        Err(why)
                    }
                }
            }
            Outcome::Failed { kind: fk, message, lost_map } => {
                let counts = fk != FailureKind::MapOutputLost;
                let effect = job
                    .with_task(kind, idx, |t| t.fail(n, worker, &message, counts, max))
                    .unwrap_or(FailureEffect::Stale("unknown task"));
                match effect {
                    FailureEffect::Stale(why) => Err(why),
                    FailureEffect::Retry => {
                        if let (FailureKind::MapOutputLost, Some(m)) = (fk, lost_map) {
                            tracing::warn!(job = %job.id, map = m, "map output lost; running the map again");
                            if let Some(Some(old)) = job.with_task(TaskKind::Map, m, |t| t.output_lost()) {
                                actions.extend(StoreUrl::parse(&old.url).ok().map(Action::Delete));
                            }
                        }
                        Ok(())
                    }
                    FailureEffect::Exhausted(msg) => {
                        let what = if kind == TaskKind::Map { "map" } else { "reduce" };
                        let error = format!("{what} task {idx} {msg}");
                        actions.extend(self.end_job(&attempt.task.job, JobState::Failed { error }, now.wall_ms));
                        Ok(())
                    }
                }
            }
            Outcome::Killed => match job.with_task(kind, idx, |t| t.fail(n, worker, "killed", false, max)) {
                Some(FailureEffect::Stale(why)) => Err(why),
                Some(_) => Ok(()),
                None => Err("unknown task"),
            },
        };
        (result, actions)
    }

    // ------------------------------------------------------------------ jobs

    /// Accepts a job whose inputs were listed and split by the shell.
    pub fn submit(&mut self, spec: JobSpec, splits: Vec<Split>, now_ms: u64) -> JobId {
        let id = JobId::new(self.cfg.epoch_ms, self.next_job);
        let seq = self.next_job;
        self.next_job += 1;
        let scratch = self.cfg.store.join(&format!("jobs/{id}/"));
        self.jobs.insert(id.clone(), Job::new(id.clone(), seq, spec, splits, scratch, now_ms));
        id
    }

    /// Kills a job. Returns its state afterwards (a finished job stays as it was).
    pub fn kill(&mut self, id: &JobId, now_ms: u64) -> Option<(JobState, Vec<Action>)> {
        let job = self.jobs.get(id)?;
        if job.state.is_final() {
            return Some((job.state.clone(), Vec::new()));
        }
        let actions = self.end_job(id, JobState::Killed, now_ms);
        Some((JobState::Killed, actions))
    }

    /// `_SUCCESS` was written (or failed to be).
    pub fn finalized(&mut self, id: &JobId, result: Result<(), String>, now_ms: u64) -> Vec<Action> {
        let Some(job) = self.jobs.get_mut(id) else {
            return Vec::new();
        };
        if job.state != JobState::Committing {
            return Vec::new();
        }
        match result {
            Ok(()) => {
                job.state = JobState::Succeeded;
                job.finished_ms = Some(now_ms);
                vec![Action::Cleanup { job: id.clone(), scratch: job.scratch.clone(), delete: Vec::new() }]
            }
            Err(e) => self.end_job(id, JobState::Failed { error: format!("writing _SUCCESS: {e}") }, now_ms),
        }
    }

    /// Ends a job that did not succeed: cancels its attempts, and deletes its scratch data
    /// and the parts it committed, so a failed job leaves its output directory as it found it.
    fn end_job(&mut self, id: &JobId, state: JobState, now_ms: u64) -> Vec<Action> {
        let Some(job) = self.jobs.get_mut(id) else {
            return Vec::new();
        };
        let aborted = job.abort_all();
        let parts = job.committed_parts();
        job.state = state;
        job.finished_ms = Some(now_ms);
        let scratch = job.scratch.clone();
        for (kind, index, attempt, worker) in aborted {
            let aid = AttemptId { task: TaskId { job: id.clone(), kind, index }, attempt };
            if let Some(w) = self.workers.get_mut(&worker) {
                w.running.remove(&aid);
                w.to_cancel.push(aid);
            }
        }
        vec![Action::Cleanup { job: id.clone(), scratch, delete: parts }]
    }
}

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;
