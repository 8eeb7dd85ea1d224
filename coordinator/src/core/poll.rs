//! Handing out work, as named steps of [`Core::poll`]: the worker's fair share of the free
//! slots, pending tasks in policy order (maps by locality with delay scheduling, reduces by
//! what the worker caches), then backup attempts of stragglers.

use prost::Message;
use quern_api::{AttemptId, JobId, TaskId, TaskKind, WorkerId, pb};

use super::{Core, Now};
use crate::job::Unsuccessful;
use crate::placement;
use crate::policy::OrderKey;
use crate::task::Task;

impl Core {
    /// `attempt` no longer runs on `worker` (it ended, was cancelled or taken back): its
    /// slot is free. True if it was running there.
    pub(super) fn unassign(&mut self, worker: &WorkerId, attempt: &AttemptId) -> bool {
        let Some(w) = self.workers.get_mut(worker) else { return false };
        let removed = w.running.remove(attempt);
        if removed && let Some(c) = self.classes.get_mut(&w.jobs) {
            c.busy = c.busy.saturating_sub(1);
        }
        removed
    }

    /// A worker asks for up to `free` tasks. None for an unknown worker. Pending tasks come
    /// first, in policy order; then, with slots left, backups of stragglers.
    pub fn poll(&mut self, worker: &WorkerId, free: u32, now: Now) -> Option<Vec<pb::TaskAssignment>> {
        let w = self.workers.get_mut(worker)?;
        w.last_seen = now.at;
        let free = free.min(w.slots.saturating_sub(w.running.len() as u32)) as usize;
        let Plan { mut pending, mut backups, runnable, names } = self.plan(worker);
        let free = self.fair_share(free, runnable, &names);
        let mut out = Batch::default();
        // Jobs are taken from the heap in policy order only as long as slots are left: a
        // poll that fills up on the first job never orders the others.
        while out.tasks.len() < free {
            let Some(std::cmp::Reverse((key, job_id))) = pending.pop() else { break };
            self.start_pending(worker, &job_id, free, now, &mut out);
            // Starting its last pending tasks may make the job a candidate for backups.
            backups.push((key, job_id));
        }
        if self.cfg.speculation.is_some() && out.tasks.len() < free {
            backups.sort_unstable_by_key(|(k, _)| *k);
            backups.dedup_by(|a, b| a.1 == b.1);
            for (_, job_id) in &backups {
                self.start_backups(worker, job_id, free, now, &mut out);
            }
        }
        let started = out.started.len();
        if let Some(w) = self.workers.get_mut(worker) {
            w.running.extend(out.started);
            if let Some(c) = self.classes.get_mut(&w.jobs) {
                c.busy += started;
            }
        }
        for (id, error) in out.too_big {
            let actions = self.end_job(&id, Unsuccessful::Failed(error), now.wall_ms);
            self.later.extend(actions);
        }
        Some(out.tasks)
    }

    /// One pass over the jobs for a poll by `worker`: the jobs it can run that have
    /// runnable tasks, as a heap in policy order; those that may need backups; how many
    /// tasks it could run; and the names of the running jobs it runs.
    fn plan(&self, worker: &WorkerId) -> Plan {
        let mut plan = Plan::default();
        let Some(w) = self.workers.get(worker) else { return plan };
        // Jobs mostly share a few names: the last answer is reused for the same name.
        let mut last: Option<(&str, bool)> = None;
        for job in self.jobs.values().filter(|j| j.is_running()) {
            // A pipeline's running stages may run different jobs: only those the worker
            // runs count.
            let (mut runnable, mut backups) = (0, false);
            for run in job.runs() {
                let name = run.spec().name.as_str();
                let runs = match last {
                    Some((n, runs)) if n == name => runs,
                    _ => w.jobs.contains(name),
                };
                last = Some((name, runs));
                if !runs {
                    continue;
                }
                if !plan.names.iter().any(|n| n == name) {
                    plan.names.push(name.to_string());
                }
                runnable += run.runnable();
                backups |= run.may_back_up();
            }
            plan.runnable += runnable;
            if runnable > 0 {
                plan.pending.push(std::cmp::Reverse((self.policy.key(job), job.id().clone())));
            } else if backups {
                plan.backups.push((self.policy.key(job), job.id().clone()));
            }
        }
        plan
    }

    /// Load balancing: when there are fewer runnable tasks than free slots in the cluster, a
    /// worker gets a share in proportion to its free slots, so one big worker polling first
    /// does not take everything while others idle. `runnable` counts the tasks of the
    /// running jobs named `names` (those the worker runs); the cluster's free slots are
    /// those of workers that run any of them.
    fn fair_share(&self, free: usize, runnable: usize, names: &[String]) -> usize {
        // The free slots are at most all slots: with that many runnable tasks there is no
        // need to count them.
        let all: usize = self.classes.values().map(|c| c.slots).sum();
        if runnable >= all {
            return free;
        }
        let cluster_free: usize = self
            .classes
            .iter()
            .filter(|(jobs, _)| names.iter().any(|n| jobs.contains(n)))
            .map(|(_, c)| c.slots.saturating_sub(c.busy))
            .sum();
        if runnable < cluster_free { free.min((runnable * free).div_ceil(cluster_free.max(1)).max(1)) } else { free }
    }

    /// Starts pending tasks of one job on `worker` while it has slots (of `free`) left: of
    /// every running stage the worker runs, in stage order.
    fn start_pending(&mut self, worker: &WorkerId, job_id: &JobId, free: usize, now: Now, out: &mut Batch) {
        for stage in self.stages_for(worker, job_id) {
            self.start_pending_of(worker, job_id, stage, free, now, out);
        }
    }

    /// The running stages of job `job_id` that `worker` runs, if the job is running.
    fn stages_for(&self, worker: &WorkerId, job_id: &JobId) -> Vec<usize> {
        let (Some(me), Some(job)) = (self.workers.get(worker), self.jobs.get(job_id)) else { return Vec::new() };
        if !job.is_running() {
            return Vec::new();
        }
        job.runs().iter().filter(|r| me.jobs.contains(&r.spec().name)).map(|r| r.index()).collect()
    }

    /// Starts pending tasks of one running stage on `worker` while it has slots left.
    fn start_pending_of(
        &mut self,
        worker: &WorkerId,
        job_id: &JobId,
        stage: usize,
        free: usize,
        now: Now,
        out: &mut Batch,
    ) {
        let hold_reduces = self.hold_reduces;
        let Some(me) = self.workers.get(worker) else { return };
        let Some(job) = self.jobs.get_mut(job_id) else { return };
        let Some(run) = job.run_mut(stage) else { return };
        if out.tasks.len() >= free {
            return;
        }
        // A task that failed on this worker goes elsewhere, unless no other worker that can
        // run the stage is left to try. (Looked at only for such a task: it visits every
        // worker.)
        let workers = &self.workers;
        let name = run.spec().name.clone();
        let allowed = |t: &Task| {
            !t.failed_on.contains(worker)
                || workers
                    .iter()
                    .filter(|(id, e)| *id != worker && e.jobs.contains(&name))
                    .all(|(o, _)| t.failed_on.contains(o))
        };
        while out.tasks.len() < free {
            let Some((kind, first)) = run.next_pending(allowed) else { break };
            let candidates =
                run.pending(kind).iter().copied().filter(|&i| run.tasks(kind).get(i as usize).is_some_and(allowed));
            let (idx, level) = match kind {
                TaskKind::Map => {
                    // Data locality with delay scheduling among the pending maps.
                    let max = placement::allowed(run.waiting_since(), now.at, &self.cfg.delay);
                    let splits = candidates
                        .filter_map(|i| run.splits().get(i as usize).map(|s| (i, (s.url.as_str(), s.start, s.end))));
                    match placement::pick(splits, me, &self.homes, max) {
                        Some((i, l)) => (i, Some(l)),
                        None => {
                            run.passed_up(now.at);
                            break;
                        }
                    }
                }
                TaskKind::Reduce if hold_reduces => break,
                // The reduce whose partition this worker's cache holds most of.
                TaskKind::Reduce => (run.best_reduce_for(candidates, &me.cached).unwrap_or(first), None),
            };
            let bytes = run.assignment(kind, idx, run.next_attempt(kind, idx)).encoded_len();
            if !fits(self.cfg.poll_bytes, job_id, bytes, out) {
                break;
            }
            let Some(attempt) = run.start_attempt(kind, idx, worker, now.at, level) else { break };
            out.push(run.assignment(kind, idx, attempt), bytes, job_id, kind, idx);
        }
    }

    /// Starts backup attempts of one job's stragglers on `worker` while it has slots left.
    fn start_backups(&mut self, worker: &WorkerId, job_id: &JobId, free: usize, now: Now, out: &mut Batch) {
        let Some(spec) = &self.cfg.speculation else { return };
        for stage in self.stages_for(worker, job_id) {
            let Some(run) = self.jobs.get_mut(job_id).and_then(|j| j.run_mut(stage)) else { continue };
            while out.tasks.len() < free {
                let Some((kind, idx)) = run.backup_candidate(worker, now.at, spec) else { break };
                let bytes = run.assignment(kind, idx, run.next_attempt(kind, idx)).encoded_len();
                if out.bytes + bytes > self.cfg.poll_bytes {
                    break;
                }
                let Some(attempt) = run.start_backup(kind, idx, worker, now.at) else { break };
                tracing::info!(job = %job_id, stage, ?kind, idx, attempt, "starting a backup attempt of a straggler");
                out.push(run.assignment(kind, idx, attempt), bytes, job_id, kind, idx);
            }
        }
    }
}

/// The slots of the workers that run one set of jobs.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Load {
    pub(super) workers: usize,
    pub(super) slots: usize,
    pub(super) busy: usize,
}

/// What [`Core::plan`] found.
#[derive(Default)]
struct Plan {
    pending: std::collections::BinaryHeap<std::cmp::Reverse<(OrderKey, JobId)>>,
    backups: Vec<(OrderKey, JobId)>,
    runnable: usize,
    names: Vec<String>,
}

/// What one poll hands out: the assignments, their size on the wire, the attempts started,
/// and jobs with a task too big for any response.
#[derive(Default)]
struct Batch {
    tasks: Vec<pb::TaskAssignment>,
    bytes: usize,
    started: Vec<AttemptId>,
    too_big: Vec<(JobId, String)>,
}

impl Batch {
    fn push(&mut self, a: pb::TaskAssignment, bytes: usize, job: &JobId, kind: TaskKind, index: u32) {
        let attempt = a.attempt.as_ref().map_or(0, |r| r.attempt);
        self.started.push(AttemptId { task: TaskId { job: job.clone(), kind, index }, attempt });
        self.tasks.push(a);
        self.bytes += bytes;
    }
}

/// Whether an assignment of `bytes` still fits a response of at most `limit` bytes; a job
/// whose single assignment can never fit fails (its maps list too many outputs for
/// `--max-message`).
fn fits(limit: usize, job: &JobId, bytes: usize, out: &mut Batch) -> bool {
    if out.bytes + bytes <= limit {
        return true;
    }
    if out.tasks.is_empty() && !out.too_big.iter().any(|(id, _)| id == job) {
        out.too_big.push((
            job.clone(),
            format!(
                "a task of this job is {bytes} bytes on the wire, more than a message may carry \
                     (raise --max-message on the coordinator and workers, or --split-size)"
            ),
        ));
    }
    false
}
