//! Reports of attempts' outcomes, as named steps of [`Core::report`]: a success is taken or
//! refused (and an unused shuffle object deleted, by a name built here from the ids), a
//! failure retries or fails the job, a lost map output sends its map back (a bounded number
//! of times: [`OutputKeptLost`]).

use quern_api::{AttemptId, Counters, JobId, StoreUrl, TaskKind, WorkerId};

use super::{Action, Core, FailureKind, LostMap, Now, Outcome, Rejection};
use crate::job::{StageRun, Unsuccessful};
use crate::journal::Record;
use crate::task::{FailureEffect, MapOutput, Segment, Verdict};

impl Core {
    /// An attempt reports its outcome. Only an attempt that is live on the reporting worker
    /// changes anything; the answer says why a report was not taken.
    pub fn report(
        &mut self,
        worker: &WorkerId,
        attempt: &AttemptId,
        outcome: Outcome,
        now: Now,
    ) -> (Result<(), Rejection>, Vec<Action>) {
        let taken = self.take_report(worker, attempt, outcome, now);
        // Each report pays for its own job's index update, not the next poll or tick.
        self.refresh_index();
        taken
    }

    /// [`Core::report`] but for the index.
    fn take_report(
        &mut self,
        worker: &WorkerId,
        attempt: &AttemptId,
        outcome: Outcome,
        now: Now,
    ) -> (Result<(), Rejection>, Vec<Action>) {
        self.seen(worker, now);
        self.unassign(worker, attempt);
        if !self.jobs.contains_key(&attempt.task.job) {
            return (Err("unknown job"), Vec::new());
        }
        match outcome {
            Outcome::Succeeded { counters, segments } => {
                self.attempt_succeeded(worker, attempt, counters, segments, now)
            }
            Outcome::Failed { kind, message, lost_map } => {
                self.attempt_failed(worker, attempt, kind, &message, lost_map, now)
            }
            Outcome::Killed => (self.attempt_killed(worker, attempt, now), Vec::new()),
        }
    }

    /// A success report: the task takes the attempt's output if the attempt is live (and,
    /// for parts, held the commit); then the job may commit or start its next stage.
    fn attempt_succeeded(
        &mut self,
        worker: &WorkerId,
        attempt: &AttemptId,
        counters: Counters,
        segments: Option<Vec<Segment>>,
        now: Now,
    ) -> (Result<(), Rejection>, Vec<Action>) {
        let Some(mut job) = self.jobs.get_mut(&attempt.task.job) else { return (Err("unknown job"), Vec::new()) };
        let (kind, idx, n) = (attempt.task.kind, attempt.task.index, attempt.attempt);
        let (running, epoch) = (job.is_running(), job.epoch());
        let Some(run) = job.run_of_mut(n) else { return (Err("stage is not running"), Vec::new()) };
        let output = match map_output_of(run, epoch, kind, n, segments) {
            _ if !running => Err("job is not running"),
            other => other,
        };
        let live = run.tasks(kind).get(idx as usize).is_some_and(|t| t.is_live(n, worker));
        if let (Err(why), true) = (&output, live && running) {
            // A live attempt that reports a malformed success has failed: say so now rather
            // than let it hold its slot (and perhaps the commit) until the task timeout.
            let message = format!("malformed success report: {why}");
            drop(job);
            return self.attempt_failed(worker, attempt, FailureKind::Internal, &message, None, now);
        }
        let verdict = match output {
            Err(why) => Verdict::Stale(why),
            Ok(output) => {
                let needs_commit = kind == run.final_kind();
                let verdict = run
                    .with_task(kind, idx, |t| {
                        t.succeed(n, worker, output.clone(), counters.clone(), needs_commit, now.at)
                    })
                    .unwrap_or(Verdict::Stale("unknown task"));
                if matches!(verdict, Verdict::Accepted(_)) {
                    self.journal.push(Record::TaskSucceeded {
                        job: attempt.task.job.clone(),
                        kind,
                        index: idx,
                        attempt: n,
                        worker: worker.clone(),
                        output,
                        counters: counters.into_map(),
                        level: run.attempt_level(idx, n),
                    });
                }
                verdict
            }
        };
        drop(job);
        match verdict {
            Verdict::Accepted(won) => (Ok(()), self.task_won(worker, attempt, won)),
            Verdict::Stale(why) => (Err(why), self.stale_output(worker, attempt).into_iter().collect()),
        }
    }

    /// Bookkeeping once a task's attempt won: its locality, the losers cancelled, and the
    /// job's next step when this was its last part.
    fn task_won(&mut self, worker: &WorkerId, attempt: &AttemptId, won: crate::task::Won) -> Vec<Action> {
        let mut actions = Vec::new();
        let Some(mut job) = self.jobs.get_mut(&attempt.task.job) else { return actions };
        let Some(run) = job.run_of_mut(attempt.attempt) else { return actions };
        let (kind, idx, n) = (attempt.task.kind, attempt.task.index, attempt.attempt);
        if kind == TaskKind::Map {
            let level = run.attempt_level(idx, n);
            run.set_level(idx, level);
        }
        run.record_win(kind, &won);
        let part_done = kind == run.final_kind() && run.outputs_complete();
        drop(job);
        // A part: its stage (and then the job) may be done.
        if part_done {
            actions.extend(self.stages_moved(&attempt.task.job));
        }
        if let Some(w) = self.workers.get_mut(worker) {
            w.completed += 1;
        }
        // The first to finish wins; the others are told to stop.
        for (loser, on) in &won.losers {
            let aid = AttemptId { task: attempt.task.clone(), attempt: *loser };
            self.unassign(on, &aid);
            if let Some(w) = self.workers.get_mut(on) {
                w.to_cancel.push(aid);
            }
        }
        actions
    }

    /// The shuffle object of a map attempt whose success was not taken, to delete: only an
    /// attempt this worker really ran, and never the task's current output. The name is
    /// built here, from the ids.
    fn stale_output(&self, worker: &WorkerId, attempt: &AttemptId) -> Option<Action> {
        let (idx, n) = (attempt.task.index, attempt.attempt);
        let run = self.jobs.get(&attempt.task.job)?.run_of(n)?;
        if attempt.task.kind != TaskKind::Map || run.map_only() {
            return None;
        }
        let task = run.tasks(TaskKind::Map).get(idx as usize)?;
        (task.ran(n, worker) && task.output_attempt() != Some(n)).then(|| Action::Delete(run.shuffle_url(idx, n)))
    }

    /// A failure report: the task retries or, out of attempts, fails its job. A reducer
    /// that found a map output unusable sends that map back to be run again.
    fn attempt_failed(
        &mut self,
        worker: &WorkerId,
        attempt: &AttemptId,
        kind: FailureKind,
        message: &str,
        lost_map: Option<LostMap>,
        now: Now,
    ) -> (Result<(), Rejection>, Vec<Action>) {
        // A worker that cannot build the job (bad parameters, a panicking builder) would fail
        // the same way everywhere: the job fails at once instead of after every retry.
        let max = if kind == FailureKind::Config { 1 } else { self.cfg.max_attempts };
        let (task_kind, idx, n) = (attempt.task.kind, attempt.task.index, attempt.attempt);
        let Some(mut job) = self.jobs.get_mut(&attempt.task.job) else { return (Err("unknown job"), Vec::new()) };
        let Some(run) = job.run_of_mut(n) else { return (Err("stage is not running"), Vec::new()) };
        // A lost map output does not count against the reducer when it names a map attempt
        // that was handed out (the current output, or one a re-run replaced); anything else
        // counts. Excused failures are capped per task (`MAX_EXCUSED`), so a peer that keeps
        // crying wolf cannot loop a job forever.
        // (The maps a reducer reads are of its own stage.)
        let names_an_output = |l: &LostMap| {
            run.tasks(TaskKind::Map)
                .get(l.index as usize)
                .is_some_and(|t| t.history.iter().any(|r| r.attempt == l.attempt))
                || run.tasks(TaskKind::Map).get(l.index as usize).and_then(crate::task::Task::output_attempt)
                    == Some(l.attempt)
        };
        let counts = !(kind == FailureKind::MapOutputLost
            && task_kind == TaskKind::Reduce
            && lost_map.as_ref().is_some_and(names_an_output));
        let effect = run
            .with_task(task_kind, idx, |t| t.fail(n, worker, message, counts, max, now.at))
            .unwrap_or(FailureEffect::Stale("unknown task"));
        drop(job);
        match effect {
            FailureEffect::Stale(why) => (Err(why), Vec::new()),
            FailureEffect::Retry => {
                let lost = lost_map.filter(|_| kind == FailureKind::MapOutputLost && task_kind == TaskKind::Reduce);
                let actions = match lost {
                    Some(l) => self.map_output_lost(&attempt.task.job, n, l, now.wall_ms),
                    None => Vec::new(),
                };
                (Ok(()), actions)
            }
            FailureEffect::Exhausted(msg) => {
                let what = if task_kind == TaskKind::Map { "map" } else { "reduce" };
                let error = format!("{what} task {idx} {msg}");
                (Ok(()), self.end_job(&attempt.task.job, Unsuccessful::Failed(error), now.wall_ms))
            }
        }
    }

    /// Map `lost.index`'s output by attempt `lost.attempt` is unusable: run the map again
    /// and delete the object. Only that output: several reducers may report the same bad
    /// object, and a re-run's new output must stay.
    ///
    /// The `max_attempts`-th loss of one map's output fails the job instead. A real loss (a
    /// corrupt segment, an object removed behind Quern's back) is rare, and each re-run
    /// writes a fresh object; a map whose output vanishes that many times is looking at a
    /// store its workers do not share (each host its own `file:///tmp/store`, workers
    /// pointed at different S3 endpoints), where re-running can never help. The limit is
    /// the failure budget users already tune with `--max-attempts`.
    /// `reducer` is the reporting attempt: the lost map is of its stage.
    fn map_output_lost(&mut self, job_id: &JobId, reducer: u32, lost: LostMap, now_ms: u64) -> Vec<Action> {
        let Some(mut job) = self.jobs.get_mut(job_id) else { return Vec::new() };
        let Some(run) = job.run_of_mut(reducer) else { return Vec::new() };
        let Some(Some(old)) = run.with_task(TaskKind::Map, lost.index, |t| t.output_lost(lost.attempt)) else {
            return Vec::new();
        };
        self.journal.push(Record::MapOutputLost { job: job_id.clone(), index: lost.index, attempt: lost.attempt });
        let delete = Action::Delete(run.shuffle_url_of(lost.index, &old));
        let times = run.tasks(TaskKind::Map).get(lost.index as usize).map_or(0, |t| t.outputs_lost);
        if times < self.cfg.max_attempts {
            tracing::warn!(job = %job_id, map = lost.index, times, "map output lost; running the map again");
            return vec![delete];
        }
        drop(job);
        let why = OutputKeptLost { map: lost.index, times, store: StoreHint::of(&self.cfg.store) };
        tracing::error!(job = %job_id, error = %why, "failing the job");
        let mut actions = vec![delete];
        actions.extend(self.end_job(job_id, Unsuccessful::Failed(why.to_string()), now_ms));
        actions
    }

    /// A live attempt gave up because it was told to.
    fn attempt_killed(&mut self, worker: &WorkerId, attempt: &AttemptId, now: Now) -> Result<(), Rejection> {
        let max = self.cfg.max_attempts;
        let mut job = self.jobs.get_mut(&attempt.task.job).ok_or("unknown job")?;
        let run = job.run_of_mut(attempt.attempt).ok_or("stage is not running")?;
        match run.with_task(attempt.task.kind, attempt.task.index, |t| {
            t.fail(attempt.attempt, worker, "killed", false, max, now.at)
        }) {
            Some(FailureEffect::Stale(why)) => Err(why),
            Some(_) => Ok(()),
            None => Err("unknown task"),
        }
    }
}

/// A job fails because one map's output kept getting lost: the likely cause is a store
/// the workers do not share, which the message names.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("map {map}'s output was lost {times} times: do the workers share the store? ({store})")]
pub struct OutputKeptLost {
    /// The map task.
    pub map: u32,
    /// How many of its outputs were lost.
    pub times: u32,
    /// What sharing means for the coordinator's store.
    pub store: StoreHint,
}

/// What a store the workers share must be, by the store's kind.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreHint {
    /// `file://`: every host must mount the same directory.
    #[error("a file:// store must be a shared file system")]
    File,
    /// `s3://`: every worker must reach the same service and bucket.
    #[error("every worker's AWS_* settings must reach the same S3 service for {0}")]
    S3(StoreUrl),
    /// `memory://`: one process's memory.
    #[error("a memory:// store is shared only within one process")]
    Memory,
}

impl StoreHint {
    /// The hint for `store`.
    pub fn of(store: &StoreUrl) -> Self {
        match store.scheme() {
            "file" => StoreHint::File,
            "memory" => StoreHint::Memory,
            _ => StoreHint::S3(store.clone()),
        }
    }
}

/// The map output a success report describes: maps of jobs with reducers report one
/// segment per reduce task; other attempts report none.
fn map_output_of(
    run: &StageRun,
    epoch: u64,
    kind: TaskKind,
    attempt: u32,
    segments: Option<Vec<Segment>>,
) -> Result<Option<MapOutput>, Rejection> {
    let shuffles = kind == TaskKind::Map && !run.map_only();
    match segments {
        None if shuffles => Err("a map attempt must report its map output"),
        Some(_) if !shuffles => Err("only map attempts of jobs with reducers report map output"),
        Some(s) if s.len() != run.spec().reducers as usize => Err("map output has the wrong number of partitions"),
        Some(segments) => Ok(Some(MapOutput { epoch, attempt, segments })),
        None => Ok(None),
    }
}
