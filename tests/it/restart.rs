//! Coordinator restarts: `kill -9` mid-map and mid-reduce, restart on the same store, and the
//! job finishes with exact output without re-running committed tasks; waiting clients and
//! workers reconnect by themselves.

use std::time::Duration;

use quern_tests::data::{read_output, word_count, write_corpus};
use quern_tests::{Mode, TestCluster, spawn_binary, wait_bounded};

/// A short lease: a coordinator restarted after kill -9 waits 1.5 leases before it may act.
const FAST: [&str; 6] = ["--heartbeat-timeout", "2s", "--heartbeat-interval", "200ms", "--lease", "1s"];

/// Runs a job, kills the coordinator once `ready(status)` holds, restarts it, and checks the
/// outcome seen by a `submit --wait` client started before the crash.
fn crash_and_resume(seed: u64, ready: impl Fn(&serde_json::Value) -> bool) {
    let mut c = TestCluster::start_with(Mode::Processes, 0, &FAST).unwrap();
    for _ in 0..2 {
        c.start_worker_slow(Duration::from_millis(200)).unwrap();
    }
    let input = c.path("input");
    write_corpus(&input, 4, 24_000, seed).unwrap();
    let (i, o) = (format!("{}/", input.display()), c.path("out").display().to_string());
    let waiter = spawn_binary(
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
            "--reducers",
            "4",
            "--split-size",
            "8KiB",
            "--wait",
            "--json",
        ],
    );
    // Bounded wait for the moment to crash.
    let mut id = None;
    let reached = quern_tests::eventually(Duration::from_secs(30), || {
        let job = c.first_job();
        id = job["id"].as_str().map(str::to_string);
        !job.is_null() && ready(&job)
    });
    assert!(reached, "the job never reached the crash point");
    let id = id.expect("the job never reached the crash point");
    let before = c.succeeded_tasks(&id).unwrap();
    assert!(!before.is_empty());

    c.kill_coordinator();
    let took = c.restart_coordinator().unwrap();
    let restarted = std::time::Instant::now();

    // Bounded wait until the new coordinator answers (after its lease wait and replay).
    let answered = quern_tests::eventually(Duration::from_secs(10), || c.answers());
    assert!(answered, "{}", c.coordinator_log(1));
    eprintln!("coordinator restart: listening after {took:?}, answering after {:?}", took + restarted.elapsed());
    assert!(c.coordinator_log(1).contains("recovered from the journal"), "{}", c.coordinator_log(1));

    let out = wait_bounded(waiter, Duration::from_secs(120));
    assert!(out.status.success(), "waiter: {}", String::from_utf8_lossy(&out.stderr));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["state"], "succeeded");
    assert_eq!(read_output(&c.path("out"), 4, true), word_count(&input));
    // Committed before the crash means never run again.
    let after = c.succeeded_tasks(&id).unwrap();
    for (task, attempts) in &before {
        assert_eq!(after.get(task), Some(attempts), "task {task:?} ran again after the restart");
    }
    // Counters count every task once, restart or not.
    let lines: u64 = status["counters"]["MAP_INPUT_BYTES"].as_u64().unwrap();
    let bytes: u64 = (0..4).map(|f| std::fs::metadata(input.join(format!("doc-{f:02}.txt"))).unwrap().len()).sum();
    assert_eq!(lines, bytes);
}

#[test]
fn coordinator_killed_mid_map_resumes_the_job() {
    crash_and_resume(31, |j| {
        let (done, total) = (j["maps"]["done"].as_u64().unwrap(), j["maps"]["total"].as_u64().unwrap());
        done >= 3 && done + 3 < total
    });
}

#[test]
fn coordinator_killed_mid_reduce_resumes_the_job() {
    crash_and_resume(32, |j| {
        let done = j["reduces"]["done"].as_u64().unwrap();
        (1..4).contains(&done)
    });
}

#[test]
fn queued_and_killed_jobs_survive_a_restart() {
    let mut c = TestCluster::start_with(Mode::Processes, 0, &FAST).unwrap();
    let input = c.path("input");
    write_corpus(&input, 2, 5_000, 33).unwrap();
    let i = format!("{}/", input.display());
    let (o1, o2) = (c.path("out1").display().to_string(), c.path("out2").display().to_string());
    let queued = c.submit(&["--job", "wordcount", "--input", &i, "--output", &o1, "--reducers", "2"]).unwrap();
    let killed = c.submit(&["--job", "wordcount", "--input", &i, "--output", &o2]).unwrap();
    assert!(c.cli("kill", &[&killed]).status.success());

    c.kill_coordinator();
    c.restart_coordinator().unwrap();
    let answered = quern_tests::eventually(Duration::from_secs(10), || c.answers());
    assert!(answered);
    assert_eq!(c.status(&queued).unwrap()["state"], "queued");
    assert_eq!(c.status(&killed).unwrap()["state"], "killed");
    // A job submitted after the restart gets a fresh id.
    let o3 = c.path("out3").display().to_string();
    let third = c.submit(&["--job", "wordcount", "--input", &i, "--output", &o3]).unwrap();
    assert!(third != queued && third != killed);

    c.start_worker().unwrap();
    let s = c.wait_job(&queued, Duration::from_secs(60), |_| {}).unwrap();
    assert_eq!(s["state"], "succeeded");
    assert_eq!(read_output(&c.path("out1"), 2, true), word_count(&input));
}

#[test]
fn a_standby_takes_over_when_the_primary_dies_and_everyone_follows() {
    let mut c = TestCluster::start_with(Mode::Processes, 0, &FAST).unwrap();
    let primary = c.url().to_string();
    let (standby, standby_log) = c.start_standby().unwrap();
    // While the primary holds the lease, the standby refuses every call.
    let refused = quern_tests::quern(&["list", "--coordinator", &standby]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("standby"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    let both = format!("{primary},{standby}");
    c.set_worker_coordinator(&both);
    for _ in 0..2 {
        c.start_worker_slow(Duration::from_millis(200)).unwrap();
    }
    let input = c.path("input");
    write_corpus(&input, 4, 24_000, 34).unwrap();
    let (i, o) = (format!("{}/", input.display()), c.path("out").display().to_string());
    let waiter = spawn_binary(
        "quern",
        &[
            "submit",
            "--coordinator",
            &both,
            "--job",
            "wordcount",
            "--input",
            &i,
            "--output",
            &o,
            "--reducers",
            "3",
            "--split-size",
            "8KiB",
            "--wait",
            "--json",
        ],
    );
    let started =
        quern_tests::eventually(Duration::from_secs(30), || c.first_job()["maps"]["done"].as_u64().unwrap_or(0) >= 2);
    assert!(started);
    c.kill_coordinator();

    let out = wait_bounded(waiter, Duration::from_secs(120));
    assert!(
        out.status.success(),
        "waiter: {}\nstandby: {}",
        String::from_utf8_lossy(&out.stderr),
        c.coordinator_log(standby_log)
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["state"], "succeeded");
    assert_eq!(read_output(&c.path("out"), 3, true), word_count(&input));
    let log = c.coordinator_log(standby_log);
    assert!(log.contains("waiting as a standby") && log.contains("took the lead"), "{log}");
}

#[test]
fn a_partitioned_primary_steps_down_when_it_comes_back() {
    let mut c = TestCluster::start_with(Mode::Processes, 0, &FAST).unwrap();
    let (standby, standby_log) = c.start_standby().unwrap();
    // Cut the primary off (as a partition would: it can neither renew nor act).
    c.signal_coordinator(libc::SIGSTOP);
    let took_over = quern_tests::eventually(Duration::from_secs(20), || {
        quern_tests::quern(&["list", "--coordinator", &standby]).status.success()
    });
    assert!(took_over, "{}", c.coordinator_log(standby_log));
    // Back from the partition, the old primary finds its lease gone and stops; it never
    // answers as a leader again.
    c.signal_coordinator(libc::SIGCONT);
    let stepped_down = quern_tests::eventually(Duration::from_secs(20), || c.coordinator_exited());
    assert!(stepped_down, "{}", c.coordinator_log(0));
    assert!(c.coordinator_log(0).contains("another coordinator"), "{}", c.coordinator_log(0));
    assert!(quern_tests::quern(&["list", "--coordinator", &standby]).status.success());
}
