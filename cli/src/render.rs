//! How statuses look: JSON per CONTRACT.md, and plain text for people.

use quern_api::pb;
use serde_json::{Value, json};

/// `queued|running|succeeded|failed|killed`.
pub fn state_name(s: i32) -> &'static str {
    match pb::JobState::try_from(s) {
        Ok(pb::JobState::Queued) => "queued",
        Ok(pb::JobState::Running) => "running",
        Ok(pb::JobState::Succeeded) => "succeeded",
        Ok(pb::JobState::Failed) => "failed",
        Ok(pb::JobState::Killed) => "killed",
        _ => "unknown",
    }
}

/// Whether the job has ended.
pub fn is_final(s: &pb::JobStatus) -> bool {
    matches!(state_name(s.state), "succeeded" | "failed" | "killed")
}

fn progress(p: Option<pb::Progress>) -> Value {
    let p = p.unwrap_or_default();
    json!({"total": p.total, "done": p.done, "running": p.running})
}

/// A job status as the contract's JSON object.
pub fn status_json(s: &pb::JobStatus) -> Value {
    let loc = s.locality.unwrap_or_default();
    json!({
        "id": s.id,
        "job": s.job,
        "state": state_name(s.state),
        "maps": progress(s.maps),
        "reduces": progress(s.reduces),
        "counters": s.counters,
        "locality": {"node_local": loc.node_local, "rack_local": loc.rack_local, "remote": loc.remote},
        "error": s.error,
        "inputs": s.inputs,
        "output": s.output,
        "reducers": s.reducers,
        "priority": s.priority,
        "params": s.params,
        "submitted_ms": s.submitted_ms,
        "finished_ms": s.finished_ms,
    })
}

fn frac(p: Option<pb::Progress>) -> String {
    let p = p.unwrap_or_default();
    format!("{}/{}", p.done, p.total)
}

/// One line: id, job, state, progress.
pub fn status_line(s: &pb::JobStatus) -> String {
    format!(
        "{}  {:<10} {:<9} maps {:>9}  reduces {:>9}",
        s.id,
        s.job,
        state_name(s.state),
        frac(s.maps),
        frac(s.reduces)
    )
}

/// A full human-readable status.
pub fn status_text(s: &pb::JobStatus) -> String {
    let mut out = String::new();
    out.push_str(&format!("job       {}\n", s.id));
    out.push_str(&format!("name      {}\n", s.job));
    out.push_str(&format!("state     {}\n", state_name(s.state)));
    out.push_str(&format!("maps      {}\n", frac(s.maps)));
    out.push_str(&format!("reduces   {}\n", frac(s.reduces)));
    out.push_str(&format!("inputs    {}\n", s.inputs.join(",")));
    out.push_str(&format!("output    {}\n", s.output));
    if let (Some(end), start) = (s.finished_ms, s.submitted_ms) {
        out.push_str(&format!("elapsed   {:.3}s\n", end.saturating_sub(start) as f64 / 1000.0));
    }
    if let Some(e) = &s.error {
        out.push_str(&format!("error     {e}\n"));
    }
    if !s.counters.is_empty() {
        out.push_str("counters\n");
        let w = s.counters.keys().map(String::len).max().unwrap_or(0);
        for (k, v) in &s.counters {
            out.push_str(&format!("  {k:<w$}  {v}\n"));
        }
    }
    out
}

/// A worker as JSON.
pub fn worker_json(w: &pb::WorkerInfo) -> Value {
    json!({
        "id": w.id, "host": w.host, "rack": w.rack, "slots": w.slots, "running": w.running,
        "jobs": w.jobs, "last_heartbeat_ms_ago": w.last_heartbeat_ms_ago, "completed": w.completed,
        "local_data": w.local_data, "cached_ranges": w.cached_ranges,
    })
}

/// A task as JSON.
pub fn task_json(t: &pb::TaskInfo) -> Value {
    let kind = if t.kind == pb::TaskKind::Map as i32 { "map" } else { "reduce" };
    json!({
        "kind": kind, "index": t.index, "state": t.state, "attempts": t.attempts,
        "workers": t.workers, "error": t.error, "locality": t.locality,
    })
}
