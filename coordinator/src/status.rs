//! What users see: jobs, tasks and workers as wire types.

use std::time::Instant;

use quern_api::{StoreUrl, TaskKind, WorkerId, pb};

use crate::core::WorkerEntry;
use crate::job::{Job, JobState};
use crate::task::TaskState;

/// The user-facing state of a job.
pub fn job_state(job: &Job) -> pb::JobState {
    match job.state() {
        JobState::Running if !job.started() => pb::JobState::Queued,
        JobState::Running | JobState::Committing => pb::JobState::Running,
        JobState::Succeeded { .. } => pb::JobState::Succeeded,
        JobState::Failed { .. } => pb::JobState::Failed,
        JobState::Killed { .. } => pb::JobState::Killed,
    }
}

fn progress(job: &Job, kind: TaskKind) -> pb::Progress {
    let (total, done, running) = job.progress(kind);
    pb::Progress { total, done, running }
}

/// A job's status.
pub fn job_status(job: &Job) -> pb::JobStatus {
    let (node_local, rack_local, remote) = job.locality();
    // A pipeline shows the user's request; its running stages' tasks are the progress, and
    // `stage` (from 1) the first of them.
    let shown = job.shown_stages();
    let stage_job = |k: &usize| job.stage_job(*k).unwrap_or_default().to_string();
    let user = job.user_spec();
    pb::JobStatus {
        id: job.id().to_string(),
        job: user.name.clone(),
        state: job_state(job) as i32,
        maps: Some(progress(job, TaskKind::Map)),
        reduces: Some(progress(job, TaskKind::Reduce)),
        counters: job.counters().into_map(),
        locality: Some(pb::Locality { node_local, rack_local, remote }),
        error: match job.state() {
            JobState::Failed { error, .. } => Some(error.clone()),
            JobState::Killed { .. } => Some("killed by user".into()),
            _ => None,
        },
        output: user.output.to_string(),
        inputs: user.inputs.iter().map(StoreUrl::to_string).collect(),
        reducers: user.reducers,
        priority: user.priority,
        submitted_ms: job.submitted_ms(),
        finished_ms: job.state().finished_ms(),
        params: user.params.clone(),
        stage: shown.first().map_or(0, |k| *k as u32 + 1),
        stages: job.stage_count() as u32,
        stage_job: shown.first().map(stage_job).unwrap_or_default(),
        running_stages: shown.iter().map(|k| *k as u32 + 1).collect(),
        running_stage_jobs: shown.iter().map(stage_job).collect(),
        input_format: user.stages.first().map_or(user.formats.input, |s| s.formats.input).to_string(),
        output_format: user.stages.last().map_or(user.formats.output, |s| s.formats.output).to_string(),
        generate_rows: user.generate_rows,
    }
}

/// Every task of a job's running stages.
pub fn job_tasks(job: &Job) -> Vec<pb::TaskInfo> {
    let mut out = Vec::new();
    let pipeline = job.stage_count() > 0;
    for (run, kind) in job.runs().iter().flat_map(|r| [(r, TaskKind::Map), (r, TaskKind::Reduce)]) {
        for (i, t) in run.tasks(kind).iter().enumerate() {
            out.push(pb::TaskInfo {
                kind: pb::TaskKind::from(kind) as i32,
                index: i as u32,
                state: t.state_name().to_string(),
                attempts: t.attempts,
                workers: t.history.iter().map(|r| r.worker.to_string()).collect(),
                error: match &t.state {
                    TaskState::Failed { error } => Some(error.clone()),
                    _ => t.last_error.clone(),
                },
                locality: match kind {
                    TaskKind::Map => run.map_level(i as u32).map(|l| l.name().to_string()).unwrap_or_default(),
                    TaskKind::Reduce => String::new(),
                },
                stage: if pipeline { run.index() as u32 + 1 } else { 0 },
                attempt_list: Vec::new(),
            });
        }
    }
    out
}

/// One worker.
pub fn worker_info(id: &WorkerId, w: &WorkerEntry, now: Instant) -> pb::WorkerInfo {
    pb::WorkerInfo {
        id: id.to_string(),
        host: w.host.clone(),
        rack: w.rack.clone(),
        slots: w.slots,
        running: w.running.len() as u32,
        jobs: w.jobs.iter().cloned().collect(),
        last_heartbeat_ms_ago: now.saturating_duration_since(w.last_seen).as_millis() as u64,
        completed: w.completed,
        local_data: w.local_data.iter().map(StoreUrl::to_string).collect(),
        cached_ranges: w.cached.len() as u32,
    }
}
