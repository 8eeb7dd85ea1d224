//! Job history: an ended job's tasks and its failed attempts' log lines (`quern logs`) outlive
//! a coordinator restart, and the history keeps at most `--history-jobs` ended jobs: older
//! ones are forgotten, archive and all, and stay forgotten after another restart.

use std::collections::BTreeMap;
use std::time::Duration;

use quern_tests::data::{read_output, word_count, write_corpus};
use quern_tests::{Mode, TestCluster, eventually, ok_stdout};

/// `quern list --json`, by job id.
fn listed(c: &TestCluster) -> BTreeMap<String, serde_json::Value> {
    let jobs: Vec<serde_json::Value> = serde_json::from_str(&ok_stdout(&c.cli("list", &["--json"]))).unwrap();
    jobs.into_iter().map(|j| (j["id"].as_str().unwrap().to_string(), j)).collect()
}

/// Stops the coordinator cleanly and starts it again with `args`.
fn restart(c: &mut TestCluster, args: &[&str], n: usize) {
    c.signal_coordinator(libc::SIGTERM);
    assert!(eventually(Duration::from_secs(60), || c.coordinator_exited()), "the coordinator did not stop");
    c.restart_coordinator_with(args).unwrap();
    assert!(eventually(Duration::from_secs(60), || c.answers()), "{}", c.coordinator_log(n));
}

/// `quern logs JOB TASK` (plain, then JSON): what it printed.
fn logs(c: &TestCluster, job: &str, task: &str) -> (String, serde_json::Value) {
    let plain = ok_stdout(&c.cli("logs", &[job, task]));
    let json = serde_json::from_str(&ok_stdout(&c.cli("logs", &[job, task, "--json"]))).unwrap();
    (plain, json)
}

#[test]
fn a_failed_attempts_log_outlives_a_restart_and_old_jobs_leave_the_history() {
    let args = ["--history-jobs", "2"];
    let mut c = TestCluster::start_with(Mode::Processes, 2, &args).unwrap();
    let input = c.path("input");
    write_corpus(&input, 3, 2_000, 11).unwrap();
    let expected = word_count(&input);
    let i = format!("{}/", input.display());
    let marker = c.path("failed-once").display().to_string();
    let run = |c: &TestCluster, job: &str, out: &str, params: &[&str]| -> String {
        let o = c.path(out).display().to_string();
        let mut a = vec!["--job", job, "--input", &i, "--output", &o, "--reducers", "2", "--wait", "--json"];
        for p in params {
            a.extend_from_slice(&["--param", p]);
        }
        let status: serde_json::Value = serde_json::from_str(&ok_stdout(&c.cli("submit", &a))).unwrap();
        assert_eq!(status["state"], "succeeded", "{status}");
        assert_eq!(read_output(&c.path(out), 2, true), expected, "{job}");
        status["id"].as_str().unwrap().to_string()
    };

    // crashtest is word count whose first map attempt fails once, logging a line first.
    let first = run(&c, "crashtest", "out-1", &[&format!("fail_once={marker}")]);
    let tasks = c.tasks(&first).unwrap();
    let retried: Vec<_> = tasks.iter().filter(|t| t["attempts"] == 2).collect();
    assert_eq!(retried.len(), 1, "exactly one task ran twice: {tasks:?}");
    let task = format!("map-{}", retried[0]["index"]);
    let check = |plain: &str, json: &serde_json::Value| {
        assert!(plain.contains("crashtest: failing this attempt on purpose"), "the user's own line: {plain}");
        assert!(plain.contains("crashtest: forced failure (fail_once)"), "and the error: {plain}");
        let with_lines: Vec<_> =
            json.as_array().unwrap().iter().filter(|a| !a["lines"].as_array().unwrap().is_empty()).collect();
        assert_eq!(with_lines.len(), 1, "one attempt failed and sent lines back: {json}");
    };
    let (plain, json) = logs(&c, &first, &task);
    check(&plain, &json);
    let archive = c.store_dir().join("history").join(format!("{first}.pb"));
    assert!(eventually(Duration::from_secs(30), || archive.exists()), "the ended job is archived");

    // A restarted coordinator answers from the archive.
    restart(&mut c, &args, 1);
    assert_eq!(listed(&c)[&first]["state"], "succeeded");
    let (plain, json) = logs(&c, &first, &task);
    check(&plain, &json);
    let again = c.tasks(&first).unwrap();
    assert_eq!(again, tasks, "the task list survived, attempts and all");
    let states: Vec<_> = again
        .iter()
        .find(|t| t["attempts"] == 2)
        .map(|t| t["attempt_list"].as_array().unwrap().iter().map(|a| a["state"].clone()).collect())
        .unwrap_or_default();
    assert_eq!(states, ["failed", "succeeded"], "{again:?}");
    let bad = c.cli("logs", &[&first, "sort-1"]);
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("bad task"), "{bad:?}");
    let missing = c.cli("logs", &[&first, "reduce-7"]);
    assert!(!missing.status.success(), "no such task: {missing:?}");

    // Two more jobs: the history keeps two, so the first is forgotten, archive and all.
    let second = run(&c, "wordcount", "out-2", &[]);
    let third = run(&c, "wordcount", "out-3", &[]);
    let gone = eventually(Duration::from_secs(60), || !listed(&c).contains_key(&first));
    assert!(gone, "the oldest job left the history: {:?}", listed(&c).keys());
    assert!(eventually(Duration::from_secs(30), || !archive.exists()), "its archive went with it");
    let now = listed(&c);
    assert!(now.contains_key(&second) && now.contains_key(&third), "{:?}", now.keys());
    assert!(!c.cli("logs", &[&first, &task]).status.success(), "a forgotten job has no logs");
    restart(&mut c, &args, 2);
    let after = listed(&c);
    assert!(!after.contains_key(&first), "still forgotten after a restart: {:?}", after.keys());
    assert_eq!(after[&third]["state"], "succeeded");
}
