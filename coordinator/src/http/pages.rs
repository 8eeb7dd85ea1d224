//! The pages' common frame (head, style, refresh while something runs), the overview at `/`,
//! and the small pieces the other pages share. `maud` escapes every string it is given, in
//! text and in attributes alike; nothing here is concatenated into HTML by hand.

use std::time::{Duration, UNIX_EPOCH};

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};
use quern_api::json::{is_final, state_name};
use quern_api::pb;

use super::App;

const STYLE: &str = "body{font-family:sans-serif;margin:1em 2em;color:#222}\
table{border-collapse:collapse;margin:.5em 0}td,th{padding:2px 10px;text-align:left;border-bottom:1px solid #ddd}\
th{background:#f4f4f4}.bar{display:inline-block;width:120px;height:10px;background:#eee;vertical-align:middle}\
.bar span{display:block;height:100%;background:#4a8}.num{text-align:right}.err{color:#b22}\
.succeeded{color:#286}.failed,.lost{color:#b22}.running{color:#26a}.killed,.cancelled,.preempted{color:#888}\
.stats span{margin-right:2em}svg text{font-size:11px}";

/// A whole page: `title`, refreshing every 2 s while `live`.
pub(super) fn page(title: &str, live: bool, body: Markup) -> Html<String> {
    Html(
        html! {
            (DOCTYPE)
            html {
                head {
                    meta charset="utf-8";
                    @if live { meta http-equiv="refresh" content="2"; }
                    title { (title) " - Quern" }
                    style { (maud::PreEscaped(STYLE)) }
                }
                body {
                    p { a href="/" { "Quern" } }
                    (body)
                }
            }
        }
        .into_string(),
    )
}

/// A progress bar of `done` of `total`, with the numbers.
pub(super) fn bar(done: u32, total: u32) -> Markup {
    let pct = if total == 0 { 0 } else { u64::from(done) * 100 / u64::from(total) };
    html! {
        span.bar title={ (done) "/" (total) } { span style={ "width:" (pct) "%" } {} }
        " " (done) "/" (total)
    }
}

/// Milliseconds since the Unix epoch as a UTC time.
pub(super) fn when(ms: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// A duration in ms, for people.
pub(super) fn took(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        _ => humantime::format_duration(Duration::from_secs(ms / 1000)).to_string(),
    }
}

/// A 404 page saying what was not found.
pub(super) fn missing(what: &str) -> Response {
    (StatusCode::NOT_FOUND, page("Not found", false, html! { h1 { "Not found" } p { (what) } })).into_response()
}

pub(super) async fn not_found() -> Response {
    missing("no such page")
}

fn progress(p: Option<pb::Progress>) -> Markup {
    let p = p.unwrap_or_default();
    bar(p.done, p.total)
}

pub(super) async fn overview(axum::extract::State(app): axum::extract::State<App>) -> Html<String> {
    let jobs = app.all_jobs();
    let workers = app.all_workers();
    let count = |s: &str| jobs.iter().filter(|j| state_name(j.state) == s).count();
    let finished = jobs.iter().filter(|j| is_final(j)).count();
    let slots: u32 = workers.iter().map(|w| w.slots).sum();
    let busy: u32 = workers.iter().map(|w| w.running).sum();
    let live = jobs.iter().any(|j| !is_final(j));
    page(
        "Overview",
        live,
        html! {
            h1 { "Quern" }
            p.stats {
                span { "workers " b { (workers.len()) } }
                span { "slots in use " b { (busy) "/" (slots) } }
                span { "jobs queued " b { (count("queued")) } }
                span { "running " b { (count("running")) } }
                span { "finished " b { (finished) } }
            }
            h2 { "Jobs" }
            table #jobs {
                tr { th { "id" } th { "job" } th { "state" } th { "maps" } th { "reduces" } th { "submitted" } th { "output" } th { "error" } }
                @for j in jobs.iter().rev() {
                    tr {
                        td { a href={ "/jobs/" (j.id) } { (j.id) } }
                        td { (j.job) }
                        td class=(state_name(j.state)) { (state_name(j.state)) }
                        td { (progress(j.maps)) }
                        td { (progress(j.reduces)) }
                        td { (when(j.submitted_ms)) }
                        td { (j.output) }
                        td.err { (j.error.as_deref().unwrap_or("")) }
                    }
                }
            }
            h2 { "Workers" }
            table #workers {
                tr { th { "id" } th { "host" } th { "rack" } th { "slots" } th { "running" } th { "completed" } th { "last heartbeat" } }
                @for w in &workers {
                    tr {
                        td { a href={ "/workers/" (w.id) } { (w.id) } }
                        td { (w.host) }
                        td { (w.rack) }
                        td.num { (w.slots) }
                        td.num { (w.running) }
                        td.num { (w.completed) }
                        td { (took(w.last_heartbeat_ms_ago)) " ago" }
                    }
                }
            }
        },
    )
}
