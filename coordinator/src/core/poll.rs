//! Handing out work, as named steps of [`Core::poll`]: the worker's fair share of the free
//! slots, pending tasks in policy order (maps by locality with delay scheduling, reduces by
//! what the worker caches), then backup attempts of stragglers.

use quern_api::{AttemptId, JobId, TaskId, TaskKind, WorkerId, pb};

use super::{Core, Now};
use crate::job::Job;
use crate::placement;
use crate::task::Task;

impl Core {
    /// A worker asks for up to `free` tasks. None for an unknown worker. Pending tasks come
    /// first, in policy order; then, with slots left, backups of stragglers.
    pub fn poll(&mut self, worker: &WorkerId, free: u32, now: Now) -> Option<Vec<pb::TaskAssignment>> {
        let w = self.workers.get_mut(worker)?;
        w.last_seen = now.at;
        let free = free.min(w.slots.saturating_sub(w.running.len() as u32)) as usize;
        let free = self.fair_share(worker, free);
        let order = self.policy.order(&self.jobs);
        let mut out = Vec::new();
        let mut started = Vec::new();
        for job_id in &order {
            self.start_pending(worker, job_id, free, now, &mut out, &mut started);
        }
        if self.cfg.speculation.is_some() {
            for job_id in &order {
                self.start_backups(worker, job_id, free, now, &mut out, &mut started);
            }
        }
        if let Some(w) = self.workers.get_mut(worker) {
            w.running.extend(started);
        }
        Some(out)
    }

    /// Load balancing: when there are fewer runnable tasks than free slots in the cluster, a
    /// worker gets a share in proportion to its free slots, so one big worker polling first
    /// does not take everything while others idle.
    fn fair_share(&self, worker: &WorkerId, free: usize) -> usize {
        let Some(w) = self.workers.get(worker) else { return 0 };
        let live_jobs: Vec<&Job> =
            self.jobs.values().filter(|j| j.is_running() && w.jobs.contains(&j.spec().name)).collect();
        let runnable: usize = live_jobs
            .iter()
            .map(|j| {
                j.pending(TaskKind::Map).len() + if j.maps_complete() { j.pending(TaskKind::Reduce).len() } else { 0 }
            })
            .sum();
        let cluster_free: usize = self
            .workers
            .values()
            .filter(|w| live_jobs.iter().any(|j| w.jobs.contains(&j.spec().name)))
            .map(|w| w.slots.saturating_sub(w.running.len() as u32) as usize)
            .sum();
        if runnable < cluster_free { free.min((runnable * free).div_ceil(cluster_free.max(1)).max(1)) } else { free }
    }

    /// Starts pending tasks of one job on `worker` while it has slots (of `free`) left.
    fn start_pending(
        &mut self,
        worker: &WorkerId,
        job_id: &JobId,
        free: usize,
        now: Now,
        out: &mut Vec<pb::TaskAssignment>,
        started: &mut Vec<AttemptId>,
    ) {
        let hold_reduces = self.hold_reduces;
        let Some(me) = self.workers.get(worker) else { return };
        let Some(job) = self.jobs.get_mut(job_id) else { return };
        if out.len() >= free || !me.jobs.contains(&job.spec().name) {
            return;
        }
        // A task that failed on this worker goes elsewhere, unless no other worker that can
        // run the job is left to try.
        let others: Vec<&WorkerId> = self
            .workers
            .iter()
            .filter(|(id, e)| *id != worker && e.jobs.contains(&job.spec().name))
            .map(|(id, _)| id)
            .collect();
        let allowed = |t: &Task| !t.failed_on.contains(worker) || others.iter().all(|o| t.failed_on.contains(o));
        while out.len() < free {
            let Some((kind, first)) = job.next_pending(allowed) else { break };
            let candidates =
                job.pending(kind).iter().copied().filter(|&i| job.tasks(kind).get(i as usize).is_some_and(allowed));
            let (idx, level) = match kind {
                TaskKind::Map => {
                    // Data locality with delay scheduling among the pending maps.
                    let max = placement::allowed(job.waiting_since(), now.at, &self.cfg.delay);
                    let splits = candidates
                        .filter_map(|i| job.splits().get(i as usize).map(|s| (i, (s.url.as_str(), s.start, s.end))));
                    match placement::pick(splits, me, &self.workers, max) {
                        Some((i, l)) => (i, Some(l)),
                        None => {
                            job.passed_up(now.at);
                            break;
                        }
                    }
                }
                TaskKind::Reduce if hold_reduces => break,
                // The reduce whose partition this worker's cache holds most of.
                TaskKind::Reduce => (job.best_reduce_for(candidates, &me.cached).unwrap_or(first), None),
            };
            let Some(attempt) = job.start_attempt(kind, idx, worker, now.at, level) else { break };
            out.push(job.assignment(kind, idx, attempt));
            started.push(AttemptId { task: TaskId { job: job_id.clone(), kind, index: idx }, attempt });
        }
    }

    /// Starts backup attempts of one job's stragglers on `worker` while it has slots left.
    fn start_backups(
        &mut self,
        worker: &WorkerId,
        job_id: &JobId,
        free: usize,
        now: Now,
        out: &mut Vec<pb::TaskAssignment>,
        started: &mut Vec<AttemptId>,
    ) {
        let (Some(spec), Some(me)) = (&self.cfg.speculation, self.workers.get(worker)) else { return };
        let Some(job) = self.jobs.get_mut(job_id) else { return };
        if out.len() >= free || !me.jobs.contains(&job.spec().name) {
            return;
        }
        while out.len() < free {
            let Some((kind, idx)) = job.backup_candidate(worker, now.at, spec) else { break };
            let Some(attempt) = job.start_backup(kind, idx, worker, now.at) else { break };
            tracing::info!(job = %job_id, ?kind, idx, attempt, "starting a backup attempt of a straggler");
            out.push(job.assignment(kind, idx, attempt));
            started.push(AttemptId { task: TaskId { job: job_id.clone(), kind, index: idx }, attempt });
        }
    }
}
