//! The history of ended jobs: what `quern list`, `quern tasks`, `quern logs` and the web
//! pages show of a job after it ended, across coordinator restarts.
//!
//! The journal keeps every ended job's submission, task successes and end (so its status
//! and counters replay), but not its attempts: how long each ran, where, how the failed
//! ones failed and what they logged. Those go to the job's archive, `STORE/history/ID.pb`
//! (a [`pb::JobArchive`]: final status, task list with attempts, failed attempts' log
//! lines), written once the job's end is durable, just before its data is deleted
//! ([`crate::perform`]). A job rebuilt from the journal answers from its archive.
//!
//! The history is bounded by count and age (`--history-jobs`, `--history-age`): past
//! either, [`crate::core::Core::forget_old`] forgets an ended job (journalled, so it stays
//! forgotten) and its archive is deleted.

use std::time::Instant;

use object_store::{ObjectStoreExt, PutPayload};
use prost::Message;
use quern_api::{JobId, StoreError, StoreUrl, TaskKind, pb};
use tonic::Status;

use crate::core::archive_url;
use crate::job::Job;
use crate::service::{Shared, anchor};
use crate::status::{job_status, job_tasks};

/// The largest archive read back: the coordinator wrote it, but the store is shared.
pub const MAX_ARCHIVE: u64 = 256 << 20;

/// What an ended job leaves in its archive.
pub fn archive(job: &Job) -> pb::JobArchive {
    let logs = job.logs().all().map(|l| pb::ArchivedLog {
        kind: pb::TaskKind::from(l.kind) as i32,
        index: l.index,
        attempt: l.attempt,
        lines: l.lines.clone(),
    });
    pb::JobArchive { status: Some(job_status(job)), tasks: job_tasks(job, anchor()), logs: logs.collect() }
}

/// Writes `job`'s archive (replacing one a crashed cleanup wrote before).
pub async fn write(store: &StoreUrl, job: &JobId, archive: pb::JobArchive) -> Result<(), StoreError> {
    let url = archive_url(store, job);
    let s = url.store()?;
    s.put(&url.path(), PutPayload::from(archive.encode_to_vec()))
        .await
        .map(|_| ())
        .map_err(|e| StoreError::from_store(url.as_str(), e))
}

/// Reads `job`'s archive; `None` if there is none (the job ended before archives were
/// kept, or its cleanup never ran).
pub async fn read(store: &StoreUrl, job: &JobId) -> Result<Option<pb::JobArchive>, Status> {
    let url = archive_url(store, job);
    let failed = |e: String| Status::unavailable(format!("reading the archive of {job}: {e}"));
    let s = url.store().map_err(|e| failed(e.to_string()))?;
    let got = match s.get(&url.path()).await {
        Ok(g) => g,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(failed(e.to_string())),
    };
    if got.meta.size > MAX_ARCHIVE {
        return Err(failed(format!("{} bytes, over the limit of {MAX_ARCHIVE}", got.meta.size)));
    }
    let bytes = got.bytes().await.map_err(|e| failed(e.to_string()))?;
    pb::JobArchive::decode(bytes).map(Some).map_err(|e| Status::data_loss(format!("the archive of {job}: {e}")))
}

/// What a job's attempts did: from memory, or from the archive of a job rebuilt from the
/// journal.
pub struct Record {
    /// The tasks, with their attempts.
    pub tasks: Vec<pb::TaskInfo>,
    /// Failed attempts' log lines.
    pub logs: Vec<pb::ArchivedLog>,
}

/// The task list and logs of job `id`; `None` if no such job is known.
pub async fn record(shared: &Shared, id: &JobId) -> Result<Option<Record>, Status> {
    let store = {
        let core = shared.core();
        let Some(job) = core.job(id) else { return Ok(None) };
        if !job.is_archived() {
            let a = archive(job);
            return Ok(Some(Record { tasks: a.tasks, logs: a.logs }));
        }
        core.config().store.clone()
    };
    let from_archive = read(&store, id).await?;
    let core = shared.core();
    let Some(job) = core.job(id) else { return Ok(None) };
    Ok(Some(match from_archive {
        Some(a) => Record { tasks: a.tasks, logs: a.logs },
        // What the journal knows: the tasks' successes, no attempts.
        None => Record { tasks: job_tasks(job, anchor()), logs: Vec::new() },
    }))
}

/// `quern logs`: the attempts of one task with the lines the failed ones sent back.
pub async fn task_logs(shared: &Shared, req: pb::TaskLogsRequest) -> Result<pb::TaskLogsResponse, Status> {
    let id = JobId::parse(&req.job_id).map_err(|e| Status::invalid_argument(e.to_string()))?;
    let kind = match pb::TaskKind::try_from(req.kind) {
        Ok(pb::TaskKind::Map) => TaskKind::Map,
        Ok(pb::TaskKind::Reduce) => TaskKind::Reduce,
        _ => return Err(Status::invalid_argument("the task kind must be map or reduce")),
    };
    let Some(rec) = record(shared, &id).await? else {
        return Err(Status::not_found(format!("no job {id}")));
    };
    let pb_kind = pb::TaskKind::from(kind) as i32;
    // A pipeline's stages each have tasks of every index: stage 0 means the last one.
    let task = rec
        .tasks
        .iter()
        .filter(|t| t.kind == pb_kind && t.index == req.index && (req.stage == 0 || t.stage == req.stage))
        .max_by_key(|t| t.stage)
        .ok_or_else(|| {
            let kind = if kind == TaskKind::Map { "map" } else { "reduce" };
            Status::not_found(format!("job {id} has no {kind} task {}", req.index))
        })?;
    let lines = |attempt: u32| {
        rec.logs
            .iter()
            .find(|l| l.kind == pb_kind && l.index == req.index && l.attempt == attempt)
            .map(|l| l.lines.clone())
            .unwrap_or_default()
    };
    let mut attempts: Vec<pb::AttemptLog> = task
        .attempt_list
        .iter()
        .map(|a| pb::AttemptLog { attempt: Some(a.clone()), lines: lines(a.attempt) })
        .collect();
    if attempts.is_empty() {
        // Attempts not known one by one (a job the journal rebuilt without an archive): the
        // failed ones that sent lines, then the last one with the task's state and error.
        for l in rec.logs.iter().filter(|l| l.kind == pb_kind && l.index == req.index) {
            let attempt = pb::AttemptInfo { attempt: l.attempt, state: "failed".into(), ..Default::default() };
            attempts.push(pb::AttemptLog { attempt: Some(attempt), lines: l.lines.clone() });
        }
        if !attempts.iter().any(|a| a.attempt.as_ref().is_some_and(|a| a.attempt == task.attempts)) {
            let last = pb::AttemptInfo {
                attempt: task.attempts,
                state: task.state.clone(),
                error: task.error.clone(),
                ..Default::default()
            };
            attempts.push(pb::AttemptLog { attempt: Some(last), lines: Vec::new() });
        }
    }
    Ok(pb::TaskLogsResponse { attempts })
}

/// Writes the archive of ended job `id`, which is answered from there afterwards (unless it
/// has one already, or was rebuilt from the journal: its archive, if any, is the one its
/// first coordinator wrote). Best effort: a job without an archive is answered from memory,
/// or after a restart with its tasks as the journal knows them.
pub async fn archive_ended(shared: &Shared, id: &JobId) {
    let (store, archive) = {
        let core = shared.core();
        let Some(job) = core.job(id) else { return };
        if job.is_archived() || !job.state().is_final() {
            return;
        }
        (core.config().store.clone(), archive(job))
    };
    let started = Instant::now();
    match write(&store, id, archive).await {
        Ok(()) => {
            shared.core().archived(id);
            tracing::debug!(job = %id, ms = started.elapsed().as_millis() as u64, "job archived");
        }
        Err(e) => tracing::warn!(job = %id, error = %e, "could not write the job's archive"),
    }
}
