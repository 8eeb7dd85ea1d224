//! The CLI against a live cluster: status, list and kill, and every kind of bad input getting
//! one clear line and a non-zero exit, with nothing written to the output.

use std::process::Output;
use std::time::Duration;

use quern_tests::data::write_corpus;
use quern_tests::{Mode, TestCluster, ok_stdout, quern, spawn_binary, wait_bounded};

pub(crate) fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Fails with exit code 1 or 2 and exactly one stderr line containing `needle`.
fn assert_fails(o: &Output, needle: &str) {
    assert!(!o.status.success(), "expected failure, got success: {}", String::from_utf8_lossy(&o.stdout));
    let code = o.status.code().unwrap();
    assert!(code == 1 || code == 2, "exit code {code}");
    let err = stderr(o);
    assert_eq!(err.trim_end().lines().count(), 1, "one line on stderr, got: {err}");
    assert!(err.contains(needle), "stderr {err:?} should mention {needle:?}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn bad_input_gets_one_clear_line_and_writes_nothing() {
    let c = TestCluster::start(Mode::Processes, 1).unwrap();
    let input = c.path("input");
    write_corpus(&input, 1, 2_000, 9).unwrap();
    let empty = c.path("empty");
    std::fs::create_dir_all(&empty).unwrap();
    std::fs::write(empty.join("a.txt"), b"").unwrap();
    let existing = c.path("existing");
    std::fs::create_dir_all(&existing).unwrap();
    std::fs::write(existing.join("keep.txt"), b"precious\n").unwrap();
    let out = c.path("out").display().to_string();
    let i = format!("{}/", input.display());
    let sub = |args: &[&str]| c.cli("submit", args);

    assert_fails(
        &sub(&["--job", "wordcount", "--input", &c.path("nope/").display().to_string(), "--output", &out]),
        "input not found",
    );
    assert_fails(
        &sub(&["--job", "wordcount", "--input", &format!("{}/", empty.display()), "--output", &out]),
        "input is empty",
    );
    assert_fails(
        &sub(&["--job", "wordcount", "--input", &i, "--output", &existing.display().to_string()]),
        "already exists",
    );
    assert_eq!(std::fs::read(existing.join("keep.txt")).unwrap(), b"precious\n");
    assert_fails(&sub(&["--job", "nosuchjob", "--input", &i, "--output", &out]), "unknown job");
    assert_fails(&sub(&["--job", "wordcount", "--input", "ftp://host/x", "--output", &out]), "unsupported scheme");
    assert_fails(&sub(&["--job", "wordcount", "--input", "file://relative/x", "--output", &out]), "absolute path");
    assert_fails(&sub(&["--job", "wordcount", "--input", &i, "--output", &out, "--param", "novalue"]), "KEY=VALUE");
    assert_fails(&sub(&["--job", "indexer", "--input", &i, "--output", &out, "--param", "x=1"]), "takes no parameters");
    assert_fails(
        &sub(&["--job", "wordcount", "--input", &i, "--output", &out, "--param", "combiner=maybe"]),
        "combiner",
    );
    assert_fails(
        &sub(&["--job", "grep", "--input", &i, "--output", &out, "--param", "pattern=(("]),
        "regular expression",
    );
    assert_fails(&sub(&["--job", "grep", "--input", &i, "--output", &out]), "is required");
    assert_fails(&sub(&["--job", "wordcount", "--output", &out]), "--input is required");
    assert_fails(&sub(&["--job", "wordcount", "--input", &i, "--output", &out, "--reducers", "100001"]), "--reducers");
    // Formats, generators and jobs that fix their reducers.
    assert_fails(&sub(&["--job", "wordcount", "--input", &i, "--output", &out, "--input-format", "csv"]), "csv");
    assert_fails(&sub(&["--job", "wordcount", "--input", &i, "--output", &out, "--output-format", "whole"]), "whole");
    assert_fails(
        &sub(&["--job", "wordcount", "--input", &i, "--output", &out, "--input-format", "fixed:0"]),
        "fixed:0",
    );
    assert_fails(&sub(&["--job", "teragen", "--param", "rows=10", "--input", &i, "--output", &out]), "no --input");
    assert_fails(&sub(&["--job", "teragen", "--output", &out]), "rows");
    // Coordinator flags the S3 commit takes: one line each, and no coordinator starts.
    let store = format!("{}/", c.path("store2").display());
    for (flag, value) in
        [("--upload-part-size", "1KiB"), ("--upload-part-size", "6GiB"), ("--store-conditional-writes", "maybe")]
    {
        let o = quern_tests::quern(&["coordinator", "--listen", "127.0.0.1:0", "--store", &store, flag, value]);
        assert_fails(&o, flag);
    }
    assert_fails(&sub(&["--job", "teragen", "--param", "rows=0", "--output", &out]), "nothing to generate");
    assert_fails(&sub(&["--job", "teragen", "--param", "rows=100000000000000000", "--output", &out]), "at most");
    assert_fails(&sub(&["--job", "teragen", "--param", "rows=10", "--output", &out, "--reducers", "2"]), "map-only");
    assert_fails(&sub(&["--job", "wordcount", "--input", &i, "--output", &out, "--maps", "3"]), "--maps");
    assert_fails(&sub(&["--job", "teravalidate", "--input", &i, "--output", &out, "--reducers", "3"]), "1 reducer");
    // 2,000 lines of text are not a whole number of 100-byte records... unless they happen
    // to be: use a file of 150 bytes.
    let odd = c.path("odd.bin");
    std::fs::write(&odd, [7u8; 150]).unwrap();
    assert_fails(
        &sub(&["--job", "terasort", "--input", &odd.display().to_string(), "--output", &out]),
        "not a whole number of 100-byte records",
    );
    assert_fails(
        &sub(&["--job", "wordcount", "--input", &i, "--output", &out, "--split-size", "lots"]),
        "--split-size",
    );
    assert_fails(&sub(&["--job", "wordcount", "--input", &i, "--output", &out, "--bogus"]), "--bogus");
    assert_fails(&c.cli("status", &["job_1_0001"]), "no job");
    assert_fails(&c.cli("status", &["../../etc"]), "not a job id");
    assert_fails(&c.cli("kill", &["job_1_0001"]), "no job");
    assert!(!c.path("out").exists(), "nothing was written to the output");

    // Unreachable or malformed coordinator addresses.
    let sub_to =
        |addr: &str| quern(&["submit", "--coordinator", addr, "--job", "wordcount", "--input", &i, "--output", &out]);
    assert_fails(&sub_to("http://127.0.0.1:1"), "cannot reach coordinator");
    assert_fails(&sub_to("127.0.0.1:1"), "http://HOST:PORT");
    assert_fails(&quern(&["status", "--coordinator", "http://127.0.0.1:1", "job_1_0001"]), "cannot reach coordinator");
    // The embedded runner checks the same things.
    assert_fails(
        &quern(&["run", "--job", "wordcount", "--input", &c.path("nope").display().to_string(), "--output", &out]),
        "input not found",
    );
    assert_fails(&quern(&["coordinator", "--listen", "not-an-addr", "--store", "file:///tmp/x"]), "--listen");
    assert_fails(&quern(&["coordinator", "--listen", "127.0.0.1:0", "--store", "ftp://x/y"]), "unsupported scheme");
    assert!(!c.path("out").exists());
}

#[test]
fn queued_job_shows_in_status_and_list_and_can_be_killed() {
    // No workers: the job stays queued until killed.
    let c = TestCluster::start(Mode::Processes, 0).unwrap();
    let input = c.path("input");
    write_corpus(&input, 2, 5_000, 10).unwrap();
    let (i, o) = (format!("{}/", input.display()), c.path("out").display().to_string());
    let id = ok_stdout(&c.cli("submit", &["--job", "wordcount", "--input", &i, "--output", &o])).trim().to_string();
    assert!(id.starts_with("job_"), "submit prints the id alone: {id:?}");
    let s = c.status(&id).unwrap();
    assert_eq!(s["state"], "queued");
    assert_eq!(s["maps"]["done"], 0);
    assert!(s["error"].is_null());
    // A second job may not write to the same output while the first runs.
    let dup = c.cli("submit", &["--job", "wordcount", "--input", &i, "--output", &o]);
    assert!(!dup.status.success() && stderr(&dup).contains("being written by job"), "{}", stderr(&dup));

    let list = ok_stdout(&c.cli("list", &[]));
    assert!(list.contains(&id) && list.contains("queued"), "{list}");
    ok_stdout(&c.cli("kill", &[&id]));
    let s = c.status(&id).unwrap();
    assert_eq!(s["state"], "killed");
    let again = c.cli("kill", &[&id]);
    assert!(!again.status.success() && stderr(&again).contains("already ended"));
    // Waiting on a killed job exits non-zero with the reason.
    let o2 = c.path("out2").display().to_string();
    let id2 = ok_stdout(&c.cli("submit", &["--job", "wordcount", "--input", &i, "--output", &o2])).trim().to_string();
    ok_stdout(&c.cli("kill", &[&id2]));
    let text = ok_stdout(&c.cli("status", &[&id2]));
    assert!(text.contains("killed"), "{text}");
    assert!(!c.path("out").exists() && !c.path("out2").exists());
}

#[test]
fn a_job_whose_tasks_keep_failing_fails_with_the_reason_and_leaves_no_output() {
    // Submit (and wait) while no worker runs, then delete the input: every map attempt then
    // fails to read it, and after max_attempts the job fails.
    let mut c = TestCluster::start(Mode::Processes, 0).unwrap();
    let input = c.path("input");
    write_corpus(&input, 1, 3_000, 11).unwrap();
    let (i, o) = (format!("{}/", input.display()), c.path("out").display().to_string());
    let waiter = spawn_binary(
        "quern",
        &["submit", "--coordinator", c.url(), "--job", "wordcount", "--input", &i, "--output", &o, "--wait"],
    );
    // Bounded wait for the submission to be accepted (it lists the input first).
    let submitted = quern_tests::eventually(Duration::from_secs(10), || !c.first_job().is_null());
    assert!(submitted, "job was not submitted");
    std::fs::remove_dir_all(&input).unwrap();
    c.start_worker().unwrap();
    let out = wait_bounded(waiter, Duration::from_secs(120));
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    let last = err.lines().last().unwrap_or("");
    assert!(last.contains("failed") && last.contains("map task 0") && last.contains("not found"), "{err}");
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let s = c.status(&id).unwrap();
    assert_eq!(s["state"], "failed");
    assert!(!c.path("out").exists(), "a failed job leaves no output");
}

#[test]
fn the_coordinator_serves_status_pages_over_http() {
    let c = TestCluster::start_with(Mode::Processes, 1, &["--http", "127.0.0.1:0"]).unwrap();
    let log = c.coordinator_log(0);
    assert!(log.contains("INFO") && !log.contains('\x1b'), "a log that is not a terminal has no colour codes: {log:?}");
    let base =
        log.lines().find_map(|l| l.strip_prefix("status pages on http://")).expect("status pages address").trim();
    let input = c.path("input");
    write_corpus(&input, 1, 2_000, 12).unwrap();
    let (i, o) = (format!("{}/", input.display()), c.path("out").display().to_string());
    ok_stdout(&c.cli("submit", &["--job", "wordcount", "--input", &i, "--output", &o, "--wait"]));
    let get = |path: &str| -> String {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(base.trim_end_matches('/')).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        text
    };
    let jobs = get("/api/jobs");
    assert!(jobs.starts_with("HTTP/1.1 200"), "{jobs}");
    let body = &jobs[jobs.find("\r\n\r\n").unwrap() + 4..];
    let list: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(list[0]["state"], "succeeded");
    assert_eq!(list[0]["job"], "wordcount");
    let page = get("/");
    assert!(page.contains("<h1>Quern</h1>") && page.contains("succeeded"), "{page}");
    assert!(get("/api/jobs/nope").starts_with("HTTP/1.1 404"));
}
