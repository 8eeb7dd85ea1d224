//! Faults in the object store, on real multi-process clusters: `quern-test` processes whose
//! stores corrupt, fail or delay chosen requests ([`quern_tests::faulty::FaultyStore`]).
//! Every job must still produce exactly what the sequential computation does.

use std::time::Duration;

use quern_tests::data::{read_output, word_count, write_corpus};
use quern_tests::faults::Faults;
use quern_tests::faulty::{Op, Rule};
use quern_tests::{Mode, TestCluster};

/// A word count of `files` objects over `reducers` parts; its final status.
fn word_count_job(c: &mut TestCluster, files: usize, reducers: &str, seed: u64) -> (String, serde_json::Value) {
    let input = c.path("input");
    write_corpus(&input, files, 12_000, seed).unwrap();
    let (i, o) = (format!("{}/", input.display()), c.path("out").display().to_string());
    let id = c.submit(&["--job", "wordcount", "--input", &i, "--output", &o, "--reducers", reducers]).unwrap();
    let status = c.wait_job(&id, Duration::from_secs(180), |_| {}).unwrap();
    assert_eq!(status["state"], "succeeded", "{status}");
    assert_eq!(read_output(&c.path("out"), reducers.parse().unwrap(), true), word_count(&input));
    (id, status)
}

fn worker_logs(c: &TestCluster) -> String {
    (0..c.workers_started()).map(|i| c.worker_log(i)).collect::<Vec<_>>().join("\n")
}

#[test]
fn a_shuffle_segment_corrupted_in_transit_is_caught_by_its_checksum_and_read_again() {
    let mut c = TestCluster::start_with(Mode::Processes, 0, &["--speculation", "off"]).unwrap();
    // Each worker's first read of a map output comes back with a byte flipped.
    let corrupt = Faults::store(vec![Rule::corrupt().containing(".arrows").times(1)]);
    for _ in 0..2 {
        c.start_worker_with_faults(&[], &corrupt).unwrap();
    }
    let (id, _) = word_count_job(&mut c, 4, "2", 61);
    let logs = worker_logs(&c);
    assert!(logs.contains("fault injected") && logs.contains("corrupt"), "the fault happened: {logs}");
    assert!(logs.contains("checksum mismatch"), "the reduce attempt saw it: {logs}");
    // The reducer blamed the map output it read: that map ran again, and the job went on.
    let tasks = c.tasks(&id).unwrap();
    assert!(tasks.iter().any(|t| t["kind"] == "map" && t["attempts"].as_u64() > Some(1)), "{tasks:?}");
}

#[test]
fn transient_store_errors_on_map_output_writes_and_reads_are_retried_within_the_attempt() {
    let mut c = TestCluster::start_with(Mode::Processes, 0, &["--speculation", "off"]).unwrap();
    // The first two writes and the first two reads of map outputs fail in each worker.
    let flaky = Faults::store(vec![
        Rule::error().on(Op::Put).containing("/map-").times(2),
        Rule::error().on(Op::Get).containing(".arrows").times(2),
    ]);
    for _ in 0..2 {
        c.start_worker_with_faults(&[], &flaky).unwrap();
    }
    let (id, status) = word_count_job(&mut c, 4, "2", 62);
    let logs = worker_logs(&c);
    assert!(logs.contains("injected fault: put"), "a write failed: {logs}");
    assert!(logs.contains("injected fault: get"), "a read failed: {logs}");
    // Whichever workers ran the maps and the reduces, each used up its two of both.
    let retries = status["counters"]["STORE_RETRIES"].as_i64().unwrap_or(0);
    assert!(retries >= 4, "STORE_RETRIES {retries}: {status}");
    let tasks = c.tasks(&id).unwrap();
    assert!(tasks.iter().all(|t| t["attempts"] == 1), "no attempt failed for it: {tasks:?}");
}

#[test]
fn slow_store_requests_on_workers_and_the_coordinator_change_nothing() {
    let coordinator = Faults::store(vec![Rule::delay(Duration::from_millis(100)).on(Op::List).times(20)]);
    let mut c = TestCluster::start_with_faults(Mode::Processes, 0, &[], coordinator).unwrap();
    let slow =
        Faults::store(vec![Rule::delay(Duration::from_millis(200)).on(Op::Get).on(Op::Put).containing(".arrows")]);
    for _ in 0..2 {
        c.start_worker_with_faults(&[], &slow).unwrap();
    }
    word_count_job(&mut c, 3, "3", 63);
    assert!(worker_logs(&c).contains("fault injected"), "the workers were slowed");
    assert!(c.coordinator_log(0).contains("fault injected"), "the coordinator's listing was slowed");
}
