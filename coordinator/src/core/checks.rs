//! Workers' liveness and the periodic checks, as steps of [`Core`]: heartbeats, progress,
//! lost workers, stalled attempts and jobs no worker can run.
//!
//! The checks cost what is due, not what exists: workers are kept ordered by when they were
//! last heard from (so a tick looks only at the silent ones), and every attempt handed out
//! has a progress deadline in a queue (so a tick looks only at attempts whose deadline
//! passed; one that progressed meanwhile gets a new deadline).

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::time::{Duration, Instant};

use quern_api::{AttemptId, WorkerId};

use super::{Action, Core, FailureKind, Now, Outcome, humanize};
use crate::convert::CachedRange;
use crate::job::Unsuccessful;

/// Deadlines of the periodic checks.
#[derive(Debug, Default)]
pub(super) struct Deadlines {
    /// Workers by when they were last heard from, as (last seen, number).
    seen: BTreeSet<(Instant, u64)>,
    /// Each registered worker's number, and back.
    numbers: HashMap<WorkerId, u64>,
    workers: HashMap<u64, WorkerId>,
    next: u64,
    /// Running attempts by their last known progress (or start): each is looked at once
    /// that is a task timeout old. Entries of ended attempts are dropped when they come
    /// up, or when they outnumber the running attempts (see [`Core::compact_deadlines`]).
    progress: BinaryHeap<Reverse<(Instant, AttemptId)>>,
}

impl Deadlines {
    /// A new worker, last heard from at `at`.
    fn add(&mut self, worker: &WorkerId, at: Instant) {
        let n = self.next;
        self.next += 1;
        self.numbers.insert(worker.clone(), n);
        self.workers.insert(n, worker.clone());
        self.seen.insert((at, n));
    }

    /// A worker heard from at `at` (last at `before`).
    fn seen(&mut self, worker: &WorkerId, before: Instant, at: Instant) {
        if before == at {
            return;
        }
        if let Some(&n) = self.numbers.get(worker) {
            self.seen.remove(&(before, n));
            self.seen.insert((at, n));
        }
    }

    /// A worker gone (last heard from at `last`).
    fn remove(&mut self, worker: &WorkerId, last: Instant) {
        if let Some(n) = self.numbers.remove(worker) {
            self.workers.remove(&n);
            self.seen.remove(&(last, n));
        }
    }

    /// Workers silent for longer than `timeout` at `now`, in id order.
    fn silent(&self, now: Instant, timeout: Duration) -> Vec<WorkerId> {
        let mut v: Vec<WorkerId> = self
            .seen
            .iter()
            .take_while(|(at, _)| now.saturating_duration_since(*at) > timeout)
            .filter_map(|(_, n)| self.workers.get(n).cloned())
            .collect();
        v.sort();
        v
    }
}

impl Core {
    /// Registers a worker's deadline (called at registration).
    pub(super) fn track_worker(&mut self, worker: &WorkerId, at: Instant) {
        self.deadlines.add(worker, at);
    }

    /// Notes that `worker` called in at `now`.
    pub(super) fn seen(&mut self, worker: &WorkerId, now: Now) -> bool {
        let Some(w) = self.workers.get_mut(worker) else { return false };
        self.deadlines.seen(worker, w.last_seen, now.at);
        w.last_seen = now.at;
        true
    }

    /// Gives a just-started attempt its progress deadline.
    pub(super) fn track_attempt(&mut self, attempt: &AttemptId, at: Instant) {
        self.deadlines.progress.push(Reverse((at, attempt.clone())));
    }

    /// Drops the deadlines of ended attempts once they are more than the running ones
    /// (and a floor): memory stays in proportion to the running attempts, and the work is
    /// amortised over the attempts handed out since the last compaction.
    pub(super) fn compact_deadlines(&mut self) {
        let running: usize = self.classes.values().map(|c| c.busy).sum();
        if self.deadlines.progress.len() <= 2 * running + 1024 {
            return;
        }
        let old = std::mem::take(&mut self.deadlines.progress).into_vec();
        let kept: Vec<_> = old.into_iter().filter(|Reverse((_, a))| self.live(a).is_some()).collect();
        self.deadlines.progress = BinaryHeap::from(kept);
    }

    /// A live attempt of a running job: its worker, when it started and when it last
    /// progressed.
    fn live(&self, a: &AttemptId) -> Option<(WorkerId, Instant, Instant)> {
        let job = self.jobs.get(&a.task.job).filter(|j| j.is_running())?;
        let task = job.run_of(a.attempt)?.tasks(a.task.kind).get(a.task.index as usize)?;
        let l = task.live_attempts().iter().find(|l| l.attempt == a.attempt)?;
        Some((l.worker.clone(), l.since, l.progressed))
    }

    /// A heartbeat; returns the attempts to cancel, or None for an unknown worker (which
    /// must register again).
    pub fn heartbeat(&mut self, worker: &WorkerId, now: Now) -> Option<Vec<AttemptId>> {
        if !self.seen(worker, now) {
            return None;
        }
        let w = self.workers.get_mut(worker)?;
        Some(std::mem::take(&mut w.to_cancel))
    }

    /// Attempts the coordinator handed to `worker` that its heartbeat no longer lists,
    /// although they were handed out more than a heartbeat timeout ago: the worker dropped
    /// them without a report (a crash outside the task, a lost message). They fail, counted,
    /// so a task that keeps vanishing fails its job rather than holding a slot forever.
    pub fn dropped_attempts(&mut self, worker: &WorkerId, listed: &BTreeSet<AttemptId>, now: Now) -> Vec<Action> {
        let Some(w) = self.workers.get(worker) else { return Vec::new() };
        // Two heartbeat timeouts: a heartbeat listed before an assignment arrived, and then
        // delayed, is not mistaken for a drop.
        let grace = self.cfg.heartbeat_timeout * 2;
        let dropped: Vec<AttemptId> = w
            .running
            .iter()
            .filter(|a| !listed.contains(a))
            .filter(|a| {
                let since = self.jobs.get(&a.task.job).and_then(|j| {
                    j.run_of(a.attempt)?
                        .tasks(a.task.kind)
                        .get(a.task.index as usize)?
                        .live_attempts()
                        .iter()
                        .find(|l| l.attempt == a.attempt)
                        .map(|l| l.since)
                });
                since.is_some_and(|s| now.at.saturating_duration_since(s) > grace)
            })
            .cloned()
            .collect();
        let mut actions = Vec::new();
        for a in dropped {
            tracing::warn!(attempt = %a, worker = %worker, "the worker dropped an attempt without reporting it");
            let message = "the worker dropped the attempt without reporting an outcome";
            actions.extend(
                self.report(
                    worker,
                    &a,
                    Outcome::Failed { kind: FailureKind::Internal, message: message.into(), lost_map: None },
                    now,
                )
                .1,
            );
        }
        actions
    }

    /// Records what a worker's cache holds.
    pub fn set_cached(&mut self, worker: &WorkerId, cached: Vec<CachedRange>) {
        if let Some(w) = self.workers.get_mut(worker)
            && w.cached != cached
        {
            self.homes.remove(worker, w);
            w.cached = cached;
            self.homes.add(worker, w);
        }
    }

    /// Fails unfinished jobs that no registered worker has been able to run for
    /// `job_wait`: a job name no worker binary knows would otherwise wait forever. Looks at
    /// the jobs of names no worker runs now or ran at the last check (whose clocks stop),
    /// not at every job.
    pub fn fail_unrunnable(&mut self, now: Now) -> Vec<Action> {
        self.refresh_index();
        let mut look = Vec::new();
        let mut unrunnable = BTreeSet::new();
        for (name, named) in self.jobs.index().names() {
            let runnable = self.classes.keys().any(|jobs| jobs.contains(name));
            if !runnable {
                unrunnable.insert(name.clone());
            }
            if !runnable || self.unrunnable_names.contains(name) {
                look.extend(named.running.iter().cloned());
            }
        }
        self.unrunnable_names = unrunnable;
        look.sort();
        look.dedup();
        let mut doomed = Vec::new();
        for id in look {
            let Some(mut job) = self.jobs.get_mut(&id) else { continue };
            // Every running stage needs a worker that runs its job.
            let classes = &self.classes;
            let missing = job
                .runs()
                .iter()
                .map(|r| r.spec().name.clone())
                .find(|name| !classes.keys().any(|jobs| jobs.contains(name)));
            if job.unrunnable_for(missing.is_none(), now.at, self.cfg.job_wait) {
                doomed.push((id, missing.unwrap_or_default()));
            }
        }
        let mut actions = Vec::new();
        for (id, name) in doomed {
            let waited = humanize(self.cfg.job_wait);
            let error = format!("no worker runs job {name:?} (waited {waited} for one)");
            actions.extend(self.end_job(&id, Unsuccessful::Failed(error), now.wall_ms));
        }
        actions
    }

    /// Progress counts of `worker`'s attempts, from a heartbeat.
    pub fn progressed(&mut self, worker: &WorkerId, progress: &[(AttemptId, u64)], now: Now) {
        for (a, steps) in progress {
            if let Some(mut job) = self.jobs.get_mut(&a.task.job)
                && let Some(run) = job.run_of_mut(a.attempt)
            {
                run.with_task(a.task.kind, a.task.index, |t| t.progressed(a.attempt, worker, *steps, now.at));
            }
        }
    }

    /// Fails attempts that made no progress for the task timeout (a user function stuck in
    /// a loop, a hung read): counted like any failure, cancelled at their worker, and run
    /// again elsewhere when possible.
    pub fn fail_stalled(&mut self, now: Now) -> Vec<Action> {
        let timeout = self.cfg.task_timeout;
        let mut stalled = Vec::new();
        while let Some(Reverse((at, _))) = self.deadlines.progress.peek()
            && now.at.saturating_duration_since(*at) > timeout
        {
            let Some(Reverse((_, a))) = self.deadlines.progress.pop() else { break };
            let Some((worker, _, progressed)) = self.live(&a) else { continue };
            if now.at.saturating_duration_since(progressed) > timeout {
                stalled.push((a, worker));
            } else {
                self.deadlines.progress.push(Reverse((progressed, a)));
            }
        }
        // In the order a pass over the jobs and their tasks would find them.
        stalled.sort();
        let mut actions = Vec::new();
        for (a, worker) in stalled {
            tracing::warn!(attempt = %a, worker = %worker, "no progress within the task timeout; failing the attempt");
            if let Some(w) = self.workers.get_mut(&worker) {
                w.to_cancel.push(a.clone());
            }
            let message = format!("no progress for {} (--task-timeout)", humanize(timeout));
            let failed = Outcome::Failed { kind: FailureKind::Internal, message, lost_map: None };
            actions.extend(self.report(&worker, &a, failed, now).1);
        }
        actions
    }

    /// Declares silent workers lost and re-queues their attempts; true if any was lost.
    pub fn tick(&mut self, now: Now) -> bool {
        let lost = self.deadlines.silent(now.at, self.cfg.heartbeat_timeout);
        for id in &lost {
            self.worker_lost(id, now);
        }
        !lost.is_empty()
    }

    /// Forgets a worker and re-queues whatever it was running. Its finished map outputs stay:
    /// they live in the shared store, not on the worker.
    pub fn worker_lost(&mut self, id: &WorkerId, now: Now) {
        let Some(w) = self.workers.remove(id) else {
            return;
        };
        self.deadlines.remove(id, w.last_seen);
        self.homes.remove(id, &w);
        if let Some(c) = self.classes.get_mut(&w.jobs) {
            c.workers -= 1;
            c.slots = c.slots.saturating_sub(w.slots as usize);
            c.busy = c.busy.saturating_sub(w.running.len());
            if c.workers == 0 {
                self.classes.remove(&w.jobs);
            }
        }
        tracing::warn!(worker = %id, running = w.running.len(), "worker lost");
        for a in &w.running {
            if let Some(mut job) = self.jobs.get_mut(&a.task.job)
                && let Some(run) = job.run_of_mut(a.attempt)
            {
                run.with_task(a.task.kind, a.task.index, |t| t.worker_lost(id, now.at));
            }
        }
    }
}
