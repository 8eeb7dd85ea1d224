//! Rebuilding the state from the journal, as a step of [`Core`]: jobs, committed tasks,
//! stage starts, lost outputs, commits and ends, and the I/O that resumes them.

use quern_api::{Counters, JobId, TaskKind};

use super::{Action, Core, write_success};
use crate::job::{Job, JobState};
use crate::journal::Record;

impl Core {
    /// Rebuilds state from a journal: jobs, stage starts, committed tasks, lost outputs,
    /// commits and ends. Returns the I/O to resume: `_SUCCESS` for jobs that were committing,
    /// and the start of every pipeline stage that may start but had not (its input was being
    /// listed). Running attempts were not journalled; their tasks are pending again, in every
    /// stage that was running.
    pub fn replay(&mut self, records: Vec<Record>) -> Vec<Action> {
        for r in records {
            match r {
                Record::JobSubmitted { id, seq, spec, splits, submitted_ms } => {
                    let scratch = self.cfg.store.join(&format!("jobs/{id}/"));
                    self.next_job = self.next_job.max(seq + 1);
                    let job = Job::new(id.clone(), seq, *spec, splits, scratch, self.cfg.epoch_ms, submitted_ms);
                    self.jobs.insert(id, job);
                }
                Record::TaskSucceeded { job, kind, index, attempt, worker, output, counters, level } => {
                    // The attempt number names the stage (in journals of every version).
                    if let Some(mut j) = self.jobs.get_mut(&job)
                        && let Some(run) = j.run_of_mut(attempt)
                    {
                        run.with_task(kind, index, |t| t.restore(attempt, worker, output, Counters::from(counters)));
                        if kind == TaskKind::Map {
                            run.set_level(index, level);
                        }
                    }
                }
                Record::StageStarted { job, stage, splits } => {
                    if let Some(mut j) = self.jobs.get_mut(&job) {
                        j.restore_stage(stage, splits);
                    }
                }
                Record::MapOutputLost { job, index, attempt } => {
                    if let Some(mut j) = self.jobs.get_mut(&job)
                        && let Some(run) = j.run_of_mut(attempt)
                    {
                        run.with_task(TaskKind::Map, index, |t| t.output_lost(attempt));
                    }
                }
                Record::JobCommitting { job } => {
                    if let Some(mut j) = self.jobs.get_mut(&job) {
                        j.restore_committing();
                    }
                }
                Record::JobEnded { job, outcome, finished_ms } => {
                    if let Some(mut j) = self.jobs.get_mut(&job) {
                        j.restore_end(outcome, finished_ms);
                    }
                }
                Record::JobCleaned { job } => {
                    if let Some(mut j) = self.jobs.get_mut(&job) {
                        j.mark_cleaned();
                    }
                }
                Record::JobForgotten { job } => {
                    self.jobs.remove(&job);
                }
            }
        }
        let mut actions = Vec::new();
        let ids: Vec<JobId> = self.jobs.ids();
        for id in ids {
            // Stages that finished, stages that may start, or the commit, as if the last
            // task had just been reported. (A job committing or ended only files its
            // finished stages away, for its status.)
            if let Some(mut job) = self.jobs.get_mut(&id)
                && !job.is_running()
            {
                job.finish_stages();
                // An ended job's attempts are in its archive (see `crate::history`), not in
                // the journal; a resumed one's are kept from now on, and archived at its end.
                if job.state().is_final() {
                    job.mark_archived();
                }
            }
            let moved = self.stages_moved(&id);
            let commits = moved.iter().any(|a| matches!(a, Action::WriteSuccess { .. }));
            actions.extend(moved);
            if let Some(job) = self.jobs.get(&id)
                && *job.state() == JobState::Committing
                && !commits
            {
                actions.push(write_success(job));
            }
        }
        actions
    }
}
