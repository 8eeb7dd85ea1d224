//! Fair-share preemption on a real cluster: a low-priority job holding every slot gives
//! slots back to a job that arrives later, and both outputs stay exact. Which attempt is
//! taken back, and when, is asserted by the coordinator's unit tests
//! (`core_preempt_tests.rs`); here: it happens across real processes, is counted, and
//! never costs correctness.

use std::path::Path;
use std::time::Duration;

use quern_tests::data::{read_output, word_count, write_corpus};
use quern_tests::{Mode, TestCluster, eventually};

/// Every task sleeps this long first (interrupted by a cancel): much longer than the
/// preemption wait, so the second job cannot get a slot by a task ending.
const SLOW: Duration = Duration::from_secs(10);

fn running_tasks(c: &TestCluster, job: &str) -> usize {
    c.tasks(job).map(|ts| ts.iter().filter(|t| t["state"] == "running").count()).unwrap_or(0)
}

#[test]
fn a_starved_job_gets_slots_back_and_both_outputs_are_exact() {
    let args = [
        "--preemption",
        "on",
        "--preemption-wait",
        "1s",
        "--heartbeat-timeout",
        "3s",
        "--heartbeat-interval",
        "250ms",
        // Backups of the slow tasks would only blur what is measured.
        "--speculation",
        "off",
    ];
    let mut c = TestCluster::start_with(Mode::Processes, 0, &args).unwrap();
    for _ in 0..2 {
        c.start_worker_slow(SLOW).unwrap();
    }
    let (big, small) = (c.path("big"), c.path("small"));
    write_corpus(&big, 4, 6_000, 51).unwrap();
    write_corpus(&small, 1, 3_000, 52).unwrap();
    let (bi, bo) = (format!("{}/", big.display()), c.path("big-out").display().to_string());
    let (si, so) = (format!("{}/", small.display()), c.path("small-out").display().to_string());
    let first = c.submit(&["--job", "wordcount", "--input", &bi, "--output", &bo, "--reducers", "1"]).unwrap();
    // Bounded: the first job holds both slots (one map each) before the second arrives.
    assert!(eventually(Duration::from_secs(60), || running_tasks(&c, &first) == 2), "{:?}", c.tasks(&first));
    let second = c.submit(&["--job", "wordcount", "--input", &si, "--output", &so, "--reducers", "1"]).unwrap();
    let s = c.wait_job(&second, Duration::from_secs(300), |_| {}).unwrap();
    let f = c.wait_job(&first, Duration::from_secs(300), |_| {}).unwrap();
    assert_eq!(s["state"], "succeeded", "{s}");
    assert_eq!(f["state"], "succeeded", "{f}");
    let preempted = |st: &serde_json::Value| st["counters"]["PREEMPTED_ATTEMPTS"].as_u64().unwrap_or(0);
    // Both jobs weigh the same, so each's share is one of the two slots: the second took
    // one back from the first, and gave none.
    assert!(preempted(&f) >= 1, "the first job gave a slot back: {f}");
    assert_eq!(preempted(&s), 0, "{s}");
    // Preempted attempts never committed anything: the outputs are exact.
    assert_eq!(read_output(Path::new(&bo), 1, true), word_count(&big));
    assert_eq!(read_output(Path::new(&so), 1, true), word_count(&small));
}
