//! The REST API: the JSON objects of `quern status/list/tasks/workers --json`
//! ([`quern_api::json`]), built from the same wire types as the gRPC answers.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use quern_api::json::{status_json, task_json, worker_json};
use quern_api::{JobId, WorkerId, pb};
use serde_json::Value;

use super::App;
use crate::service::{anchor, now};
use crate::status::{job_status, job_tasks, worker_info};

/// The longest worker id looked up (ids are `worker_<ms>_<seq>`): longer is not one.
const MAX_WORKER_ID: usize = 64;

impl App {
    /// Every job, oldest first.
    pub(super) fn all_jobs(&self) -> Vec<pb::JobStatus> {
        self.shared.core().jobs().map(job_status).collect()
    }

    /// Every registered worker.
    pub(super) fn all_workers(&self) -> Vec<pb::WorkerInfo> {
        let core = self.shared.core();
        let at = now().at;
        core.workers().iter().map(|(id, w)| worker_info(id, w, at)).collect()
    }

    /// One job's status and its tasks as `quern tasks` shows them: an ended job's from its
    /// archive (see `crate::history`), read from the store; None if unknown. Should the
    /// store fail, the tasks as this coordinator holds them.
    pub(super) async fn job_and_kept_tasks(&self, id: &JobId) -> Option<(pb::JobStatus, Vec<pb::TaskInfo>)> {
        let status = self.shared.core().job(id).map(job_status)?;
        match crate::history::record(&self.shared, id).await {
            Ok(Some(r)) => Some((status, r.tasks)),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(job = %id, error = %e.message(), "could not read a job's archive");
                self.job_and_tasks(id)
            }
        }
    }

    /// One job's status and its tasks as held in memory (no store request); None if unknown.
    pub(super) fn job_and_tasks(&self, id: &JobId) -> Option<(pb::JobStatus, Vec<pb::TaskInfo>)> {
        let core = self.shared.core();
        let job = core.job(id)?;
        Some((job_status(job), job_tasks(job, anchor())))
    }

    /// One worker; None if unknown (or not a worker id).
    pub(super) fn worker(&self, id: &str) -> Option<pb::WorkerInfo> {
        let id = WorkerId::parse(id).ok().filter(|_| id.len() <= MAX_WORKER_ID)?;
        let core = self.shared.core();
        core.workers().get(&id).map(|w| worker_info(&id, w, now().at))
    }
}

fn not_found(what: &str) -> Response {
    (StatusCode::NOT_FOUND, Json(serde_json::json!({ "error": what }))).into_response()
}

/// A job id from a path; `.json` at its end is allowed (older links).
pub(super) fn job_id(raw: &str) -> Option<JobId> {
    JobId::parse(raw.trim_end_matches(".json")).ok()
}

pub(super) async fn jobs(State(app): State<App>) -> Json<Value> {
    Json(Value::Array(app.all_jobs().iter().map(status_json).collect()))
}

pub(super) async fn job(State(app): State<App>, Path(id): Path<String>) -> Response {
    let Some(id) = job_id(&id) else { return not_found("not a job id") };
    match app.shared.core().job(&id).map(job_status) {
        Some(s) => Json(status_json(&s)).into_response(),
        None => not_found("no such job"),
    }
}

pub(super) async fn tasks(State(app): State<App>, Path(id): Path<String>) -> Response {
    let Some(id) = job_id(&id) else { return not_found("not a job id") };
    match app.job_and_kept_tasks(&id).await {
        Some((_, ts)) => Json(Value::Array(ts.iter().map(task_json).collect())).into_response(),
        None => not_found("no such job"),
    }
}

pub(super) async fn workers(State(app): State<App>) -> Json<Value> {
    Json(Value::Array(app.all_workers().iter().map(worker_json).collect()))
}

pub(super) async fn worker(State(app): State<App>, Path(id): Path<String>) -> Response {
    match app.worker(&id) {
        Some(w) => Json(worker_json(&w)).into_response(),
        None => not_found("no such worker"),
    }
}
