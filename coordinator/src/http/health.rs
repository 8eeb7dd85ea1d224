//! The probes. `/healthz`: 200 while the process serves. `/readyz`: 200 only while this
//! coordinator leads (its last lease renewal is younger than the lease) and its journal
//! writer has not given up; otherwise 503 with the reason on one line. Both read what the
//! leadership loop and the journal writer already know: a probe makes no store request.

use std::time::Instant;

use axum::extract::State;
use axum::http::StatusCode;

use super::App;

pub(super) async fn healthz() -> &'static str {
    "ok\n"
}

pub(super) async fn readyz(State(app): State<App>) -> (StatusCode, String) {
    match not_ready(&app) {
        None => (StatusCode::OK, "ok\n".into()),
        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
    }
}

/// Why this coordinator should not get traffic, if it should not.
fn not_ready(app: &App) -> Option<String> {
    if !app.leader.leading() {
        return Some("standby: another coordinator holds the store's lease (or none has been taken yet)".into());
    }
    if !app.leader.valid(Instant::now()) {
        return Some("the store's lease was not renewed in time".into());
    }
    if let Some(why) = app.shared.journal_failure() {
        return Some(format!("the journal in the store is not writable: {why}"));
    }
    None
}
