//! `/workers/ID`: one worker: where it is, its slots, what it runs, when it was last heard
//! from, its cached ranges and local data, and the attempts it ran in the jobs the
//! coordinator holds (the most recent, bounded).

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use maud::html;
use quern_api::now_ms;

use super::App;
use super::pages::{missing, page, took, when};
use super::timeline::{MAX_DRAWN, Row, rows};

pub(super) async fn worker(State(app): State<App>, Path(id): Path<String>) -> Response {
    let Some(w) = app.worker(&id) else { return missing("no such worker") };
    // The attempts it ran, newest first: of every job the coordinator holds.
    let mut ran: Vec<(String, Row)> = Vec::new();
    let ids: Vec<_> = app.shared.core().jobs().map(|j| j.id().clone()).collect();
    for job in ids.iter().rev() {
        let Some((_, tasks)) = app.job_and_tasks(job) else { continue };
        ran.extend(rows(&tasks).into_iter().filter(|r| r.worker == w.id).map(|r| (job.to_string(), r)));
        if ran.len() >= MAX_DRAWN {
            break;
        }
    }
    ran.sort_by_key(|(_, r)| std::cmp::Reverse(r.started_ms));
    ran.truncate(MAX_DRAWN);
    let now = now_ms();
    let body = html! {
        h1 { "Worker " (w.id) }
        table #summary {
            tr { th { "host" } td { (w.host) } }
            tr { th { "rack" } td { (w.rack) } }
            tr { th { "slots" } td { (w.slots) } }
            tr { th { "running" } td { (w.running) } }
            tr { th { "completed" } td { (w.completed) } }
            tr { th { "last heartbeat" } td { (took(w.last_heartbeat_ms_ago)) " ago" } }
            tr { th { "cached ranges" } td { (w.cached_ranges) } }
            tr { th { "jobs it runs" } td { (w.jobs.join(", ")) } }
            tr { th { "local data" } td { (w.local_data.join(", ")) } }
        }
        h2 { "Attempts" }
        @if ran.len() == MAX_DRAWN { p { "The " (MAX_DRAWN) " most recent." } }
        table #attempts {
            tr { th { "job" } th { "task" } th { "attempt" } th { "state" } th { "started" } th { "duration" } th { "error" } }
            @for (job, r) in &ran {
                tr.attempt {
                    td { a href={ "/jobs/" (job) } { (job) } }
                    td { (r.task()) }
                    td.num { (r.attempt) }
                    td class=(r.state) { (r.state) }
                    td { (when(r.started_ms)) }
                    td.num { (took(r.took_ms(now))) }
                    td.err { (r.error.as_deref().unwrap_or("")) }
                }
            }
        }
    };
    page(&format!("Worker {}", w.id), w.running > 0, body).into_response()
}
