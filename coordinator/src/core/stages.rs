//! Pipeline stages, as steps of [`Core`]: a finished stage leaves the running ones, stages
//! whose inputs are all there are asked to start (the shell lists and splits their input and
//! calls [`Core::start_stage`]), and the job commits once every stage is done.

use quern_api::split::Split;
use quern_api::{AttemptId, JobId, TaskId};

use super::{Action, Core, write_success};
use crate::job::Unsuccessful;
use crate::journal::Record;

impl Core {
    /// What follows once a stage's last part is committed (or a job was submitted, or
    /// replayed): finished stages leave the running ones (their temporary directories to
    /// clear, their stray attempts cancelled), stages whose inputs are now all there are
    /// asked to start, and a job whose every part is committed begins its commit.
    pub(crate) fn stages_moved(&mut self, id: &JobId) -> Vec<Action> {
        let Some(mut job) = self.jobs.get_mut(id) else { return Vec::new() };
        if !job.is_running() {
            return Vec::new();
        }
        let mut actions = Vec::new();
        let mut cancelled = Vec::new();
        for f in job.finish_stages() {
            tracing::info!(job = %id, stage = f.stage, "pipeline stage done");
            actions.push(Action::ClearStage { job: id.clone(), output: f.output, temporary: f.temporary });
            cancelled.extend(f.aborted);
        }
        for stage in job.take_ready_stages() {
            if let Some(s) = job.stage_start(stage) {
                actions.push(Action::StartStage {
                    job: id.clone(),
                    stage,
                    inputs: s.inputs,
                    objects: s.objects,
                    split_size: s.split_size,
                    input_format: s.input_format,
                });
            }
        }
        if job.begin_commit() {
            self.journal.push(Record::JobCommitting { job: id.clone() });
            actions.push(write_success(&job));
        }
        drop(job);
        for (kind, index, attempt, worker) in cancelled {
            let aid = AttemptId { task: TaskId { job: id.clone(), kind, index }, attempt };
            self.unassign(&worker, &aid);
            if let Some(w) = self.workers.get_mut(&worker) {
                w.to_cancel.push(aid);
            }
        }
        actions
    }

    /// Starts stage `stage` of pipeline job `id` over `splits` of what it reads.
    pub fn start_stage(&mut self, id: &JobId, stage: usize, splits: Vec<Split>) {
        let Some(mut job) = self.jobs.get_mut(id) else { return };
        if !job.is_running() {
            return;
        }
        let journalled = splits.clone();
        if job.start_stage(stage, splits) {
            self.journal.push(Record::StageStarted { job: id.clone(), stage: Some(stage), splits: journalled });
        }
    }

    /// A stage could not start (its input could not be listed): the job fails.
    pub fn start_stage_failed(&mut self, id: &JobId, error: String, now_ms: u64) -> Vec<Action> {
        self.end_job(id, Unsuccessful::Failed(error), now_ms)
    }
}
