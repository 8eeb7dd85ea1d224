//! How statuses look: JSON per CONTRACT.md, and plain text for people.

use quern_api::pb;

pub use quern_api::json::{is_final, state_name, status_json, task_json, worker_json};

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
    if s.stages > 0 {
        out.push_str(&format!("stage     {}/{} ({})\n", s.stage, s.stages, s.stage_job));
    }
    out.push_str(&format!("maps      {}\n", frac(s.maps)));
    out.push_str(&format!("reduces   {}\n", frac(s.reduces)));
    if s.generate_rows > 0 {
        out.push_str(&format!("generates {} records\n", s.generate_rows));
    } else {
        out.push_str(&format!("inputs    {} ({})\n", s.inputs.join(","), s.input_format));
    }
    out.push_str(&format!("writes    {}\n", s.output_format));
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
