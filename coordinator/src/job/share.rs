//! What the scheduling policy and preemption read of a job at every poll and tick: sums over
//! its running stages of counts each stage keeps, so that reading them costs the same however
//! many tasks the job has. A pipeline's stages share the job's priority and fair share.

use std::time::Instant;

use quern_api::{TaskKind, WorkerId};

use super::{Job, JobState, StageRun};

impl Job {
    /// Notes that the coordinator's job index must look at the job again; true if that is
    /// news (the job is not already waiting for it).
    pub(crate) fn mark_stale(&mut self) -> bool {
        !std::mem::replace(&mut self.stale, true)
    }

    /// The index has caught up with the job.
    pub(crate) fn mark_indexed(&mut self) {
        self.stale = false;
    }

    /// Tasks with a live attempt (maps and reduces, every running stage).
    pub fn running(&self) -> u32 {
        self.runs.iter().map(StageRun::running).sum()
    }

    /// Bytes of input of the running stages.
    pub fn input_bytes(&self) -> u64 {
        self.runs.iter().map(StageRun::input_bytes).sum()
    }

    /// Tasks that could start now: pending maps, and pending reduces of stages whose maps
    /// are all done (whoever the worker; `failed_on` is not looked at).
    pub fn runnable(&self) -> usize {
        if self.state != JobState::Running {
            return 0;
        }
        self.runs.iter().map(StageRun::runnable).sum()
    }

    /// Attempts taken back from the job to serve starved jobs.
    pub fn preempted(&self) -> u32 {
        self.runs.iter().map(StageRun::preempted).sum()
    }

    /// Takes back live attempt `attempt` of task `idx` of the stage it belongs to (see
    /// [`StageRun::preempt`]). Returns the worker it ran on.
    pub fn preempt(&mut self, kind: TaskKind, idx: u32, attempt: u32, now: Instant) -> Option<WorkerId> {
        self.run_of_mut(attempt)?.preempt(kind, idx, attempt, now)
    }

    /// (node-local, rack-local, remote) counts over succeeded maps of the running stages.
    pub fn locality(&self) -> (u32, u32, u32) {
        self.runs.iter().map(StageRun::locality).fold((0, 0, 0), |a, b| (a.0 + b.0, a.1 + b.1, a.2 + b.2))
    }

    /// Live attempts of the job as (kind, index, attempt, worker, since); the attempt
    /// number names the stage.
    pub fn live_attempts(&self) -> Vec<(TaskKind, u32, u32, WorkerId, Instant)> {
        self.runs.iter().flat_map(StageRun::live_attempts).collect()
    }
}
