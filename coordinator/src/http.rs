//! `--http ADDR`: the coordinator over HTTP, for people, scripts and monitoring.
//!
//! - pages for people ([`pages`], [`job_page`], [`worker_page`], drawn by [`timeline`]): `/`,
//!   `/jobs/ID`, `/workers/ID`, server-rendered with `maud` (every string escaped);
//! - a REST API ([`api`]): `/api/v1/jobs`, `/api/v1/jobs/ID`, `/api/v1/jobs/ID/tasks`,
//!   `/api/v1/workers`, `/api/v1/workers/ID`, the same JSON objects as the CLI's `--json`
//!   (also under the older `/api/...` paths);
//! - probes ([`health`]): `/healthz` (the process serves) and `/readyz` (it leads and its
//!   store is writable);
//! - Prometheus metrics ([`metrics`]): `/metrics`.
//!
//! Everything but the probes goes through the [`Guard`]: job names, paths and errors are not
//! for anyone who can reach the port, so a coordinator with a token requires
//! `Authorization: Bearer TOKEN` here too (unless `--http-public`), and TLS and client
//! certificates as on gRPC. The probes reveal only "ok" or why not, and orchestrators
//! cannot send a token, so they skip the token (not the connection's TLS rules). A standby
//! (not holding the store's lease) has no state to show: it answers the probes and the
//! metrics, and 503 to the rest.

mod api;
mod health;
mod job_page;
mod metrics;
mod pages;
mod timeline;
mod worker_page;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::lease::LeaderClock;
use crate::net::{Peer, PeerRules};
use crate::service::{Shared, constant_time_eq};

/// Who may read the pages.
#[derive(Clone, Debug, Default)]
pub struct Guard {
    /// The token a request must carry as `Authorization: Bearer TOKEN` (None: public).
    pub token: Option<Arc<str>>,
    /// What the connection must have (TLS, a client certificate).
    pub rules: PeerRules,
}

/// What every handler reads: the coordinator's state and whether it leads.
#[derive(Clone)]
pub(crate) struct App {
    shared: Arc<Shared>,
    leader: Arc<LeaderClock>,
}

/// The routes, over the coordinator's state, behind `guard`; `leader` says whether this
/// coordinator holds the lease. Serve it with `into_make_service_with_connect_info::<Peer>()`
/// so the guard sees the connection.
pub fn router(shared: Arc<Shared>, leader: Arc<LeaderClock>, guard: Guard) -> Router {
    let app = App { shared, leader };
    let guard = Arc::new(guard);
    // The state a standby has not replayed is nobody's: 503 until it leads.
    let leading = Router::new()
        .route("/", get(pages::overview))
        .route("/jobs/{id}", get(job_page::job))
        .route("/workers/{id}", get(worker_page::worker))
        .route("/api/jobs", get(api::jobs))
        .route("/api/jobs/{id}", get(api::job))
        .route("/api/jobs/{id}/tasks", get(api::tasks))
        .route("/api/workers", get(api::workers))
        .route("/api/v1/jobs", get(api::jobs))
        .route("/api/v1/jobs/{id}", get(api::job))
        .route("/api/v1/jobs/{id}/tasks", get(api::tasks))
        .route("/api/v1/workers", get(api::workers))
        .route("/api/v1/workers/{id}", get(api::worker))
        .fallback(pages::not_found)
        .layer(middleware::from_fn_with_state(app.clone(), only_leading));
    let guarded = Router::new()
        .route("/metrics", get(metrics::metrics))
        .merge(leading)
        .layer(middleware::from_fn_with_state(guard.clone(), check_token))
        .with_state(app.clone());
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .with_state(app)
        .merge(guarded)
        .layer(middleware::from_fn_with_state(guard, check_peer))
}

async fn check_peer(State(guard): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    let peer = req.extensions().get::<ConnectInfo<Peer>>().map(|ConnectInfo(p)| p);
    if let Some(refusal) = guard.rules.refusal(peer) {
        let code = if guard.rules.tls && !peer.is_some_and(|p| p.tls) {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::FORBIDDEN
        };
        return (code, format!("{refusal}\n")).into_response();
    }
    next.run(req).await
}

async fn check_token(State(guard): State<Arc<Guard>>, req: Request, next: Next) -> Response {
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

async fn only_leading(State(app): State<App>, req: Request, next: Next) -> Response {
    if !app.leader.valid(Instant::now()) {
        let why = "this coordinator is a standby (not holding the lease): ask the leader\n";
        return (StatusCode::SERVICE_UNAVAILABLE, why).into_response();
    }
    next.run(req).await
}
