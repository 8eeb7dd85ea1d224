//! `/jobs/ID`: one job: its state and times, progress per phase, counters, locality, the
//! failed attempts, every attempt in a table (`?sort=duration` for the longest first), and
//! the timeline ([`super::timeline`]).

use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use maud::html;
use quern_api::json::{is_final, state_name};
use quern_api::now_ms;

use super::App;
use super::api::job_id;
use super::pages::{bar, missing, page, took, when};
use super::timeline::{MAX_DRAWN, bound, rows, svg};

pub(super) async fn job(State(app): State<App>, Path(id): Path<String>, RawQuery(query): RawQuery) -> Response {
    let Some(id) = job_id(&id) else { return missing("not a job id") };
    let Some((s, tasks)) = app.job_and_kept_tasks(&id).await else { return missing("no such job") };
    let by_duration = query.as_deref().unwrap_or("").split('&').any(|kv| kv == "sort=duration");
    let now = now_ms();
    let mut attempts = rows(&tasks);
    let failures: Vec<_> = attempts.iter().filter(|r| r.state == "failed").take(MAX_DRAWN).collect();
    let failures = html! {
        @if !failures.is_empty() {
            h2 { "Failures" }
            table #failures {
                tr { th { "task" } th { "attempt" } th { "worker" } th { "error" } }
                @for r in &failures {
                    tr { td { (r.task()) } td { (r.attempt) } td { (r.worker) } td.err { (r.error.as_deref().unwrap_or("")) } }
                }
            }
        }
    };
    let total = attempts.len();
    let left_out = bound(&mut attempts, by_duration, now);
    let (maps, reduces, loc) =
        (s.maps.unwrap_or_default(), s.reduces.unwrap_or_default(), s.locality.unwrap_or_default());
    let elapsed = s.finished_ms.unwrap_or(now).saturating_sub(s.submitted_ms);
    let state = state_name(s.state);
    let body = html! {
        h1 { "Job " (s.id) }
        table #summary {
            tr { th { "job" } td { (s.job) } }
            tr { th { "state" } td class=(state) { (state) } }
            tr { th { "submitted" } td { (when(s.submitted_ms)) } }
            tr { th { "elapsed" } td { (took(elapsed)) } }
            tr { th { "inputs" } td { (s.inputs.join(", ")) } }
            tr { th { "output" } td { (s.output) } }
            tr { th { "reducers" } td { (s.reducers) } }
            @for (k, v) in &s.params { tr { th { "param " (k) } td { (v) } } }
            @if let Some(e) = &s.error { tr { th { "error" } td.err { (e) } } }
        }
        h2 { "Progress" }
        table #progress {
            @if s.stages > 0 {
                tr { th { "stages" } td { "running " (s.running_stages.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")) " of " (s.stages) " (" (s.running_stage_jobs.join(", ")) ")" } }
            }
            tr { th { "maps" } td { (bar(maps.done, maps.total)) " (" (maps.running) " running)" } }
            tr { th { "reduces" } td { (bar(reduces.done, reduces.total)) " (" (reduces.running) " running)" } }
        }
        h2 { "Locality" }
        p #locality { "node-local " b { (loc.node_local) } ", rack-local " b { (loc.rack_local) } ", remote " b { (loc.remote) } }
        h2 { "Counters" }
        table #counters {
            @for (k, v) in &s.counters { tr { td { (k) } td.num { (v) } } }
        }
        (failures)
        h2 { "Timeline" }
        @if left_out > 0 {
            p { "Showing " (MAX_DRAWN) " of " (total) " attempts: the "
                @if by_duration { "longest." } @else { "most recently started." } }
        }
        (svg(&attempts, now))
        h2 { "Attempts" }
        p { a href={ "/jobs/" (s.id) } { "by start" } " | " a href={ "/jobs/" (s.id) "?sort=duration" } { "longest first" } }
        table #attempts {
            tr { th { "task" } th { "attempt" } th { "worker" } th { "state" } th { "locality" } th { "duration" } th { "error" } }
            @for r in &attempts {
                tr.attempt {
                    td { (r.task()) }
                    td.num { (r.attempt) @if r.backup { " (backup)" } }
                    td { a href={ "/workers/" (r.worker) } { (r.worker) } }
                    td class=(r.state) { (r.state) }
                    td { (r.locality) }
                    td.num { (took(r.took_ms(now))) }
                    td.err { (r.error.as_deref().unwrap_or("")) }
                }
            }
        }
    };
    page(&format!("Job {}", s.id), !is_final(&s), body).into_response()
}
