//! Statuses as the JSON objects of the external contract (CONTRACT.md), shared by the CLI's
//! `--json` output and the coordinator's HTTP pages.

use serde_json::{Value, json};

use crate::pb;
use crate::submit::JobState;

/// `queued|running|succeeded|failed|killed` ([`JobState::as_str`]), or `unknown` for a value
/// this build does not know.
pub fn state_name(s: i32) -> &'static str {
    JobState::try_from(s).map_or("unknown", JobState::as_str)
}

/// Whether the job has ended.
pub fn is_final(s: &pb::JobStatus) -> bool {
    JobState::try_from(s.state).is_ok_and(JobState::is_final)
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
        "stage": s.stage,
        "stages": s.stages,
        "stage_job": s.stage_job,
        "running_stages": s.running_stages,
        "running_stage_jobs": s.running_stage_jobs,
        "input_format": s.input_format,
        "output_format": s.output_format,
        "generate_rows": s.generate_rows,
    })
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
        "workers": t.workers, "error": t.error, "locality": t.locality, "stage": t.stage,
        "attempt_list": t.attempt_list.iter().map(attempt_json).collect::<Vec<_>>(),
    })
}

/// One attempt of a task (`quern tasks --json`, `quern logs --json`).
pub fn attempt_json(a: &pb::AttemptInfo) -> Value {
    json!({
        "attempt": a.attempt, "worker": a.worker, "state": a.state, "started_ms": a.started_ms,
        "finished_ms": a.finished_ms, "backup": a.backup, "error": a.error,
    })
}
