//! Fail-stop: a coordinator that can no longer write its journal or lease stops with one
//! line and a non-zero exit, every stream it served ends, and `submit --wait` returns
//! non-zero within its reconnect budget instead of hanging. An unusable store at startup
//! is one line and a non-zero exit, never a coordinator that says it listens.

use std::time::Duration;

use quern_tests::data::write_corpus;
use quern_tests::{Mode, TestCluster, eventually, quern, spawn_binary, wait_bounded};

#[test]
fn an_unusable_store_at_startup_is_one_line_and_a_non_zero_exit() {
    for store in ["file:///dev/null/x/", "/dev/null/quern-store"] {
        let out = quern(&["coordinator", "--listen", "127.0.0.1:0", "--store", store]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{store}: {err}");
        assert!(!err.contains("listening"), "{store}: {err}");
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{store}: {err}");
        assert!(lines[0].contains("store"), "{store}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn a_store_made_unwritable_mid_job_stops_the_coordinator_and_the_waiting_client() {
    let mut c = TestCluster::start_with(Mode::Processes, 0, &["--lease", "1s"]).unwrap();
    c.start_worker_slow(Duration::from_millis(400)).unwrap();
    let input = c.path("input");
    write_corpus(&input, 8, 4_000, 3).unwrap();
    let out = c.path("out");
    let (i, o) = (format!("{}/", input.display()), out.display().to_string());
    let waiting = spawn_binary(
        "quern",
        &[
            "submit",
            "--coordinator",
            c.url(),
            "--job",
            "wordcount",
            "--input",
            &i,
            "--output",
            &o,
            "--split-size",
            "2KiB",
            "--wait",
        ],
    );
    assert!(eventually(Duration::from_secs(60), || c.first_job()["maps"]["done"].as_u64() >= Some(1)));

    // The store goes away under the coordinator: a plain file now stands where its root
    // was, so every write fails (as root, too, unlike a read-only mode).
    let store = c.store_dir();
    std::fs::rename(&store, c.path("store-gone")).unwrap();
    std::fs::write(&store, b"not a directory").unwrap();

    assert!(eventually(Duration::from_secs(60), || c.coordinator_exited()), "the coordinator stops by itself");
    let code = c.coordinator_exit_code();
    assert!(code.is_some_and(|c| c != 0), "non-zero exit, not a signal: {code:?}");
    let log = c.coordinator_log(0);
    let last = log.lines().rfind(|l| !l.trim().is_empty()).unwrap_or_default();
    assert!(last.starts_with("error:") && (last.contains("lease") || last.contains("journal")), "{log}");

    // The waiting client follows the leader for its budget, then fails with one line.
    let done = wait_bounded(waiting, Duration::from_secs(150));
    let err = String::from_utf8_lossy(&done.stderr);
    assert!(!done.status.success(), "{err}");
    let last = err.lines().rfind(|l| !l.trim().is_empty()).unwrap_or_default();
    assert!(last.contains("coordinator"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
