//! The task lifecycle, as a pure state machine.
//!
//! ```text
//!            start                      success (live attempt)
//! Pending ──────────▶ Running{live} ───────────────────────────▶ Succeeded{attempt, output}
//!    ▲                  │   │                                          │
//!    │  failure, retry  │   │ failure, out of attempts                 │ output lost
//!    │  or worker lost  │   ▼                                          │ (map only)
//!    └──────────────────┘  Failed{error}          Pending ◀────────────┘
//! ```
//!
//! Every attempt has a number; outcomes and commit requests are accepted only from an attempt
//! that is live now, so a late report from a lost or superseded attempt is rejected (fencing).
//! A reduce attempt must hold the commit (granted to one live attempt at a time) before it
//! writes its part, and only the holder's success is accepted.

use std::time::{Duration, Instant};

use quern_api::{Counters, WorkerId};

/// One running attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Live {
    /// Attempt number (from 1).
    pub attempt: u32,
    /// Where it runs.
    pub worker: WorkerId,
    /// When it was handed out.
    pub since: Instant,
    /// Whether it holds the right to commit its output.
    pub committing: bool,
    /// Whether it is a backup (speculative) attempt.
    pub backup: bool,
    /// The last progress count its worker reported, and when it last grew (or the start).
    pub progress: u64,
    /// When `progress` last grew (the start until it does).
    pub progressed: Instant,
}

/// A finished map attempt's shuffle object. It holds no name: the object is the one the
/// coordinator told that attempt to write ([`crate::job::Job::shuffle_url`] of its epoch and
/// attempt), so a report can never point the coordinator at anything else.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MapOutput {
    /// The coordinator incarnation that handed the attempt out (part of the object's name).
    pub epoch: u64,
    /// The attempt that wrote it.
    pub attempt: u32,
    /// Its per-partition index, one segment per reduce task.
    pub segments: Vec<Segment>,
}

/// One partition's slice of a shuffle object.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Segment {
    /// Where it starts in the object.
    pub offset: u64,
    /// Its length in bytes.
    pub length: u64,
    /// CRC-32 of its bytes.
    pub crc32: u32,
    /// Records it holds.
    pub records: u64,
}

/// One attempt of a task as it was handed out, and how it ended: what the status pages
/// and the attempt list show. An attempt whose job ended while it ran keeps `ended: None`
/// (see [`Task::abort`]); readers show it as killed at the job's end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ran {
    /// The attempt number.
    pub attempt: u32,
    /// The worker it was handed to.
    pub worker: WorkerId,
    /// When it was handed out.
    pub started: Instant,
    /// Whether it was a backup (speculative) attempt.
    pub backup: bool,
    /// When and how it ended; None while it runs.
    pub ended: Option<(Instant, AttemptEnd)>,
}

/// How one attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttemptEnd {
    /// Its output is the task's.
    Succeeded,
    /// It reported a failure (or was failed by the coordinator: no progress, a malformed
    /// report); the message as kept for the task.
    Failed(String),
    /// Its worker was declared lost.
    Lost,
    /// Taken back to serve a starved job.
    Preempted,
    /// Another attempt of the task won first.
    Cancelled,
}

impl AttemptEnd {
    /// `succeeded`, `failed`, `lost`, `preempted` or `cancelled` (as in `AttemptInfo.state`).
    pub fn name(&self) -> &'static str {
        match self {
            AttemptEnd::Succeeded => "succeeded",
            AttemptEnd::Failed(_) => "failed",
            AttemptEnd::Lost => "lost",
            AttemptEnd::Preempted => "preempted",
            AttemptEnd::Cancelled => "cancelled",
        }
    }
}

/// The state of one task.
#[derive(Clone, Debug, PartialEq)]
pub enum TaskState {
    /// Waiting to be scheduled.
    Pending,
    /// One or more attempts are running.
    Running {
        /// The live attempts.
        live: Vec<Live>,
    },
    /// An attempt committed.
    Succeeded {
        /// The winning attempt.
        attempt: u32,
        /// Where it ran.
        worker: WorkerId,
        /// Map output (maps only).
        output: Option<MapOutput>,
        /// The winning attempt's counters: the only ones that count for the task.
        counters: Counters,
    },
    /// Out of attempts.
    Failed {
        /// Why the last attempt failed.
        error: String,
    },
}

/// A task: its state plus the history that outlives states.
#[derive(Clone, Debug)]
pub struct Task {
    /// Current state.
    pub state: TaskState,
    /// Attempts handed out so far (the next attempt is numbered `attempts + 1`).
    pub attempts: u32,
    /// Attempts that failed in a way that counts against `max_attempts`.
    pub failures: u32,
    /// Failures that did not count (lost map outputs, kills); past [`MAX_EXCUSED`] they do,
    /// so a task cannot be retried forever.
    pub excused: u32,
    /// Times a finished map's output was found lost (missing or corrupt) and the map sent
    /// back: bounded by the coordinator, since a store the workers do not share loses
    /// every output every time.
    pub outputs_lost: u32,
    /// Every attempt handed out, in order, and where.
    pub history: Vec<Ran>,
    /// The last failure's message.
    pub last_error: Option<String>,
    /// Workers on which an attempt failed (retries go elsewhere when they can).
    pub failed_on: Vec<WorkerId>,
    /// The attempt whose part the coordinator is making visible right now (a rename or an
    /// upload's completion, outside the lock). It outlives the attempt (a lost worker), so
    /// no other attempt is granted the commit until the store has answered.
    pub publishing: Option<u32>,
    /// Whether any attempt was ever granted the commit: its part may exist, so a job that
    /// does not succeed deletes it.
    pub granted: bool,
}

/// Failures of one task that are excused (do not count against `max_attempts`) at most.
pub const MAX_EXCUSED: u32 = 16;

/// How a reported outcome was taken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The outcome counts.
    Accepted(Won),
    /// Not from a live attempt (or not the commit holder): ignored.
    Stale(&'static str),
}

/// What winning meant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Won {
    /// How long the winning attempt ran.
    pub took: Duration,
    /// Whether the winner was a backup attempt.
    pub backup: bool,
    /// Other attempts still running, now to be cancelled: (attempt, worker).
    pub losers: Vec<(u32, WorkerId)>,
}

/// What a failure did to the task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FailureEffect {
    /// Back to pending (or still running other attempts).
    Retry,
    /// The task is out of attempts.
    Exhausted(String),
    /// The report was stale.
    Stale(&'static str),
}

impl Default for Task {
    fn default() -> Self {
        Self::new()
    }
}

impl Task {
    /// A new pending task whose attempts are numbered from `base + 1`.
    pub fn starting_at(base: u32) -> Self {
        Task { attempts: base, ..Task::new() }
    }

    /// A new pending task.
    pub fn new() -> Self {
        Task {
            state: TaskState::Pending,
            attempts: 0,
            failures: 0,
            excused: 0,
            outputs_lost: 0,
            history: Vec::new(),
            last_error: None,
            failed_on: Vec::new(),
            publishing: None,
            granted: false,
        }
    }

    /// Starts a new attempt on `worker`; returns its number. Allowed from Pending only.
    pub fn start(&mut self, worker: &WorkerId, now: Instant) -> Option<u32> {
        if !matches!(self.state, TaskState::Pending) {
            return None;
        }
        self.add_attempt(worker, now, false)
    }

    /// Starts a backup attempt of a task that runs one attempt, on another worker.
    pub fn start_backup(&mut self, worker: &WorkerId, now: Instant) -> Option<u32> {
        match &self.state {
            TaskState::Running { live } if live.len() == 1 && &live[0].worker != worker => {
                self.add_attempt(worker, now, true)
            }
            _ => None,
        }
    }

    fn add_attempt(&mut self, worker: &WorkerId, now: Instant, backup: bool) -> Option<u32> {
        let attempt = self.attempts + 1;
        let l = Live {
            attempt,
            worker: worker.clone(),
            since: now,
            committing: false,
            backup,
            progress: 0,
            progressed: now,
        };
        match &mut self.state {
            TaskState::Pending => self.state = TaskState::Running { live: vec![l] },
            TaskState::Running { live } => live.push(l),
            _ => return None,
        }
        self.attempts = attempt;
        // Most tasks run once: room for exactly the attempts made, not the four a first push
        // reserves (a million tasks' histories would otherwise hold 3 unused entries each).
        self.history.reserve_exact(1);
        self.history.push(Ran { attempt, worker: worker.clone(), started: now, backup, ended: None });
        Some(attempt)
    }

    /// Notes how `attempt` ended, once (the first end is the true one).
    fn ended(&mut self, attempt: u32, how: AttemptEnd, now: Instant) {
        if let Some(r) = self.history.iter_mut().rev().find(|r| r.attempt == attempt && r.ended.is_none()) {
            r.ended = Some((now, how));
        }
    }

    /// The only live attempt, if exactly one runs: (worker, since).
    pub fn single_live(&self) -> Option<(&WorkerId, Instant)> {
        match &self.state {
            TaskState::Running { live } if live.len() == 1 => Some((&live[0].worker, live[0].since)),
            _ => None,
        }
    }

    fn live(&self, attempt: u32, worker: &WorkerId) -> Option<&Live> {
        match &self.state {
            TaskState::Running { live } => live.iter().find(|l| l.attempt == attempt && &l.worker == worker),
            _ => None,
        }
    }

    /// Whether `attempt` is live on `worker`.
    pub fn holds(&self, attempt: u32, worker: &WorkerId) -> bool {
        self.live(attempt, worker).is_some()
    }

    /// A progress count for live `attempt` on `worker`: remembered when it grew.
    pub fn progressed(&mut self, attempt: u32, worker: &WorkerId, steps: u64, now: Instant) {
        if let TaskState::Running { live } = &mut self.state
            && let Some(l) = live.iter_mut().find(|l| l.attempt == attempt && &l.worker == worker)
            && steps > l.progress
        {
            l.progress = steps;
            l.progressed = now;
        }
    }

    /// Live attempts whose progress has stood still for longer than `timeout`.
    pub fn stalled(&self, timeout: Duration, now: Instant) -> Vec<(u32, WorkerId)> {
        self.live_attempts()
            .iter()
            .filter(|l| now.saturating_duration_since(l.progressed) > timeout)
            .map(|l| (l.attempt, l.worker.clone()))
            .collect()
    }

    /// Whether `attempt` was ever handed to `worker`.
    pub fn ran(&self, attempt: u32, worker: &WorkerId) -> bool {
        self.history.iter().any(|r| r.attempt == attempt && &r.worker == worker)
    }

    /// The attempt whose output the task holds now, if it succeeded.
    pub fn output_attempt(&self) -> Option<u32> {
        match &self.state {
            TaskState::Succeeded { attempt, .. } => Some(*attempt),
            _ => None,
        }
    }

    /// Whether `attempt` on `worker` is live now.
    pub fn is_live(&self, attempt: u32, worker: &WorkerId) -> bool {
        self.live(attempt, worker).is_some()
    }

    /// Grants the commit to `attempt` if it is live and nobody else holds it.
    pub fn request_commit(&mut self, attempt: u32, worker: &WorkerId) -> Result<(), &'static str> {
        let TaskState::Running { live } = &mut self.state else {
            return Err("task is not running");
        };
        if live.iter().any(|l| l.committing && l.attempt != attempt) {
            return Err("another attempt holds the commit");
        }
        // Also for the same attempt asking twice: two completions in flight would release the
        // task's commit while one still runs.
        if self.publishing.is_some() {
            return Err("a part of this task is being made visible");
        }
        match live.iter_mut().find(|l| l.attempt == attempt && &l.worker == worker) {
            Some(l) => {
                l.committing = true;
                self.publishing = Some(attempt);
                self.granted = true;
                Ok(())
            }
            None => Err("attempt is not live"),
        }
    }

    /// The store has answered for `attempt`'s part (made visible or not).
    pub fn published(&mut self, attempt: u32) {
        if self.publishing == Some(attempt) {
            self.publishing = None;
        }
    }

    /// A live attempt succeeded. `needs_commit`: only the commit holder may succeed.
    pub fn succeed(
        &mut self,
        attempt: u32,
        worker: &WorkerId,
        output: Option<MapOutput>,
        counters: Counters,
        needs_commit: bool,
        now: Instant,
    ) -> Verdict {
        let Some(l) = self.live(attempt, worker) else {
            return Verdict::Stale("attempt is not live");
        };
        if needs_commit && !l.committing {
            return Verdict::Stale("attempt did not hold the commit");
        }
        let won = Won {
            took: now.saturating_duration_since(l.since),
            backup: l.backup,
            losers: self
                .live_attempts()
                .iter()
                .filter(|o| o.attempt != attempt)
                .map(|o| (o.attempt, o.worker.clone()))
                .collect(),
        };
        self.state = TaskState::Succeeded { attempt, worker: worker.clone(), output, counters };
        self.ended(attempt, AttemptEnd::Succeeded, now);
        for (loser, _) in &won.losers {
            self.ended(*loser, AttemptEnd::Cancelled, now);
        }
        Verdict::Accepted(won)
    }

    /// A live attempt failed; `counts` says whether it counts against `max_attempts`.
    pub fn fail(
        &mut self,
        attempt: u32,
        worker: &WorkerId,
        error: &str,
        counts: bool,
        max_attempts: u32,
        now: Instant,
    ) -> FailureEffect {
        if !self.is_live(attempt, worker) {
            return FailureEffect::Stale("attempt is not live");
        }
        self.last_error = Some(error.to_string());
        self.ended(attempt, AttemptEnd::Failed(error.to_string()), now);
        let counts = counts || {
            self.excused += 1;
            self.excused > MAX_EXCUSED
        };
        if counts {
            self.failures += 1;
            self.failed_on.push(worker.clone());
        }
        self.drop_live(|l| l.attempt == attempt);
        if counts && self.failures >= max_attempts {
            let msg = format!("failed {} times; last error: {error}", self.failures);
            self.state = TaskState::Failed { error: msg.clone() };
            return FailureEffect::Exhausted(msg);
        }
        FailureEffect::Retry
    }

    /// Drops every live attempt on `worker` (it was lost); returns their numbers.
    pub fn worker_lost(&mut self, worker: &WorkerId, now: Instant) -> Vec<u32> {
        let lost: Vec<u32> = match &self.state {
            TaskState::Running { live } => live.iter().filter(|l| &l.worker == worker).map(|l| l.attempt).collect(),
            _ => return Vec::new(),
        };
        self.drop_live(|l| &l.worker == worker);
        for a in &lost {
            self.ended(*a, AttemptEnd::Lost, now);
        }
        lost
    }

    /// Takes back live `attempt` (preemption): not a failure, so neither `failures` nor
    /// `excused` grows and its worker is not avoided later. An attempt holding the commit is
    /// never taken back (its part may be becoming visible). Returns its worker.
    pub fn preempt(&mut self, attempt: u32, now: Instant) -> Option<WorkerId> {
        let l = self.live_attempts().iter().find(|l| l.attempt == attempt)?;
        if l.committing || self.publishing == Some(attempt) {
            return None;
        }
        let worker = l.worker.clone();
        self.drop_live(|l| l.attempt == attempt);
        self.ended(attempt, AttemptEnd::Preempted, now);
        Some(worker)
    }

    /// Removes live attempts matching `f`; with none left the task is pending again.
    fn drop_live(&mut self, f: impl Fn(&Live) -> bool) {
        if let TaskState::Running { live } = &mut self.state {
            live.retain(|l| !f(l));
            if live.is_empty() {
                self.state = TaskState::Pending;
            }
        }
    }

    /// Restores a success read back from the journal.
    pub fn restore(&mut self, attempt: u32, worker: WorkerId, output: Option<MapOutput>, counters: Counters) {
        self.attempts = self.attempts.max(attempt);
        self.state = TaskState::Succeeded { attempt, worker, output, counters };
    }

    /// A succeeded map's output was lost: run it again. Returns the lost output, if any.
    /// Only if `attempt`'s output is still the task's: a newer output is not lost, and
    /// several reducers reporting the same object count as one loss.
    pub fn output_lost(&mut self, attempt: u32) -> Option<MapOutput> {
        match &self.state {
            TaskState::Succeeded { output: Some(o), .. } if o.attempt == attempt => {}
            _ => return None,
        }
        match std::mem::replace(&mut self.state, TaskState::Pending) {
            TaskState::Succeeded { output, .. } => {
                self.outputs_lost += 1;
                output
            }
            other => {
                self.state = other;
                None
            }
        }
    }

    /// Ends every live attempt (job killed or failed); returns (attempt, worker) pairs. Their
    /// [`Ran`] entries stay open: the job's end time is theirs (the job holds it).
    pub fn abort(&mut self) -> Vec<(u32, WorkerId)> {
        match &mut self.state {
            TaskState::Running { live } => {
                let out = live.iter().map(|l| (l.attempt, l.worker.clone())).collect();
                self.state = TaskState::Pending;
                out
            }
            _ => Vec::new(),
        }
    }

    /// The committed attempt's counters (empty unless succeeded).
    pub fn counters(&self) -> Option<&Counters> {
        match &self.state {
            TaskState::Succeeded { counters, .. } => Some(counters),
            _ => None,
        }
    }

    /// Whether the task succeeded.
    pub fn is_done(&self) -> bool {
        matches!(self.state, TaskState::Succeeded { .. })
    }

    /// Live attempts.
    pub fn live_attempts(&self) -> &[Live] {
        match &self.state {
            TaskState::Running { live } => live,
            _ => &[],
        }
    }

    /// `pending`, `running`, `succeeded` or `failed`.
    pub fn state_name(&self) -> &'static str {
        match self.state {
            TaskState::Pending => "pending",
            TaskState::Running { .. } => "running",
            TaskState::Succeeded { .. } => "succeeded",
            TaskState::Failed { .. } => "failed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn w(n: u64) -> WorkerId {
        WorkerId::new(1, n)
    }

    #[test]
    fn attempts_are_numbered_and_only_live_ones_succeed() {
        let now = Instant::now();
        let mut t = Task::new();
        assert_eq!(t.start(&w(1), now), Some(1));
        assert_eq!(t.worker_lost(&w(1), now), vec![1]);
        assert_eq!(t.state, TaskState::Pending);
        assert_eq!(t.start(&w(2), now + Duration::from_secs(1)), Some(2));
        // The lost attempt 1 reports late: rejected.
        assert!(matches!(t.succeed(1, &w(1), None, Counters::new(), false, now), Verdict::Stale(_)));
        // Right number, wrong worker: rejected.
        assert!(matches!(t.succeed(2, &w(1), None, Counters::new(), false, now), Verdict::Stale(_)));
        assert!(matches!(t.succeed(2, &w(2), None, Counters::new(), false, now), Verdict::Accepted(_)));
        assert!(t.is_done());
        assert!(t.start(&w(3), now).is_none());
    }

    #[test]
    fn failures_retry_until_max_attempts() {
        let now = Instant::now();
        let mut t = Task::new();
        for i in 1..=3 {
            let a = t.start(&w(i), now).unwrap();
            assert_eq!(t.fail(a, &w(i), "boom", true, 4, now), FailureEffect::Retry);
            assert_eq!(t.state, TaskState::Pending);
        }
        // A failure that does not count (e.g. lost map output) leaves the budget alone.
        let a = t.start(&w(9), now).unwrap();
        assert_eq!(t.fail(a, &w(9), "input gone", false, 4, now), FailureEffect::Retry);
        let a = t.start(&w(4), now).unwrap();
        assert!(matches!(t.fail(a, &w(4), "boom", true, 4, now), FailureEffect::Exhausted(m) if m.contains("boom")));
        assert!(matches!(t.state, TaskState::Failed { .. }));
        assert!(matches!(t.fail(a, &w(4), "again", true, 4, now), FailureEffect::Stale(_)));
    }

    #[test]
    fn commit_goes_to_one_live_attempt() {
        let now = Instant::now();
        let mut t = Task::new();
        let a1 = t.start(&w(1), now).unwrap();
        let a2 = t.start_backup(&w(2), now).unwrap();
        // Success without the commit is refused for tasks that need one.
        assert!(matches!(t.succeed(a1, &w(1), None, Counters::new(), true, now), Verdict::Stale(_)));
        assert!(t.request_commit(a1, &w(1)).is_ok());
        assert!(t.request_commit(a2, &w(2)).is_err());
        assert!(t.request_commit(a1, &w(1)).is_err(), "not again while its part is in flight");
        t.published(a1);
        assert!(t.request_commit(a1, &w(1)).is_ok(), "asking again once settled is idempotent");
        assert!(matches!(t.succeed(a1, &w(1), None, Counters::new(), true, now), Verdict::Accepted(_)));
        assert!(t.request_commit(a2, &w(2)).is_err());
    }

    #[test]
    fn a_backup_runs_elsewhere_and_the_first_success_wins() {
        let now = Instant::now();
        let mut t = Task::new();
        let a1 = t.start(&w(1), now).unwrap();
        assert!(t.start(&w(2), now).is_none(), "a running task gets no second regular attempt");
        assert!(t.start_backup(&w(1), now).is_none(), "never a backup on the same worker");
        let a2 = t.start_backup(&w(2), now + Duration::from_secs(3)).unwrap();
        assert!(t.start_backup(&w(3), now).is_none(), "one backup at most");
        let later = now + Duration::from_secs(5);
        match t.succeed(a2, &w(2), None, Counters::new(), false, later) {
            Verdict::Accepted(won) => {
                assert!(won.backup);
                assert_eq!(won.took, Duration::from_secs(2));
                assert_eq!(won.losers, vec![(a1, w(1))]);
            }
            v => panic!("{v:?}"),
        }
        assert!(matches!(t.succeed(a1, &w(1), None, Counters::new(), false, later), Verdict::Stale(_)));
    }

    #[test]
    fn failed_workers_are_remembered() {
        let now = Instant::now();
        let mut t = Task::new();
        let a = t.start(&w(1), now).unwrap();
        t.fail(a, &w(1), "boom", true, 4, now);
        let a = t.start(&w(2), now).unwrap();
        t.worker_lost(&w(2), now);
        assert_eq!(t.failed_on, vec![w(1)], "a lost worker is not a failure");
        let _ = a;
    }

    #[test]
    fn commit_holder_lost_frees_the_commit_once_the_store_has_answered() {
        let now = Instant::now();
        let mut t = Task::new();
        let a1 = t.start(&w(1), now).unwrap();
        t.request_commit(a1, &w(1)).unwrap();
        t.worker_lost(&w(1), now);
        let a2 = t.start(&w(2), now).unwrap();
        assert!(t.request_commit(a2, &w(2)).is_err(), "the first part may still become visible");
        t.published(a1);
        assert!(t.request_commit(a2, &w(2)).is_ok());
    }

    #[test]
    fn lost_map_output_sends_the_task_back() {
        let now = Instant::now();
        let mut t = Task::new();
        let a = t.start(&w(1), now).unwrap();
        let out = MapOutput { epoch: 7, attempt: a, segments: vec![] };
        t.succeed(a, &w(1), Some(out.clone()), Counters::new(), false, now);
        assert!(t.ran(a, &w(1)) && !t.ran(a, &w(2)) && !t.ran(a + 1, &w(1)));
        assert_eq!(t.output_lost(a + 1), None, "another attempt's output is not this output");
        assert_eq!(t.output_lost(a), Some(out));
        assert_eq!(t.state, TaskState::Pending);
        assert_eq!(t.output_lost(a), None, "the same loss reported again is not another loss");
        assert_eq!(t.outputs_lost, 1);
        assert_eq!(t.start(&w(2), now), Some(2));
    }

    #[test]
    fn every_attempt_keeps_when_and_how_it_ended() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut t = Task::new();
        let a1 = t.start(&w(1), at(0)).unwrap();
        t.fail(a1, &w(1), "boom", true, 4, at(1));
        let a2 = t.start(&w(2), at(2)).unwrap();
        t.worker_lost(&w(2), at(3));
        let a3 = t.start(&w(3), at(4)).unwrap();
        assert_eq!(t.preempt(a3, at(5)), Some(w(3)));
        let a4 = t.start(&w(4), at(6)).unwrap();
        let a5 = t.start_backup(&w(5), at(7)).unwrap();
        assert!(matches!(t.succeed(a5, &w(5), None, Counters::new(), false, at(9)), Verdict::Accepted(_)));
        // A late report changes nothing.
        t.fail(a4, &w(4), "late", true, 4, at(10));
        let got: Vec<_> = t.history.iter().map(|r| (r.attempt, r.started, r.backup, r.ended.clone())).collect();
        assert_eq!(
            got,
            vec![
                (a1, at(0), false, Some((at(1), AttemptEnd::Failed("boom".into())))),
                (a2, at(2), false, Some((at(3), AttemptEnd::Lost))),
                (a3, at(4), false, Some((at(5), AttemptEnd::Preempted))),
                (a4, at(6), false, Some((at(9), AttemptEnd::Cancelled))),
                (a5, at(7), true, Some((at(9), AttemptEnd::Succeeded))),
            ]
        );
        // Attempts open when the job ends stay open (their end is the job's).
        let mut t = Task::new();
        let a = t.start(&w(1), at(0)).unwrap();
        assert_eq!(t.abort(), vec![(a, w(1))]);
        assert_eq!(t.history[0].ended, None);
        assert!(!t.is_live(a, &w(1)));
    }
}
