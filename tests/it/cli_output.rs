//! What the CLI shows people: `submit --wait` off a terminal prints a bounded number of
//! progress lines and a summary whose counts match the input; `status`, `list`, `workers`
//! and `tasks` print tables that agree with their `--json` forms; retried and failed attempts
//! show with their messages.

use std::path::Path;
use std::time::Instant;

use quern_tests::data::{word_count, write_corpus};
use quern_tests::{Mode, TestCluster, ok_stdout};
use serde_json::Value;

use crate::cli::stderr;

/// Lines of a table split into their cells (cells hold no spaces, but for ages: `4s ago`).
fn rows(text: &str) -> Vec<Vec<String>> {
    text.lines().map(|l| l.split_whitespace().map(String::from).collect()).collect()
}

/// The number in `12,345 records`.
fn count(s: &str) -> u64 {
    s.replace(',', "").parse().unwrap_or_else(|_| panic!("not a count: {s:?}"))
}

/// Lines of the visible input files, counted independently of Quern (every line ends with a
/// newline in the generated corpus), and their bytes.
fn lines_and_bytes(dir: &Path) -> (u64, u64) {
    let mut totals = (0, 0);
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with('_') || name.starts_with('.') {
            continue;
        }
        let data = std::fs::read(&p).unwrap();
        totals.0 += data.iter().filter(|&&b| b == b'\n').count() as u64;
        totals.1 += data.len() as u64;
    }
    totals
}

fn json(c: &TestCluster, cmd: &str, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    serde_json::from_str(&ok_stdout(&c.cli(cmd, &all))).unwrap()
}

#[test]
fn a_job_of_many_tasks_shows_few_progress_lines_a_true_summary_and_agreeing_tables() {
    let c = TestCluster::start(Mode::Processes, 2).unwrap();
    let input = c.path("input");
    write_corpus(&input, 3, 40_000, 21).unwrap();
    let (lines, bytes) = lines_and_bytes(&input);
    let words = word_count(&input);
    let (i, o) = (format!("{}/", input.display()), c.path("out").display().to_string());

    let started = Instant::now();
    let args = ["--job", "wordcount", "--input", &i, "--output", &o, "--reducers", "3", "--split-size", "1KiB"];
    let mut wait = args.to_vec();
    wait.push("--wait");
    let out = c.cli("submit", &wait);
    let took = started.elapsed();
    let id = ok_stdout(&out).trim().to_string();
    assert!(id.starts_with("job_"), "stdout holds the job id alone: {id:?}");
    let err = stderr(&out);

    let status = json(&c, "status", &[&id]);
    assert_eq!(status["state"], "succeeded", "{status}");
    let maps = status["maps"]["total"].as_u64().unwrap();
    assert!(maps >= 100, "the job should have many map tasks, has {maps}");
    assert_eq!(status["maps"]["done"], maps);

    // Progress: plain lines, a handful, not one per task: the first, milestones (at most
    // sixteen) and one per 5 s of the run.
    let progress: Vec<&str> =
        err.lines().filter(|l| l.starts_with(&format!("{id} ")) && l.contains(" maps ")).collect();
    assert!(!progress.is_empty(), "{err}");
    assert!(!err.contains('\x1b') && !err.contains('\r'), "no terminal codes off a terminal: {err:?}");
    let bound = 1 + 16 + took.as_secs() / 5;
    assert!((progress.len() as u64) <= bound, "{} lines for {maps} maps in {took:?}: {err}", progress.len());
    assert!((progress.len() as u64) < maps / 2, "{err}");

    // The summary, with the counts of the input and output as computed here.
    let summary: Vec<&str> =
        err.lines().skip_while(|l| !l.starts_with(&format!("{id} (wordcount) succeeded in "))).collect();
    assert!(summary.len() >= 5, "a summary at the end: {err}");
    let field = |name: &str| -> Vec<String> {
        let line = summary.iter().find(|l| l.trim_start().starts_with(name)).unwrap_or_else(|| panic!("{name}: {err}"));
        line.split_whitespace().skip(1).map(|w| w.trim_end_matches(',').to_string()).collect()
    };
    let input_f = field("input");
    assert_eq!(count(&input_f[0]), lines, "{err}");
    assert_eq!(status["counters"]["MAP_INPUT_BYTES"], bytes);
    assert_eq!(count(&field("output")[0]), words.len() as u64, "{err}");
    let loc = field("locality");
    let loc_sum: u64 = [&loc[0], &loc[2], &loc[4]].iter().map(|n| count(n)).sum();
    assert_eq!(loc_sum, maps, "every map task is counted once: {err}");

    // Tasks: one row per attempt (or per task while the coordinator lists none), agreeing
    // with the JSON; the summary's retries are the attempts beyond one per task.
    let tasks = json(&c, "tasks", &[&id]);
    let tasks = tasks.as_array().unwrap();
    assert_eq!(tasks.len() as u64, maps + 3);
    let retried: u64 = tasks.iter().map(|t| t["attempts"].as_u64().unwrap().max(1) - 1).sum();
    assert_eq!(count(&field("retries")[0]), retried, "{err}");
    let table = rows(&ok_stdout(&c.cli("tasks", &[&id])));
    assert_eq!(table[0], ["TASK", "ATTEMPT", "WORKER", "STATE", "LOCALITY", "DURATION", "ERROR"]);
    let expected: usize = tasks.iter().map(|t| t["attempt_list"].as_array().unwrap().len().max(1)).sum();
    assert_eq!(table.len() - 1, expected);
    for t in tasks {
        let (kind, index) = (t["kind"].as_str().unwrap(), t["index"].as_u64().unwrap().to_string());
        let mine: Vec<&Vec<String>> = table.iter().filter(|r| r[0] == kind && r[1] == index).collect();
        assert!(!mine.is_empty(), "no row for {kind} {index}");
        assert!(mine.iter().any(|r| r.contains(&"succeeded".to_string())), "{kind} {index}: {mine:?}");
    }

    // Status: the summary with full bars, aligned counters and the locality.
    let text = ok_stdout(&c.cli("status", &[&id]));
    assert!(text.contains(&format!("job       {id}\n")) && text.contains("state     succeeded\n"), "{text}");
    assert!(text.contains(&format!("maps      [####################] {maps:>7}/{maps}\n")), "{text}");
    assert!(text.contains("reduces   [####################]       3/3\n"), "{text}");
    let records = status["counters"]["MAP_INPUT_RECORDS"].as_u64().unwrap();
    assert_eq!(records, lines);
    let counter = text.lines().find(|l| l.trim_start().starts_with("MAP_INPUT_RECORDS ")).unwrap();
    assert_eq!(count(counter.split_whitespace().nth(1).unwrap()), records, "{text}");
    let l = &status["locality"];
    let want =
        format!("locality  {} node-local, {} rack-local, {} remote\n", l["node_local"], l["rack_local"], l["remote"]);
    assert!(text.contains(&want), "{text}");
    assert!(!text.contains("failures") || retried > 0, "{text}");

    // List: a header and a row for the job, as the JSON says.
    let table = rows(&ok_stdout(&c.cli("list", &[])));
    assert_eq!(table[0], ["ID", "JOB", "STATE", "MAPS", "REDUCES", "SUBMITTED", "ELAPSED"]);
    let row = table.iter().find(|r| r[0] == id).unwrap();
    assert_eq!(row[1..5], ["wordcount", "succeeded", &format!("{maps}/{maps}"), "3/3"]);
    let list = json(&c, "list", &[]);
    let listed = list.as_array().unwrap().iter().find(|j| j["id"] == id.as_str()).unwrap();
    assert_eq!((&listed["state"], &listed["maps"]["done"]), (&Value::from("succeeded"), &Value::from(maps)));

    // Workers: both, with the counts the JSON gives.
    let table = rows(&ok_stdout(&c.cli("workers", &[])));
    assert_eq!(table[0], ["ID", "HOST", "RACK", "SLOTS", "RUNNING", "COMPLETED", "HEARTBEAT"]);
    let workers = json(&c, "workers", &[]);
    let workers = workers.as_array().unwrap();
    assert_eq!((table.len() - 1, workers.len()), (2, 2));
    let mut completed = 0;
    for w in workers {
        let row = table.iter().find(|r| w["id"] == r[0].as_str()).unwrap_or_else(|| panic!("{w} in {table:?}"));
        assert_eq!(row[1], w["host"].as_str().unwrap());
        assert_eq!(row[3..6], [w["slots"].to_string(), w["running"].to_string(), w["completed"].to_string()]);
        assert!(["ago", "now"].contains(&row.last().unwrap().as_str()), "a heartbeat age: {row:?}");
        completed += w["completed"].as_u64().unwrap();
    }
    assert!(completed >= maps + 3, "every task completed somewhere: {completed}");

    // The output is right too (the summary's counts are about a correct job).
    let mut got = std::collections::BTreeMap::new();
    for e in std::fs::read_dir(c.path("out")).unwrap() {
        for line in std::fs::read_to_string(e.unwrap().path()).unwrap().lines() {
            let (k, v) = line.split_once('\t').unwrap();
            got.insert(k.to_string(), v.to_string());
        }
    }
    assert_eq!(got, words);
}

#[test]
fn retried_and_failed_attempts_show_in_the_summary_status_and_tasks() {
    let c = TestCluster::start_with(Mode::Processes, 2, &["--speculation", "off"]).unwrap();
    let input = c.path("input");
    write_corpus(&input, 2, 4_000, 22).unwrap();
    let i = format!("{}/", input.display());

    // One map attempt fails on purpose and is run again: one retry, and its message.
    let marker = c.path("failed-once").display().to_string();
    let o1 = c.path("out1").display().to_string();
    let once = format!("fail_once={marker}");
    let out = c.cli("submit", &["--job", "crashtest", "--param", &once, "--input", &i, "--output", &o1, "--wait"]);
    let id = ok_stdout(&out).trim().to_string();
    let err = stderr(&out);
    let retries = err.lines().find(|l| l.trim_start().starts_with("retries")).unwrap_or_else(|| panic!("{err}"));
    let tasks = json(&c, "tasks", &[&id]);
    let given: u64 = tasks.as_array().unwrap().iter().map(|t| t["workers"].as_array().unwrap().len() as u64).sum();
    let retried = given - tasks.as_array().unwrap().len() as u64;
    assert!(retried >= 1, "{tasks}");
    assert_eq!(retries.split_whitespace().nth(1), Some(retried.to_string().as_str()), "{err}");
    let table = ok_stdout(&c.cli("tasks", &[&id]));
    let row = table.lines().find(|l| l.contains("forced failure (fail_once)")).unwrap_or_else(|| panic!("{table}"));
    assert!(row.starts_with("map "), "{table}");
    let text = ok_stdout(&c.cli("status", &[&id]));
    assert!(text.contains("state     succeeded\n") && text.contains("\nfailures\n"), "{text}");
    assert!(text.contains(": crashtest: forced failure (fail_once)\n"), "{text}");

    // A map that always panics fails the job: the summary says so, and the reason is the
    // last line; status lists the failure with its message.
    let o2 = c.path("out2").display().to_string();
    let args = ["--job", "crashtest", "--param", "panic_word=the", "--input", &i, "--output", &o2, "--wait"];
    let out = c.cli("submit", &args);
    assert_eq!(out.status.code(), Some(1));
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let err = stderr(&out);
    assert!(err.contains(&format!("{id} (crashtest) failed in ")), "{err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(last.starts_with(&format!("error: job {id} failed: ")) && last.contains("bad record"), "{err}");
    let text = ok_stdout(&c.cli("status", &[&id]));
    assert!(text.contains("state     failed\n") && text.contains("\nfailures\n"), "{text}");
    let failures = text.split("\nfailures\n").nth(1).unwrap();
    assert!(failures.lines().any(|l| l.starts_with("  map ") && l.contains("bad record")), "{text}");
    let table = rows(&ok_stdout(&c.cli("list", &[])));
    let states: Vec<(&str, &str)> = table[1..].iter().map(|r| (r[0].as_str(), r[2].as_str())).collect();
    assert!(states.contains(&(id.as_str(), "failed")), "{table:?}");
}
