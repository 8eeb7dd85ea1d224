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

use quern_api::JobId;

use crate::job::Job;

/// Where a job stands in a policy's order: smaller first. Comparing keys gives the same
/// order as sorting the jobs, so a poll can compute each job's key once and take the jobs
/// it needs from a heap instead of sorting them all.
#[derive(Clone, Copy, Debug)]
pub struct OrderKey {
    /// The policy's main measure (the fair share's running tasks per unit of weight).
    pub share: f64,
    /// Next (negated priority, input bytes).
    pub rank: i64,
    /// Submission order, last: no two jobs tie.
    pub seq: u64,
}

impl Ord for OrderKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.share.total_cmp(&other.share).then(self.rank.cmp(&other.rank)).then(self.seq.cmp(&other.seq))
    }
}

impl PartialOrd for OrderKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for OrderKey {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for OrderKey {}

/// Orders the jobs that may receive work.
pub trait Policy: Send + Sync + std::fmt::Debug {
    /// Job `j`'s place in the order now (read from counts the job keeps, never a scan of
    /// its tasks: it is computed for every live job at every poll).
    fn key(&self, j: &Job) -> OrderKey;

    /// Jobs not ended, in the order their pending tasks should be offered.
    fn order(&self, jobs: &BTreeMap<JobId, Job>) -> Vec<JobId> {
        let mut v: Vec<(OrderKey, &Job)> =
            jobs.values().filter(|j| !j.state().is_final()).map(|j| (self.key(j), j)).collect();
        v.sort_by_key(|(k, _)| *k);
        v.into_iter().map(|(_, j)| j.id().clone()).collect()
    }
}

/// First submitted, first served.
#[derive(Debug, Default, Clone, Copy)]
pub struct Fifo;

impl Policy for Fifo {
    fn key(&self, j: &Job) -> OrderKey {
        OrderKey { share: 0.0, rank: 0, seq: j.seq() }
    }
}

/// Highest priority first, then first submitted first (Hadoop's FIFO scheduler with job
/// priorities).
#[derive(Debug, Default, Clone, Copy)]
pub struct PriorityFifo;

impl Policy for PriorityFifo {
    fn key(&self, j: &Job) -> OrderKey {
        OrderKey { share: 0.0, rank: -i64::from(j.user_spec().priority), seq: j.seq() }
    }
}

/// Weighted fair sharing: fewest running tasks per unit of weight (2^priority) first.
#[derive(Debug, Default, Clone, Copy)]
pub struct Fair;

/// A job's weight under [`Fair`]: 2^priority (priorities clamped to -20..=20).
pub fn weight(j: &Job) -> f64 {
    2f64.powi(j.user_spec().priority.clamp(-20, 20))
}

impl Policy for Fair {
    fn key(&self, j: &Job) -> OrderKey {
        let share = f64::from(j.running()) / weight(j);
        OrderKey { share, rank: -i64::from(j.user_spec().priority), seq: j.seq() }
    }
}

/// Shortest job (by input bytes) first, then FIFO.
#[derive(Debug, Default, Clone, Copy)]
pub struct ShortestFirst;

impl Policy for ShortestFirst {
    fn key(&self, j: &Job) -> OrderKey {
        OrderKey { share: 0.0, rank: i64::try_from(j.input_bytes()).unwrap_or(i64::MAX), seq: j.seq() }
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
    /// Whether this is the fair policy (the one preemption works with).
    pub fn is_fair(self) -> bool {
        self == PolicyKind::Fair
    }

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
    use quern_api::{StoreUrl, TaskKind, WorkerId};

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
            j.run_mut(0)
                .unwrap()
                .with_task(TaskKind::Map, i, |t| t.start(&WorkerId::new(1, u64::from(i)), Instant::now()));
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
