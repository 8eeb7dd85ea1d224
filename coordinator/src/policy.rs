//! Scheduling policy: which job's task a free worker slot gets. Kept apart from the state
//! machines and from the RPC handlers so it can be swapped and tested alone.
//!
//! - [`Fifo`]: first submitted, first served.
//! - [`PriorityFifo`]: highest `--priority` first, then FIFO.
//! - [`Fair`] (the default): fair sharing between running jobs, weighted by priority: the job
//!   with the fewest running tasks per unit of weight goes first, a job of priority p weighing
//!   2^p; so a small high-priority job is never starved by a large low-priority one, and jobs
//!   of equal priority share the cluster equally.
//! - [`ShortestFirst`]: smallest estimated input first.

use std::collections::BTreeMap;
use std::str::FromStr;

use quern_api::{JobId, TaskKind};

use crate::job::Job;

/// Orders the jobs that may receive work.
pub trait Policy: Send + Sync + std::fmt::Debug {
    /// Jobs in the order their pending tasks should be offered.
    fn order(&self, jobs: &BTreeMap<JobId, Job>) -> Vec<JobId>;
}

fn live(jobs: &BTreeMap<JobId, Job>) -> Vec<&Job> {
    jobs.values().filter(|j| !j.state().is_final()).collect()
}

fn ids(v: Vec<&Job>) -> Vec<JobId> {
    v.into_iter().map(|j| j.id().clone()).collect()
}

/// First submitted, first served.
#[derive(Debug, Default, Clone, Copy)]
pub struct Fifo;

impl Policy for Fifo {
    fn order(&self, jobs: &BTreeMap<JobId, Job>) -> Vec<JobId> {
        let mut v = live(jobs);
        v.sort_by_key(|j| j.seq());
        ids(v)
    }
}

/// Highest priority first, then first submitted first (Hadoop's FIFO scheduler with job
/// priorities).
#[derive(Debug, Default, Clone, Copy)]
pub struct PriorityFifo;

impl Policy for PriorityFifo {
    fn order(&self, jobs: &BTreeMap<JobId, Job>) -> Vec<JobId> {
        let mut v = live(jobs);
        v.sort_by_key(|j| (std::cmp::Reverse(j.spec().priority), j.seq()));
        ids(v)
    }
}

/// Weighted fair sharing: fewest running tasks per unit of weight (2^priority) first.
#[derive(Debug, Default, Clone, Copy)]
pub struct Fair;

fn running(j: &Job) -> u32 {
    j.progress(TaskKind::Map).2 + j.progress(TaskKind::Reduce).2
}

impl Policy for Fair {
    fn order(&self, jobs: &BTreeMap<JobId, Job>) -> Vec<JobId> {
        let mut v = live(jobs);
        let share = |j: &Job| f64::from(running(j)) / 2f64.powi(j.spec().priority.clamp(-20, 20));
        v.sort_by(|a, b| {
            share(a).total_cmp(&share(b)).then(b.spec().priority.cmp(&a.spec().priority)).then(a.seq().cmp(&b.seq()))
        });
        ids(v)
    }
}

/// Shortest job (by input bytes) first, then FIFO.
#[derive(Debug, Default, Clone, Copy)]
pub struct ShortestFirst;

impl Policy for ShortestFirst {
    fn order(&self, jobs: &BTreeMap<JobId, Job>) -> Vec<JobId> {
        let mut v = live(jobs);
        v.sort_by_key(|j| (j.splits().iter().map(|s| s.end - s.start).sum::<u64>(), j.seq()));
        ids(v)
    }
}

/// The policies by name, for `--policy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PolicyKind {
    /// [`Fair`].
    #[default]
    Fair,
    /// [`Fifo`].
    Fifo,
    /// [`PriorityFifo`].
    Priority,
    /// [`ShortestFirst`].
    Sjf,
}

impl PolicyKind {
    /// The policy itself.
    pub fn build(self) -> Box<dyn Policy> {
        match self {
            PolicyKind::Fair => Box::new(Fair),
            PolicyKind::Fifo => Box::new(Fifo),
            PolicyKind::Priority => Box::new(PriorityFifo),
            PolicyKind::Sjf => Box::new(ShortestFirst),
        }
    }
}

impl FromStr for PolicyKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "fair" => Ok(PolicyKind::Fair),
            "fifo" => Ok(PolicyKind::Fifo),
            "priority" => Ok(PolicyKind::Priority),
            "sjf" => Ok(PolicyKind::Sjf),
            other => Err(format!("unknown policy {other:?} (fair, fifo, priority or sjf)")),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use quern_api::split::Split;
    use quern_api::{StoreUrl, WorkerId};

    use super::*;
    use crate::job::JobSpec;

    fn job(seq: u64, priority: i32, maps: usize, running: usize) -> Job {
        let spec = JobSpec {
            name: "wordcount".into(),
            inputs: vec![],
            output: StoreUrl::parse(&format!("memory:///out{seq}/")).unwrap(),
            reducers: 1,
            split_size: 10,
            params: Default::default(),
            priority,
            skip_bad_records: false,
            stages: Vec::new(),
            side: Default::default(),
            formats: Default::default(),
            generate_rows: 0,
        };
        let splits =
            (0..maps).map(|i| Split { url: format!("memory:///{i}"), start: 0, end: 10, object_size: 10 }).collect();
        let mut j = Job::new(JobId::new(1, seq), seq, spec, splits, StoreUrl::parse("memory:///s/").unwrap(), 1, 0);
        for i in 0..running as u32 {
            j.with_task(TaskKind::Map, i, |t| t.start(&WorkerId::new(1, u64::from(i)), Instant::now()));
        }
        j
    }

    fn all(v: Vec<Job>) -> BTreeMap<JobId, Job> {
        v.into_iter().map(|j| (j.id().clone(), j)).collect()
    }

    fn seqs(order: Vec<JobId>) -> Vec<String> {
        order.iter().map(|id| id.to_string()).collect()
    }

    #[test]
    fn fifo_and_priority_orders() {
        let jobs = all(vec![job(1, 0, 5, 0), job(2, 3, 5, 0), job(3, 3, 5, 0)]);
        assert_eq!(seqs(Fifo.order(&jobs)), ["job_1_0001", "job_1_0002", "job_1_0003"]);
        assert_eq!(seqs(PriorityFifo.order(&jobs)), ["job_1_0002", "job_1_0003", "job_1_0001"]);
    }

    #[test]
    fn fair_shares_by_running_tasks_weighted_by_priority() {
        // Equal priority: the job with fewer running tasks goes first.
        let jobs = all(vec![job(1, 0, 10, 4), job(2, 0, 10, 1)]);
        assert_eq!(seqs(Fair.order(&jobs))[0], "job_1_0002");
        // A big low-priority job running 8 tasks vs a small priority-3 job running 2: the
        // small one has a share of 2/8 and goes first until it runs 8x as many.
        let jobs = all(vec![job(1, 0, 100, 8), job(2, 3, 20, 2)]);
        assert_eq!(seqs(Fair.order(&jobs))[0], "job_1_0002");
        let jobs = all(vec![job(1, 0, 100, 1), job(2, 3, 20, 16)]);
        assert_eq!(seqs(Fair.order(&jobs))[0], "job_1_0001", "the big job still gets its share");
    }

    #[test]
    fn shortest_first_by_input_bytes() {
        let jobs = all(vec![job(1, 0, 50, 0), job(2, 0, 2, 0), job(3, 0, 10, 0)]);
        assert_eq!(seqs(ShortestFirst.order(&jobs)), ["job_1_0002", "job_1_0003", "job_1_0001"]);
    }

    #[test]
    fn policy_names_parse() {
        assert_eq!("fair".parse::<PolicyKind>(), Ok(PolicyKind::Fair));
        assert!("lottery".parse::<PolicyKind>().is_err());
    }
}
