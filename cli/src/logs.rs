//! `quern logs JOB TASK`: each attempt of one task (where it ran, how it ended, its error)
//! and the last lines the failed ones logged, as their workers sent them back with their
//! reports. The coordinator keeps them in its job history, so they outlive a restart.

use anyhow::{Result, bail};
use quern_api::pb;

use crate::args::LogsArgs;
use crate::client_cmds::{connect, rpc_error};

/// Reads `map-N` / `reduce-N` (or `m-N`, `r-N`): the task's kind and index.
pub fn parse_task(s: &str) -> Result<(pb::TaskKind, u32)> {
    let bad = || anyhow::anyhow!("bad task {s:?}: expected map-N or reduce-N (as `quern tasks` lists them)");
    let (kind, index) = s.split_once(['-', '_']).ok_or_else(bad)?;
    let kind = match kind {
        "map" | "m" => pb::TaskKind::Map,
        "reduce" | "r" => pb::TaskKind::Reduce,
        _ => return Err(bad()),
    };
    Ok((kind, index.parse().map_err(|_| bad())?))
}

/// `quern logs`.
pub async fn logs(a: LogsArgs) -> Result<()> {
    let (kind, index) = parse_task(&a.task)?;
    let mut client = connect(&a.conn).await?;
    let req = pb::TaskLogsRequest { job_id: a.job_id.clone(), kind: kind as i32, index, stage: a.stage };
    let attempts = client.task_logs(req).await.map_err(rpc_error)?.into_inner().attempts;
    if a.json {
        let v: Vec<_> = attempts
            .iter()
            .map(|l| {
                let attempt = l.attempt.as_ref().map(quern_api::json::attempt_json).unwrap_or_default();
                serde_json::json!({ "attempt": attempt, "lines": l.lines })
            })
            .collect();
        println!("{}", serde_json::Value::Array(v));
        return Ok(());
    }
    if attempts.is_empty() {
        bail!("task {} of job {} has not run yet", a.task, a.job_id);
    }
    print!("{}", text(&attempts));
    Ok(())
}

/// Strings from workers and users may hold escape sequences: shown, not obeyed.
fn clean(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// The plain form: a header per attempt, then its lines indented.
pub fn text(attempts: &[pb::AttemptLog]) -> String {
    let mut out = String::new();
    for l in attempts {
        let a = l.attempt.clone().unwrap_or_default();
        let worker = if a.worker.is_empty() { String::new() } else { format!(" on {}", clean(&a.worker)) };
        let took = match a.finished_ms {
            Some(end) if a.started_ms > 0 => format!(" after {:.1}s", end.saturating_sub(a.started_ms) as f64 / 1000.0),
            _ => String::new(),
        };
        out.push_str(&format!("attempt {}{worker}: {}{took}\n", a.attempt, clean(&a.state)));
        if let Some(e) = &a.error {
            out.push_str(&format!("  error: {}\n", clean(e)));
        }
        if l.lines.is_empty() {
            if a.state == "failed" {
                out.push_str("  (no log lines came back)\n");
            }
        } else {
            out.push_str("  last log lines:\n");
            for line in &l.lines {
                out.push_str(&format!("    {}\n", clean(line)));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_are_named_as_tasks_lists_them() {
        assert_eq!(parse_task("map-3").unwrap(), (pb::TaskKind::Map, 3));
        assert_eq!(parse_task("r_0").unwrap(), (pb::TaskKind::Reduce, 0));
        for bad in ["map", "map-x", "sort-1", "-1", "map--1", ""] {
            assert!(parse_task(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_attempts_error_and_lines_are_shown_and_escapes_are_not_obeyed() {
        let a = pb::AttemptLog {
            attempt: Some(pb::AttemptInfo {
                attempt: 2,
                worker: "w1".into(),
                state: "failed".into(),
                started_ms: 1000,
                finished_ms: Some(3500),
                error: Some("user code panicked: \u{1b}[31mboom".into()),
                ..Default::default()
            }),
            lines: vec!["INFO reading split 3".into()],
        };
        let t = text(&[a]);
        assert!(t.starts_with("attempt 2 on w1: failed after 2.5s\n"), "{t}");
        assert!(t.contains("  error: user code panicked:  [31mboom\n"), "{t}");
        assert!(t.contains("    INFO reading split 3\n"), "{t}");
    }
}
