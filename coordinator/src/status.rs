//! What users see: jobs, tasks and workers as wire types.

use std::time::Instant;

use quern_api::{StoreUrl, TaskKind, WorkerId, pb};

use crate::core::{Now, WorkerEntry};
use crate::job::{Job, JobState};
use crate::task::{AttemptEnd, Ran, Task, TaskState};

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

/// Milliseconds since the Unix epoch of `at`, by the anchor `now` (one moment on both
/// clocks, read by the caller: the core reads no clock).
pub fn wall_ms(at: Instant, now: Now) -> u64 {
    match now.at.checked_duration_since(at) {
        Some(ago) => now.wall_ms.saturating_sub(ago.as_millis() as u64),
        None => now.wall_ms.saturating_add(at.saturating_duration_since(now.at).as_millis() as u64),
    }
}

/// One attempt as users see it. An attempt still open though its task no longer runs it
/// was ended with its job (or its pipeline stage): killed, at the job's end if it has one.
fn attempt_info(task: &Task, r: &Ran, job_end_ms: Option<u64>, now: Now) -> pb::AttemptInfo {
    let (state, finished_ms, error) = match &r.ended {
        Some((at, how)) => {
            let error = match how {
                AttemptEnd::Failed(e) => Some(e.clone()),
                _ => None,
            };
            (how.name(), Some(wall_ms(*at, now)), error)
        }
        None if task.is_live(r.attempt, &r.worker) => ("running", None, None),
        None => ("killed", job_end_ms, None),
    };
    pb::AttemptInfo {
        attempt: r.attempt,
        worker: r.worker.to_string(),
        state: state.to_string(),
        started_ms: wall_ms(r.started, now),
        finished_ms,
        backup: r.backup,
        error,
    }
}

/// Every task of a job's running stages, with their attempts' times by the anchor `now`.
pub fn job_tasks(job: &Job, now: Now) -> Vec<pb::TaskInfo> {
    let job_end_ms = job.state().finished_ms();
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
                attempt_list: t.history.iter().map(|r| attempt_info(t, r, job_end_ms, now)).collect(),
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
