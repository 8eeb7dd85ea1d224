//! `--http ADDR`: read-only status pages for people and scripts. `/` is an HTML overview that
//! refreshes itself; `/api/jobs`, `/api/jobs/ID`, `/api/jobs/ID/tasks` and `/api/workers` are
//! the same JSON objects as the CLI's `--json` output.
//!
//! Every page goes through the [`Guard`]: job names, paths and errors are not for anyone who
//! can reach the port, so a coordinator with a token requires `Authorization: Bearer TOKEN`
//! here too (unless `--http-public`), and TLS and client certificates as on gRPC.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Json, Response};
use axum::routing::get;
use quern_api::json::{state_name, status_json, task_json, worker_json};
use quern_api::{JobId, pb};

use crate::net::{Peer, PeerRules};
use crate::service::{Shared, constant_time_eq};
use crate::status::{job_status, job_tasks, worker_info};

/// Who may read the pages.
#[derive(Clone, Debug, Default)]
pub struct Guard {
    /// The token a request must carry as `Authorization: Bearer TOKEN` (None: public).
    pub token: Option<Arc<str>>,
    /// What the connection must have (TLS, a client certificate).
    pub rules: PeerRules,
}

/// The routes, over the coordinator's state, behind `guard`. Serve it with
/// `into_make_service_with_connect_info::<Peer>()` so the guard sees the connection.
pub fn router(shared: Arc<Shared>, guard: Guard) -> Router {
    Router::new()
        .route("/", get(overview))
        .route("/api/jobs", get(jobs))
        .route("/api/jobs/{id}", get(job))
        .route("/api/jobs/{id}/tasks", get(tasks))
        .route("/api/workers", get(workers))
        .with_state(shared)
        .layer(middleware::from_fn_with_state(Arc::new(guard), check))
}

async fn check(State(guard): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    let peer = req.extensions().get::<ConnectInfo<Peer>>().map(|ConnectInfo(p)| p);
    if let Some(refusal) = guard.rules.refusal(peer) {
        let code = if guard.rules.tls && !peer.is_some_and(|p| p.tls) {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::FORBIDDEN
        };
        return (code, format!("{refusal}\n")).into_response();
    }
    if let Some(token) = &guard.token {
        let given = req.headers().get(header::AUTHORIZATION).map(HeaderValue::as_bytes).unwrap_or_default();
        let expected = format!("Bearer {token}");
        if !constant_time_eq(given, expected.as_bytes()) {
            let mut resp = (StatusCode::UNAUTHORIZED, "missing or wrong token: send Authorization: Bearer TOKEN\n")
                .into_response();
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return resp;
        }
    }
    next.run(req).await
}

fn all_jobs(shared: &Shared) -> Vec<pb::JobStatus> {
    shared.core().jobs().map(job_status).collect()
}

fn all_workers(shared: &Shared) -> Vec<pb::WorkerInfo> {
    let core = shared.core();
    let now = Instant::now();
    core.workers().iter().map(|(id, w)| worker_info(id, w, now)).collect()
}

async fn jobs(State(shared): State<Arc<Shared>>) -> Json<serde_json::Value> {
    Json(serde_json::Value::Array(all_jobs(&shared).iter().map(status_json).collect()))
}

fn not_found(what: &str) -> Response {
    (StatusCode::NOT_FOUND, Json(serde_json::json!({ "error": what }))).into_response()
}

async fn job(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let Ok(id) = JobId::parse(id.trim_end_matches(".json")) else { return not_found("not a job id") };
    match shared.core().job(&id).map(job_status) {
        Some(s) => Json(status_json(&s)).into_response(),
        None => not_found("no such job"),
    }
}

async fn tasks(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let Ok(id) = JobId::parse(&id) else { return not_found("not a job id") };
    match shared.core().job(&id).map(|j| job_tasks(j, crate::service::now())) {
        Some(ts) => Json(serde_json::Value::Array(ts.iter().map(task_json).collect())).into_response(),
        None => not_found("no such job"),
    }
}

async fn workers(State(shared): State<Arc<Shared>>) -> Json<serde_json::Value> {
    Json(serde_json::Value::Array(all_workers(&shared).iter().map(worker_json).collect()))
}

/// Escapes text for HTML (job names, paths and error messages come from users).
fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn frac(p: Option<pb::Progress>) -> String {
    let p = p.unwrap_or_default();
    format!("{}/{}", p.done, p.total)
}

async fn overview(State(shared): State<Arc<Shared>>) -> Html<String> {
    let mut html = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"2\">\
         <title>Quern</title><style>body{font-family:sans-serif}td,th{padding:2px 10px;text-align:left}</style>\
         </head><body><h1>Quern</h1><h2>Jobs</h2><table><tr><th>id</th><th>job</th><th>state</th><th>maps</th>\
         <th>reduces</th><th>locality (node/rack/remote)</th><th>output</th><th>error</th></tr>",
    );
    for j in all_jobs(&shared).iter().rev() {
        let l = j.locality.unwrap_or_default();
        html.push_str(&format!(
            "<tr><td><a href=\"/api/jobs/{id}\">{id}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}/{}/{}</td><td>{}</td><td>{}</td></tr>",
            esc(&j.job),
            state_name(j.state),
            frac(j.maps),
            frac(j.reduces),
            l.node_local,
            l.rack_local,
            l.remote,
            esc(&j.output),
            esc(j.error.as_deref().unwrap_or("")),
            id = esc(&j.id),
        ));
    }
    html.push_str("</table><h2>Workers</h2><table><tr><th>id</th><th>host</th><th>rack</th><th>slots</th><th>running</th><th>completed</th></tr>");
    for w in all_workers(&shared) {
        html.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&w.id),
            esc(&w.host),
            esc(&w.rack),
            w.slots,
            w.running,
            w.completed
        ));
    }
    html.push_str("</table></body></html>");
    Html(html)
}
