//! Fair-share preemption (Hadoop's fair scheduler): a job kept below its fair share for
//! longer than the preemption wait, while it has tasks waiting, gets slots back by taking
//! back the youngest attempts of jobs above their own share.
//!
//! Fair shares are weighted max-min shares of the cluster's slots: each running job weighs
//! 2^priority (as [`crate::policy::Fair`] orders them) and never gets more than it can use
//! (its running plus runnable tasks). A job is *starved* while it runs fewer tasks than the
//! whole slots of its share and has runnable tasks. A taken-back attempt is cancelled at its
//! worker like a backup that lost; it is no failure (it counts neither against
//! `--max-attempts` nor against its worker), its task is pending again, and the job's
//! `PREEMPTED_ATTEMPTS` counter grows. Being no longer live, it can never commit: every
//! later report, commit or upload of it is refused by attempt number.

use std::collections::BTreeMap;
use std::time::Instant;

use quern_api::{AttemptId, JobId, TaskId, TaskKind, WorkerId};

use super::{Core, Now};
use crate::job::Job;
use crate::policy::weight;

/// Attempts taken back per tick at most, so one tick's work stays bounded however far
/// from fair the cluster is; a deficit left over is served at the next starvation.
const MAX_PREEMPTIONS_PER_TICK: usize = 256;

/// One running job's place in the fair division.
struct Claim<'a> {
    job: &'a Job,
    running: u32,
    runnable: u32,
    share: f64,
}

impl Core {
    /// Tracks starvation and, for jobs starved longer than the preemption wait, takes back
    /// attempts of jobs above their share (cancelled at the next heartbeat of their
    /// workers). Returns how many were taken back. Does nothing with preemption off.
    pub fn preempt(&mut self, now: Now) -> usize {
        let Some(wait) = self.cfg.preemption else { return 0 };
        let slots: usize = self.classes.values().map(|c| c.slots).sum();
        let claims = fair_shares(self.jobs.values().filter(|j| j.is_running()), slots);
        // Starvation must last: a job that reached its share (or ran out of tasks) starts
        // from zero next time.
        let mut starved = BTreeMap::new();
        let mut due = Vec::new();
        for c in claims.iter().filter(|c| c.runnable > 0 && f64::from(c.running) < c.share.floor()) {
            let since = self.starved.get(c.job.id()).copied().unwrap_or(now.at);
            if now.at.saturating_duration_since(since) > wait {
                let deficit = (c.share.floor() as u32 - c.running).min(c.runnable);
                due.push((since, c.job.id().clone(), deficit));
            }
            starved.insert(c.job.id().clone(), since);
        }
        if due.is_empty() {
            self.starved = starved;
            return 0;
        }
        // What each job above its share can give without going below it, and its attempts
        // youngest first.
        let mut surplus: BTreeMap<JobId, u32> = BTreeMap::new();
        let mut victims: Vec<(Instant, JobId, TaskKind, u32, u32)> = Vec::new();
        for c in &claims {
            let over = c.running.saturating_sub(c.share.ceil() as u32);
            if over == 0 {
                continue;
            }
            surplus.insert(c.job.id().clone(), over);
            for (kind, idx, attempt, _, since) in c.job.live_attempts() {
                victims.push((since, c.job.id().clone(), kind, idx, attempt));
            }
        }
        victims.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        // The longest starved are served first.
        due.sort();
        let mut taken = 0;
        let mut next = victims.into_iter();
        for (_, starving, deficit) in due {
            let mut got = 0;
            while got < deficit && taken < MAX_PREEMPTIONS_PER_TICK {
                let Some((_, job, kind, idx, attempt)) = next.next() else { break };
                let Some(left) = surplus.get_mut(&job).filter(|n| **n > 0) else { continue };
                if self.take_back(&job, kind, idx, attempt, now.at) {
                    *left -= 1;
                    got += 1;
                    taken += 1;
                }
            }
            if got > 0 {
                tracing::info!(job = %starving, got, deficit, "preempted attempts of jobs above their fair share");
                // The slots freed are this job's to fill: it must be starved for another
                // whole wait before more are taken for it.
                starved.insert(starving, now.at);
            }
        }
        self.starved = starved;
        taken
    }

    /// Takes back one live attempt: its task is pending again, its worker cancels it.
    fn take_back(&mut self, job_id: &JobId, kind: TaskKind, index: u32, attempt: u32, now: Instant) -> bool {
        let Some(mut job) = self.jobs.get_mut(job_id) else { return false };
        let Some(worker): Option<WorkerId> = job.preempt(kind, index, attempt, now) else { return false };
        drop(job);
        let aid = AttemptId { task: TaskId { job: job_id.clone(), kind, index }, attempt };
        tracing::info!(attempt = %aid, worker = %worker, "preempting an attempt");
        self.unassign(&worker, &aid);
        if let Some(w) = self.workers.get_mut(&worker) {
            w.to_cancel.push(aid);
        }
        true
    }
}

/// Weighted max-min fair shares of `slots` among `jobs`, each capped at what it can use:
/// jobs are filled in order of demand per weight; a job that needs less than an equal
/// weighted split of what is left gets its demand, the rest split what remains by weight.
fn fair_shares<'a>(jobs: impl Iterator<Item = &'a Job>, slots: usize) -> Vec<Claim<'a>> {
    let mut claims: Vec<Claim<'a>> = jobs
        .map(|job| Claim { job, running: job.running(), runnable: job.runnable() as u32, share: 0.0 })
        .filter(|c| c.running + c.runnable > 0)
        .collect();
    let demand = |c: &Claim| f64::from(c.running + c.runnable);
    claims.sort_by(|a, b| (demand(a) / weight(a.job)).total_cmp(&(demand(b) / weight(b.job))));
    let mut left = slots as f64;
    let mut weights: f64 = claims.iter().map(|c| weight(c.job)).sum();
    for c in &mut claims {
        let w = weight(c.job);
        let even = left * w / weights.max(f64::MIN_POSITIVE);
        c.share = demand(c).min(even);
        left -= c.share;
        weights -= w;
    }
    claims
}
