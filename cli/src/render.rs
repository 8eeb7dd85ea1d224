//! How statuses look: JSON per CONTRACT.md, and plain text for people; and how anything
//! reaches the terminal ([`write_out`], [`write_err`]).

use std::io::Write;

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
    if s.running_stages.len() > 1 {
        // Independent stages of a DAG pipeline running side by side.
        let stages: Vec<String> = s.running_stages.iter().map(u32::to_string).collect();
        let jobs = s.running_stage_jobs.join(", ");
        out.push_str(&format!("stages    {} of {} running ({jobs})\n", stages.join(","), s.stages));
    } else if s.stages > 0 {
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

/// Writes to stdout, for every `print!`/`println!` of this crate (see the macros in
/// `lib.rs`). Output piped into `head` or a pager that quits early finds stdout closed: that
/// is the reader saying it has seen enough, not an error, so the process exits at once and
/// quietly, with success, as `ripgrep` and friends do. Any other write error (a full disk)
/// is one line on stderr and exit status 1. `std`'s `println!` panics in both cases.
pub fn write_out(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        write_err(format_args!("error: writing to stdout: {e}\n"));
        std::process::exit(1);
    }
}

/// Writes to stderr, for every `eprint!`/`eprintln!` of this crate. A closed or failing
/// stderr leaves nowhere to report anything, so the error is dropped and the command goes on
/// to its normal exit status.
pub fn write_err(args: std::fmt::Arguments<'_>) {
    let _ = std::io::stderr().lock().write_fmt(args);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pipeline_shows_its_running_stage_or_the_branches_running_side_by_side() {
        let mut s = pb::JobStatus { stage: 2, stages: 3, stage_job: "topn".into(), ..Default::default() };
        s.running_stages = vec![2];
        s.running_stage_jobs = vec!["topn".into()];
        assert!(status_text(&s).contains("stage     2/3 (topn)\n"));
        s.running_stages = vec![1, 2];
        s.running_stage_jobs = vec!["wordcount".into(), "indexer".into()];
        assert!(status_text(&s).contains("stages    1,2 of 3 running (wordcount, indexer)\n"), "{}", status_text(&s));
        assert!(!status_text(&pb::JobStatus::default()).contains("stage"));
    }
}
