//! How statuses look: JSON per CONTRACT.md ([`quern_api::json`]), and text for people: the
//! `status` summary, the `list`, `workers` and `tasks` tables, the summary after a job
//! ([`summary`]); and how anything reaches the terminal ([`write_out`], [`write_err`]).
//!
//! Every string that came from elsewhere (job names, hosts, errors, URLs) passes through
//! [`clean`] before it is shown: a job name holding an escape sequence must not be able to
//! retitle a window, move the cursor or hide a line from whoever reads the output.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::Write;

use comfy_table::{Cell, CellAlignment, ColumnConstraint, ContentArrangement, Table};
use indicatif::{HumanBytes, HumanCount};
use quern_api::counters::names;
use quern_api::pb;

pub use quern_api::json::{is_final, state_name, status_json, task_json, worker_json};

/// How wide a table may be when stdout is not a terminal: wide enough for every column and a
/// useful part of an error; `--json` has the rest.
const PIPE_WIDTH: u16 = 160;

/// Whether `c` can change how a terminal shows what follows it: C0 and C1 controls (ESC
/// starts every escape sequence, CR and BS overwrite) and the Unicode marks that reorder text
/// (bidirectional overrides and isolates, which can make a line read differently than it is).
fn is_unsafe(c: char) -> bool {
    c.is_control() || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `s` with every control character and reordering mark written as a Rust escape (`\u{1b}`,
/// `\n`), so that it shows as visible text on one line and does nothing else.
pub fn clean(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if is_unsafe(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A span of time, as short as it stays readable: `850ms`, `12.3s`, `4m05s`, `2h03m`, `3d04h`.
pub fn duration(ms: u64) -> String {
    const S: u64 = 1_000;
    const M: u64 = 60 * S;
    const H: u64 = 60 * M;
    const D: u64 = 24 * H;
    match ms {
        ..S => format!("{ms}ms"),
        S..M => format!("{:.1}s", ms as f64 / 1000.0),
        M..H => format!("{}m{:02}s", ms / M, ms % M / S),
        H..D => format!("{}h{:02}m", ms / H, ms % H / M),
        _ => format!("{}d{:02}h", ms / D, ms % D / H),
    }
}

/// How long ago something happened, to the second: `just now`, `42s ago`, `3m10s ago`.
pub fn ago(ms: u64) -> String {
    if ms < 1_000 { "just now".to_string() } else { format!("{} ago", duration(ms - ms % 1_000).replace(".0s", "s")) }
}

/// Milliseconds since the Unix epoch, as the coordinator stamps its times.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `[#####-----]`: `done` of `total` in `width` cells (empty when there is nothing to do).
pub fn bar(done: u32, total: u32, width: usize) -> String {
    let filled = if total == 0 { 0 } else { (u64::from(done.min(total)) * width as u64 / u64::from(total)) as usize };
    format!("[{}{}]", "#".repeat(filled), "-".repeat(width - filled))
}

fn frac(p: Option<pb::Progress>) -> String {
    let p = p.unwrap_or_default();
    format!("{}/{}", p.done, p.total)
}

/// How long a job has run: until it finished, or until `now`.
fn job_elapsed(s: &pb::JobStatus, now: u64) -> u64 {
    s.finished_ms.unwrap_or(now).saturating_sub(s.submitted_ms)
}

/// Which stage(s) of a pipeline run now (`2/3 topn`, `1,2/3 wordcount, indexer`); `None` for
/// a plain job.
pub fn stage_label(s: &pb::JobStatus) -> Option<String> {
    if s.running_stages.len() > 1 {
        let stages: Vec<String> = s.running_stages.iter().map(u32::to_string).collect();
        let jobs: Vec<Cow<'_, str>> = s.running_stage_jobs.iter().map(|j| clean(j)).collect();
        Some(format!("{}/{} {}", stages.join(","), s.stages, jobs.join(", ")))
    } else {
        (s.stages > 0).then(|| format!("{}/{} {}", s.stage, s.stages, clean(&s.stage_job)))
    }
}

/// Map locality in words: `118 node-local, 0 rack-local, 2 remote`.
pub fn locality(s: &pb::JobStatus) -> String {
    let l = s.locality.unwrap_or_default();
    format!("{} node-local, {} rack-local, {} remote", l.node_local, l.rack_local, l.remote)
}

/// A full human-readable status (`quern status`): the job, its phases with bars, what it
/// reads and writes, times, locality, counters aligned, and the failed attempts of `tasks`
/// (the tasks call's answer; empty if it was not available).
pub fn status_text(s: &pb::JobStatus, tasks: &[pb::TaskInfo], now: u64) -> String {
    let mut out = String::new();
    let mut line = |label: &str, value: &str| {
        let _ = writeln!(out, "{label:<10}{value}");
    };
    line("job", &clean(&s.id));
    line("name", &clean(&s.job));
    line("state", state_name(s.state));
    if s.running_stages.len() > 1 {
        // Independent stages of a DAG pipeline running side by side.
        let stages: Vec<String> = s.running_stages.iter().map(u32::to_string).collect();
        let jobs: Vec<Cow<'_, str>> = s.running_stage_jobs.iter().map(|j| clean(j)).collect();
        line("stages", &format!("{} of {} running ({})", stages.join(","), s.stages, jobs.join(", ")));
    } else if s.stages > 0 {
        line("stage", &format!("{}/{} ({})", s.stage, s.stages, clean(&s.stage_job)));
    }
    for (label, p) in [("maps", s.maps), ("reduces", s.reduces)] {
        let p = p.unwrap_or_default();
        let running = if p.running > 0 { format!("  ({} running)", p.running) } else { String::new() };
        line(label, &format!("{} {:>7}/{}{running}", bar(p.done, p.total, 20), p.done, p.total));
    }
    if s.generate_rows > 0 {
        line("generates", &format!("{} records", s.generate_rows));
    } else {
        let inputs: Vec<Cow<'_, str>> = s.inputs.iter().map(|i| clean(i)).collect();
        line("inputs", &format!("{} ({})", inputs.join(","), clean(&s.input_format)));
    }
    line("writes", &clean(&s.output_format));
    line("output", &clean(&s.output));
    if s.submitted_ms > 0 {
        line("submitted", &ago(now.saturating_sub(s.submitted_ms)));
        line("elapsed", &duration(job_elapsed(s, now)));
    }
    line("locality", &locality(s));
    if let Some(e) = &s.error {
        line("error", &clean(e));
    }
    if !s.counters.is_empty() {
        out.push_str("counters\n");
        let w = s.counters.keys().map(|k| clean(k).chars().count()).max().unwrap_or(0);
        let values: Vec<String> = s
            .counters
            .values()
            .map(|v| format!("{}{}", if *v < 0 { "-" } else { "" }, HumanCount(v.unsigned_abs())))
            .collect();
        let vw = values.iter().map(String::len).max().unwrap_or(0);
        for (k, v) in s.counters.keys().zip(values) {
            let _ = writeln!(out, "  {:<w$}  {v:>vw$}", clean(k));
        }
    }
    let failures: Vec<String> = tasks.iter().flat_map(task_failures).collect();
    if !failures.is_empty() {
        out.push_str("failures\n");
        for f in failures.iter().take(MAX_FAILURES) {
            let _ = writeln!(out, "  {f}");
        }
        if failures.len() > MAX_FAILURES {
            let _ = writeln!(out, "  ... and {} more (quern tasks)", failures.len() - MAX_FAILURES);
        }
    }
    out
}

/// Failed attempts `status` lists before pointing at `quern tasks` for the rest.
const MAX_FAILURES: usize = 20;

/// `map 3`, `reduce 0`, or `stage 2 map 3` in a pipeline.
fn task_name(t: &pb::TaskInfo) -> String {
    let kind = if t.kind == pb::TaskKind::Map as i32 { "map" } else { "reduce" };
    if t.stage > 0 { format!("stage {} {kind} {}", t.stage, t.index) } else { format!("{kind} {}", t.index) }
}

/// One line per failed attempt of `t` (the task's own error when it lists no attempts).
fn task_failures(t: &pb::TaskInfo) -> Vec<String> {
    let failed = |state: &str| state == "failed";
    if t.attempt_list.is_empty() {
        if !failed(&t.state) && t.error.is_none() {
            return vec![];
        }
        return vec![format!("{}: {}", task_name(t), clean(t.error.as_deref().unwrap_or("failed")))];
    }
    t.attempt_list
        .iter()
        .filter(|a| failed(&a.state) || (a.error.is_some() && a.state != "succeeded"))
        .map(|a| {
            let e = a.error.as_deref().unwrap_or("failed");
            format!("{} attempt {} on {}: {}", task_name(t), a.attempt, clean(&a.worker), clean(e))
        })
        .collect()
}

/// A table in the style of `kubectl get`: a header, no borders, columns two spaces apart,
/// numbers right-aligned, each row on one line. The last column gives way: it is cut (with
/// `…`) so that the table fits `width` columns.
fn table(header: &[&str], right: &[usize], rows: Vec<Vec<String>>, width: u16) -> String {
    let mut t = Table::new();
    t.load_style(comfy_table::presets::NOTHING);
    t.set_content_arrangement(ContentArrangement::Dynamic).set_width(width);
    t.set_header(header.iter().map(Cell::new).collect::<Vec<_>>());
    for r in rows {
        let mut row = comfy_table::Row::from(r);
        row.max_height(1);
        t.add_row(row);
    }
    let last = header.len().saturating_sub(1);
    for (i, c) in t.column_iter_mut().enumerate() {
        c.set_padding((0, 2));
        if i < last {
            c.set_constraint(ColumnConstraint::ContentWidth);
        }
        if right.contains(&i) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
    let mut s = t.trim_fmt();
    s.push('\n');
    s
}

/// The width tables may take on stdout: the terminal's, or [`PIPE_WIDTH`].
pub fn out_width() -> u16 {
    if std::io::IsTerminal::is_terminal(&std::io::stdout())
        && let Some((_, cols)) = console::Term::stdout().size_checked()
    {
        return cols.max(40);
    }
    PIPE_WIDTH
}

/// `quern list`: one row per job.
pub fn list_table(jobs: &[pb::JobStatus], now: u64, width: u16) -> String {
    let rows = jobs
        .iter()
        .map(|s| {
            vec![
                clean(&s.id).into_owned(),
                clean(&s.job).into_owned(),
                state_name(s.state).to_string(),
                frac(s.maps),
                frac(s.reduces),
                if s.submitted_ms > 0 { ago(now.saturating_sub(s.submitted_ms)) } else { "-".into() },
                if s.submitted_ms > 0 { duration(job_elapsed(s, now)) } else { "-".into() },
            ]
        })
        .collect();
    table(&["ID", "JOB", "STATE", "MAPS", "REDUCES", "SUBMITTED", "ELAPSED"], &[3, 4, 6], rows, width)
}

/// `quern workers`: one row per worker.
pub fn workers_table(workers: &[pb::WorkerInfo], width: u16) -> String {
    let rows = workers
        .iter()
        .map(|w| {
            vec![
                clean(&w.id).into_owned(),
                clean(&w.host).into_owned(),
                clean(&w.rack).into_owned(),
                w.slots.to_string(),
                w.running.to_string(),
                w.completed.to_string(),
                ago(w.last_heartbeat_ms_ago),
            ]
        })
        .collect();
    table(&["ID", "HOST", "RACK", "SLOTS", "RUNNING", "COMPLETED", "HEARTBEAT"], &[3, 4, 5], rows, width)
}

/// `quern tasks`: one row per attempt; a task that lists no attempts (a coordinator that
/// does not keep them, or a task not started) gets one row of its own.
pub fn tasks_table(tasks: &[pb::TaskInfo], now: u64, width: u16) -> String {
    let mut rows = Vec::new();
    for t in tasks {
        let name = task_name(t);
        if t.attempt_list.is_empty() {
            // `attempts` is the last attempt's number (a pipeline's later stages number theirs
            // apart, from 10,001 on); how many there were is what `tries` says.
            let attempt = match tries(t) {
                0 => "-".to_string(),
                1 => t.attempts.to_string(),
                n => format!("{}-{}", t.attempts.saturating_sub(n - 1), t.attempts),
            };
            let workers: Vec<Cow<'_, str>> = t.workers.iter().map(|w| clean(w)).collect();
            rows.push(vec![
                name,
                attempt,
                if workers.is_empty() { "-".into() } else { workers.join(",") },
                clean(&t.state).into_owned(),
                or_dash(&t.locality),
                "-".into(),
                clean(t.error.as_deref().unwrap_or("")).into_owned(),
            ]);
            continue;
        }
        for a in &t.attempt_list {
            let took = a.finished_ms.unwrap_or(now).saturating_sub(a.started_ms);
            // The task's locality is where its winning attempt ran.
            let loc = if a.state == "succeeded" { or_dash(&t.locality) } else { "-".into() };
            let attempt = if a.backup { format!("{} backup", a.attempt) } else { a.attempt.to_string() };
            rows.push(vec![
                name.clone(),
                attempt,
                clean(&a.worker).into_owned(),
                clean(&a.state).into_owned(),
                loc,
                if a.started_ms > 0 { duration(took) } else { "-".into() },
                clean(a.error.as_deref().unwrap_or("")).into_owned(),
            ]);
        }
    }
    table(&["TASK", "ATTEMPT", "WORKER", "STATE", "LOCALITY", "DURATION", "ERROR"], &[5], rows, width)
}

fn or_dash(s: &str) -> String {
    if s.is_empty() { "-".into() } else { clean(s).into_owned() }
}

/// How many attempts task `t` was given: its attempt list, else the workers they went to
/// (one per attempt), else its last attempt's number, which counts them only in a plain job
/// or a pipeline's first stage.
fn tries(t: &pb::TaskInfo) -> u32 {
    if !t.attempt_list.is_empty() {
        t.attempt_list.len() as u32
    } else if !t.workers.is_empty() {
        t.workers.len() as u32
    } else if t.stage <= 1 {
        t.attempts
    } else {
        0
    }
}

/// Attempts beyond one per task (retries and backups): what went again.
pub fn retries(tasks: &[pb::TaskInfo]) -> u64 {
    tasks.iter().map(|t| u64::from(tries(t).saturating_sub(1))).sum()
}

/// What `submit --wait` and `run` print once the job has ended: state and time, records and
/// bytes in and out, shuffle, map locality, and the retries (`None`: the tasks call did not
/// answer).
pub fn summary(s: &pb::JobStatus, retried: Option<u64>, now: u64) -> String {
    let c = |name: &str| s.counters.get(name).copied().unwrap_or(0).max(0).unsigned_abs();
    let mut out =
        format!("{} ({}) {} in {}\n", clean(&s.id), clean(&s.job), state_name(s.state), duration(job_elapsed(s, now)));
    let mut line = |label: &str, value: String| {
        let _ = writeln!(out, "  {label:<9} {value}");
    };
    if s.generate_rows > 0 {
        line("generated", format!("{} records", HumanCount(s.generate_rows)));
    } else {
        line(
            "input",
            format!("{} records, {}", HumanCount(c(names::MAP_INPUT_RECORDS)), HumanBytes(c(names::MAP_INPUT_BYTES))),
        );
    }
    // A map-only job writes what its maps emit.
    let written = if s.reduces.unwrap_or_default().total == 0 && s.stages == 0 {
        c(names::MAP_OUTPUT_RECORDS)
    } else {
        c(names::REDUCE_OUTPUT_RECORDS)
    };
    line("output", format!("{} records, {}", HumanCount(written), HumanBytes(c(names::OUTPUT_BYTES))));
    if s.counters.contains_key(names::REDUCE_SHUFFLE_BYTES) || s.counters.contains_key(names::MAP_OUTPUT_BYTES) {
        line("shuffle", HumanBytes(c(names::REDUCE_SHUFFLE_BYTES).max(c(names::MAP_OUTPUT_BYTES))).to_string());
    }
    line("locality", locality(s));
    if let Some(n) = retried {
        let backups = c(names::BACKUP_ATTEMPTS);
        let of = if backups > 0 { format!(" ({backups} backup)") } else { String::new() };
        // The coordinator lists the tasks of a pipeline's last stage(s) only.
        let last = if s.stages > 0 { " in the last stage" } else { "" };
        line("retries", format!("{n}{of}{last}"));
    }
    if s.stages > 0 {
        line("stages", format!("{}: the counts above are summed over them", s.stages));
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

    const NOW: u64 = 1_800_000_000_000;

    fn job(id: &str, name: &str, state: pb::JobState) -> pb::JobStatus {
        pb::JobStatus {
            id: id.into(),
            job: name.into(),
            state: state as i32,
            maps: Some(pb::Progress { total: 120, done: 40, running: 8 }),
            reduces: Some(pb::Progress { total: 8, done: 0, running: 0 }),
            submitted_ms: NOW - 75_000,
            ..Default::default()
        }
    }

    fn task(kind: pb::TaskKind, index: u32, attempts: Vec<pb::AttemptInfo>) -> pb::TaskInfo {
        pb::TaskInfo {
            kind: kind as i32,
            index,
            state: "succeeded".into(),
            attempts: attempts.len() as u32,
            attempt_list: attempts,
            locality: "node_local".into(),
            ..Default::default()
        }
    }

    fn attempt(n: u32, state: &str, error: Option<&str>) -> pb::AttemptInfo {
        pb::AttemptInfo {
            attempt: n,
            worker: format!("w-{n}"),
            state: state.into(),
            started_ms: NOW - 10_000,
            finished_ms: Some(NOW - 7_500),
            backup: false,
            error: error.map(String::from),
        }
    }

    #[test]
    fn a_pipeline_shows_its_running_stage_or_the_branches_running_side_by_side() {
        let mut s = pb::JobStatus { stage: 2, stages: 3, stage_job: "topn".into(), ..Default::default() };
        s.running_stages = vec![2];
        s.running_stage_jobs = vec!["topn".into()];
        assert!(status_text(&s, &[], NOW).contains("stage     2/3 (topn)\n"));
        assert_eq!(stage_label(&s).as_deref(), Some("2/3 topn"));
        s.running_stages = vec![1, 2];
        s.running_stage_jobs = vec!["wordcount".into(), "indexer".into()];
        let text = status_text(&s, &[], NOW);
        assert!(text.contains("stages    1,2 of 3 running (wordcount, indexer)\n"), "{text}");
        assert!(!status_text(&pb::JobStatus::default(), &[], NOW).contains("stage"));
        assert_eq!(stage_label(&pb::JobStatus::default()), None);
    }

    #[test]
    fn times_read_short() {
        assert_eq!(duration(0), "0ms");
        assert_eq!(duration(850), "850ms");
        assert_eq!(duration(12_345), "12.3s");
        assert_eq!(duration(245_000), "4m05s");
        assert_eq!(duration(2 * 3_600_000 + 3 * 60_000 + 59_000), "2h03m");
        assert_eq!(duration(3 * 86_400_000 + 4 * 3_600_000), "3d04h");
        assert_eq!(duration(u64::MAX).chars().last(), Some('h'));
        assert_eq!(ago(400), "just now");
        assert_eq!(ago(42_900), "42s ago");
        assert_eq!(ago(190_000), "3m10s ago");
    }

    #[test]
    fn control_characters_and_reordering_marks_are_shown_not_obeyed() {
        assert!(matches!(clean("plain wörds"), Cow::Borrowed("plain wörds")));
        assert_eq!(clean("a\x1b[2Jb"), "a\\u{1b}[2Jb");
        assert_eq!(clean("line\nnext\r"), "line\\nnext\\r");
        assert_eq!(clean("\u{9b}31m"), "\\u{9b}31m");
        assert_eq!(clean("abc\u{202e}fed"), "abc\\u{202e}fed");
        // Every table and text cleans what it shows.
        let evil = "x\x1b]0;pwned\x07";
        let mut s = job("job_1_0001", evil, pb::JobState::Failed);
        s.error = Some(evil.into());
        s.inputs = vec![evil.into()];
        let w = pb::WorkerInfo { id: evil.into(), host: evil.into(), rack: evil.into(), ..Default::default() };
        let mut t = task(pb::TaskKind::Map, 0, vec![attempt(1, "failed", Some(evil))]);
        t.attempt_list[0].worker = evil.into();
        let texts = [
            status_text(&s, std::slice::from_ref(&t), NOW),
            list_table(std::slice::from_ref(&s), NOW, 200),
            workers_table(&[w], 200),
            tasks_table(&[t], NOW, 200),
            summary(&s, Some(0), NOW),
        ];
        for text in texts {
            assert!(!text.chars().any(|c| c.is_control() && c != '\n'), "{text:?}");
            assert!(text.contains("x\\u{1b}]0;pwned\\u{7}"), "{text}");
        }
    }

    #[test]
    fn the_job_list_is_a_table_with_a_header_and_a_row_per_job() {
        let mut done = job("job_1_0002", "topwords", pb::JobState::Succeeded);
        done.finished_ms = Some(done.submitted_ms + 12_300);
        let jobs = [job("job_1_0001", "wordcount", pb::JobState::Running), done];
        let text = list_table(&jobs, NOW, 200);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        let cols: Vec<&str> = lines[0].split_whitespace().collect();
        assert_eq!(cols, ["ID", "JOB", "STATE", "MAPS", "REDUCES", "SUBMITTED", "ELAPSED"]);
        let row: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(row, ["job_1_0001", "wordcount", "running", "40/120", "0/8", "1m15s", "ago", "1m15s"]);
        assert!(lines[2].starts_with("job_1_0002  topwords   succeeded") && lines[2].ends_with("12.3s"), "{text}");
        // Columns line up: every row starts its state where the header does.
        let at = lines[0].find("STATE").unwrap();
        assert!(lines[1..].iter().all(|l| l[at..].starts_with(|c: char| c.is_alphabetic())), "{text}");
        assert_eq!(list_table(&[], NOW, 200).lines().count(), 1);
    }

    #[test]
    fn workers_are_a_table_with_heartbeat_ages() {
        let w = pb::WorkerInfo {
            id: "w-1".into(),
            host: "node7".into(),
            rack: "r2".into(),
            slots: 4,
            running: 3,
            completed: 17,
            last_heartbeat_ms_ago: 1_500,
            ..Default::default()
        };
        let text = workers_table(&[w], 200);
        let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split_whitespace().collect()).collect();
        assert_eq!(rows[0], ["ID", "HOST", "RACK", "SLOTS", "RUNNING", "COMPLETED", "HEARTBEAT"]);
        assert_eq!(rows[1], ["w-1", "node7", "r2", "4", "3", "17", "1s", "ago"]);
    }

    #[test]
    fn tasks_show_a_row_per_attempt_or_per_task_and_errors_cut_to_the_width() {
        let long = format!("input not found: {}", "x".repeat(300));
        let retried =
            task(pb::TaskKind::Map, 3, vec![attempt(1, "failed", Some(&long)), attempt(2, "succeeded", None)]);
        let mut fallback = task(pb::TaskKind::Reduce, 0, vec![]);
        (fallback.attempts, fallback.workers, fallback.locality) = (2, vec!["w-1".into(), "w-2".into()], String::new());
        let mut staged = task(pb::TaskKind::Map, 1, vec![]);
        (staged.stage, staged.attempts) = (2, 1);
        let text = tasks_table(&[retried, fallback, staged], NOW, 100);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert!(lines.iter().all(|l| l.chars().count() <= 100), "{text}");
        assert!(lines[0].starts_with("TASK") && lines[0].ends_with("ERROR"), "{text}");
        assert!(lines[1].starts_with("map 3") && lines[1].contains("failed") && lines[1].contains("2.5s"), "{text}");
        assert!(lines[1].contains("input not found: xxx") && lines[1].ends_with('…'), "{text}");
        assert!(lines[2].contains("succeeded") && lines[2].contains("node_local"), "{text}");
        let fb: Vec<&str> = lines[3].split_whitespace().collect();
        assert_eq!(fb, ["reduce", "0", "1-2", "w-1,w-2", "succeeded", "-", "-"]);
        assert!(lines[4].starts_with("stage 2 map 1"), "{text}");
        // A later stage of a pipeline numbers its attempts apart: two of them, not 10,003.
        let mut later = task(pb::TaskKind::Reduce, 0, vec![]);
        (later.stage, later.attempts, later.workers) = (2, 10_003, vec!["w-1".into(), "w-2".into()]);
        let row = tasks_table(std::slice::from_ref(&later), NOW, 100);
        assert!(row.lines().nth(1).unwrap().starts_with("stage 2 reduce 0  10002-10003  w-1,w-2"), "{row}");
        assert_eq!(retries(&[later]), 1);
        // Off a terminal the width is fixed and wide: the error shows further but not whole.
        let wide = tasks_table(&[task(pb::TaskKind::Map, 0, vec![attempt(1, "failed", Some(&long))])], NOW, PIPE_WIDTH);
        assert!(wide.lines().all(|l| l.chars().count() <= usize::from(PIPE_WIDTH)), "{wide}");
        assert!(wide.contains(&"x".repeat(60)), "{wide}");
    }

    #[test]
    fn status_shows_bars_locality_aligned_counters_and_failures() {
        let mut s = job("job_1_0001", "wordcount", pb::JobState::Running);
        s.counters = [("MAP_INPUT_RECORDS".to_string(), 1_234_567), ("STORE_GET".to_string(), 12)].into();
        s.locality = Some(pb::Locality { node_local: 30, rack_local: 6, remote: 4 });
        let failed =
            task(pb::TaskKind::Map, 3, vec![attempt(1, "failed", Some("disk on fire")), attempt(2, "running", None)]);
        let mut old = task(pb::TaskKind::Reduce, 1, vec![]);
        (old.state, old.error) = ("failed".into(), Some("no space".into()));
        let text = status_text(&s, &[failed, old], NOW);
        assert!(text.contains(&format!("maps      {} {:>7}/120  (8 running)\n", bar(40, 120, 20), 40)), "{text}");
        assert!(text.contains("[######--------------]"), "{text}");
        assert!(text.contains("locality  30 node-local, 6 rack-local, 4 remote\n"), "{text}");
        assert!(text.contains("elapsed   1m15s\n"), "{text}");
        assert!(text.contains("  MAP_INPUT_RECORDS  1,234,567\n  STORE_GET                 12\n"), "{text}");
        assert!(text.contains("failures\n  map 3 attempt 1 on w-1: disk on fire\n  reduce 1: no space\n"), "{text}");
        assert!(!status_text(&s, &[], NOW).contains("failures"));
    }

    #[test]
    fn the_summary_counts_records_bytes_locality_and_retries() {
        let mut s = job("job_1_0001", "wordcount", pb::JobState::Succeeded);
        s.finished_ms = Some(s.submitted_ms + 4_200);
        s.counters = [
            ("MAP_INPUT_RECORDS", 5_000),
            ("MAP_INPUT_BYTES", 2_048),
            ("REDUCE_OUTPUT_RECORDS", 321),
            ("OUTPUT_BYTES", 1_500_000),
            ("REDUCE_SHUFFLE_BYTES", 4_096),
            ("MAP_OUTPUT_RECORDS", 9_999),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        s.locality = Some(pb::Locality { node_local: 100, rack_local: 0, remote: 20 });
        let text = summary(&s, Some(3), NOW);
        assert_eq!(
            text,
            "job_1_0001 (wordcount) succeeded in 4.2s\n  input     5,000 records, 2.00 KiB\n  output    321 records, 1.43 MiB\n  \
             shuffle   4.00 KiB\n  locality  100 node-local, 0 rack-local, 20 remote\n  retries   3\n"
        );
        // A map-only job writes what its maps emit; unknown retries are left out.
        s.reduces = Some(pb::Progress::default());
        let text = summary(&s, None, NOW);
        assert!(text.contains("output    9,999 records") && !text.contains("retries"), "{text}");
        let t = [task(pb::TaskKind::Map, 0, vec![attempt(1, "failed", None), attempt(2, "succeeded", None)])];
        assert_eq!(retries(&t), 1);
        assert_eq!(retries(&[task(pb::TaskKind::Map, 0, vec![])]), 0);
        // A pipeline's counts are its stages' together, and its retries the last stage's.
        (s.stages, s.stage) = (2, 2);
        let text = summary(&s, Some(0), NOW);
        assert!(text.contains("retries   0 in the last stage\n  stages    2: the counts"), "{text}");
    }
}
