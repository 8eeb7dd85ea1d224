//! What the scheduling policy and preemption read of a job at every poll and tick, kept as
//! counts so that reading them costs the same however many tasks the job has.

use std::time::Instant;

use quern_api::{TaskKind, WorkerId};

use crate::placement::Level;

use super::{Job, JobState};

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

    /// Tasks with a live attempt (maps and reduces).
    pub fn running(&self) -> u32 {
        self.maps_running + self.reduces_running
    }

    /// Bytes of input of the running stage.
    pub fn input_bytes(&self) -> u64 {
        self.input_bytes
    }

    /// Tasks that could start now: pending maps, and pending reduces once every map is
    /// done (whoever the worker; `failed_on` is not looked at).
    pub fn runnable(&self) -> usize {
        if self.state != JobState::Running {
            return 0;
        }
        let reduces = if self.maps_complete() { self.pending_reduces.len() } else { 0 };
        self.pending_maps.len() + reduces
    }

    /// Whether [`Job::backup_candidate`] may find a straggler (its phase has nothing
    /// pending and some task of it finished): cheap, checked before the scan.
    pub fn may_back_up(&self) -> bool {
        if self.state != JobState::Running {
            return false;
        }
        let (pending, times) = if self.maps_complete() {
            (&self.pending_reduces, &self.reduce_times)
        } else {
            (&self.pending_maps, &self.map_times)
        };
        pending.is_empty() && !times.is_empty()
    }

    /// Attempts taken back from the job to serve starved jobs.
    pub fn preempted(&self) -> u32 {
        self.preempted
    }

    /// Takes back live attempt `attempt` of task `idx` (preemption): the attempt ends
    /// without counting as a failure, and the task is pending again unless another attempt
    /// of it still runs. Returns the worker it ran on; None if it is not live (or holds the
    /// commit, which is never taken back: its part may be becoming visible).
    pub fn preempt(&mut self, kind: TaskKind, idx: u32, attempt: u32) -> Option<quern_api::WorkerId> {
        let worker = self.with_task(kind, idx, |t| t.preempt(attempt)).flatten()?;
        self.preempted += 1;
        Some(worker)
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

    /// Live attempts of the job as (kind, index, attempt, worker, since).
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
}
