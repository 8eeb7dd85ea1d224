//! Scheduling policy: which job's task a free worker slot gets. Kept apart from the state
//! machines and from the RPC handlers so it can be swapped and tested alone.

use std::collections::BTreeMap;

use quern_api::JobId;

use crate::job::Job;

/// Orders the jobs that may receive work.
pub trait Policy: Send + Sync + std::fmt::Debug {
    /// Jobs in the order their pending tasks should be offered.
    fn order(&self, jobs: &BTreeMap<JobId, Job>) -> Vec<JobId>;
}

/// Highest priority first, then first submitted first (Hadoop's default FIFO scheduler with
/// job priorities).
#[derive(Debug, Default, Clone, Copy)]
pub struct PriorityFifo;

impl Policy for PriorityFifo {
    fn order(&self, jobs: &BTreeMap<JobId, Job>) -> Vec<JobId> {
        let mut v: Vec<&Job> = jobs.values().filter(|j| !j.state.is_final()).collect();
        v.sort_by_key(|j| (std::cmp::Reverse(j.spec.priority), j.seq));
        v.into_iter().map(|j| j.id.clone()).collect()
    }
}
