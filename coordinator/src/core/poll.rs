//! Handing out work, as named steps of [`Core::poll`]: the worker's fair share of the free
//! slots, pending tasks in policy order (maps by locality with delay scheduling, reduces by
//! what the worker caches), then backup attempts of stragglers.

use prost::Message;
use quern_api::{AttemptId, JobId, TaskId, TaskKind, WorkerId, pb};

use super::index::Place;
use super::{Core, Now};
use crate::job::Unsuccessful;
use crate::placement;
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
        if !self.seen(worker, now) {
            return None;
        }
        let w = self.workers.get(worker)?;
        let free = free.min(w.slots.saturating_sub(w.running.len() as u32)) as usize;
        self.refresh_index();
        let (names, runnable) = self.plan(worker);
        let free = self.fair_share(free, runnable, &names);
        let mut out = Batch::default();
        // Jobs are taken from the index in policy order (as they stood when the poll began)
        // only as long as slots are left: a poll that fills up on the first job never looks
        // at the others.
        let mut visited: Vec<Place> = Vec::new();
        let mut after: Option<Place> = None;
        while out.tasks.len() < free {
            let Some(place) = self.jobs.index().next_pending(&names, after.as_ref()) else { break };
            self.start_pending(worker, &place.1, free, now, &mut out);
            after = Some(place.clone());
            // Starting its last pending tasks may make the job a candidate for backups.
            visited.push(place);
        }
        if self.cfg.speculation.is_some() && out.tasks.len() < free {
            self.start_all_backups(worker, &names, visited, free, now, &mut out);
        }
        let started = out.started.len();
        for a in &out.started {
            self.track_attempt(a, now.at);
        }
        self.compact_deadlines();
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

    /// Backups for `worker` while it has slots left, from the jobs `visited` for pending
    /// tasks (at their places when the poll began) and the jobs whose backups may be due,
    /// in policy order.
    fn start_all_backups(
        &mut self,
        worker: &WorkerId,
        names: &[String],
        visited: Vec<Place>,
        free: usize,
        now: Now,
        out: &mut Batch,
    ) {
        self.jobs.index().promote(now.at);
        let mut visited = visited.into_iter().peekable();
        let mut ready = self.jobs.index().next_ready(names, None);
        while out.tasks.len() < free {
            let from_visited = match (visited.peek(), &ready) {
                (Some(v), Some(r)) => v < r,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            let next = if from_visited {
                visited.next()
            } else {
                let r = ready.take();
                ready = r.as_ref().and_then(|r| self.jobs.index().next_ready(names, Some(r)));
                r
            };
            if let Some((_, job_id)) = next {
                self.start_backups(worker, &job_id, free, now, out);
            }
        }
    }

    /// For a poll by `worker`: the names of the running jobs it runs and how many tasks of
    /// them could run now.
    fn plan(&mut self, worker: &WorkerId) -> (Vec<String>, usize) {
        let Some(w) = self.workers.get(worker) else { return (Vec::new(), 0) };
        let index = self.jobs.index().names();
        let names: Vec<String> = if index.len() <= w.jobs.len() {
            index.keys().filter(|n| w.jobs.contains(*n)).cloned().collect()
        } else {
            w.jobs.iter().filter(|n| index.contains_key(*n)).cloned().collect()
        };
        let runnable = names.iter().filter_map(|n| index.get(n)).map(|n| n.runnable).sum();
        (names, runnable)
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
        let Some(mut job) = self.jobs.get_mut(job_id) else { return };
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
            let (idx, level) = match kind {
                TaskKind::Map => {
                    // Data locality with delay scheduling among the pending maps.
                    let max = placement::allowed(run.waiting_since(), now.at, &self.cfg.delay);
                    match run.pick_map(me, &self.homes, max, &allowed) {
                        Some((i, l)) => (i, Some(l)),
                        None => {
                            run.passed_up(now.at);
                            break;
                        }
                    }
                }
                TaskKind::Reduce if hold_reduces => break,
                // The reduce whose partition this worker's cache holds most of.
                TaskKind::Reduce => {
                    let candidates = run
                        .pending(kind)
                        .iter()
                        .copied()
                        .filter(|&i| run.tasks(kind).get(i as usize).is_some_and(allowed));
                    (run.best_reduce_for(candidates, &me.cached).unwrap_or(first), None)
                }
            };
            // Built once, for the attempt number the start will give (a reduce's lists
            // every map output: building it is O(maps)).
            let next = run.next_attempt(kind, idx);
            let assignment = run.assignment(kind, idx, next);
            let bytes = assignment.encoded_len();
            if !fits(self.cfg.poll_bytes, job_id, bytes, out) {
                break;
            }
            let Some(attempt) = run.start_attempt(kind, idx, worker, now.at, level) else { break };
            let assignment = if attempt == next { assignment } else { run.assignment(kind, idx, attempt) };
            out.push(assignment, bytes, job_id, kind, idx);
        }
    }

    /// Starts backup attempts of one job's stragglers on `worker` while it has slots left.
    fn start_backups(&mut self, worker: &WorkerId, job_id: &JobId, free: usize, now: Now, out: &mut Batch) {
        let Some(spec) = &self.cfg.speculation else { return };
        for stage in self.stages_for(worker, job_id) {
            let Some(mut job) = self.jobs.get_mut(job_id) else { return };
            let Some(run) = job.run_mut(stage) else { continue };
            while out.tasks.len() < free {
                let Some((kind, idx)) = run.backup_candidate(worker, now.at, spec) else { break };
                let next = run.next_attempt(kind, idx);
                let assignment = run.assignment(kind, idx, next);
                let bytes = assignment.encoded_len();
                if out.bytes + bytes > self.cfg.poll_bytes {
                    break;
                }
                let Some(attempt) = run.start_backup(kind, idx, worker, now.at) else { break };
                tracing::info!(job = %job_id, stage, ?kind, idx, attempt, "starting a backup attempt of a straggler");
                let assignment = if attempt == next { assignment } else { run.assignment(kind, idx, attempt) };
                out.push(assignment, bytes, job_id, kind, idx);
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
