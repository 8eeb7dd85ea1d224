//! Fault tolerance on real multi-process clusters: killed, crashing, paused and slow workers,
//! corrupted intermediate data, and bad records. Every job's output is compared with a
//! sequential computation; every wait is bounded.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use quern_tests::data::{files_under, read_output, word_count, write_corpus};
use quern_tests::faults::Faults;
use quern_tests::{Mode, TestCluster, ok_stdout};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Faster failure detection than the 5 s default, with room for a loaded CI machine: a
/// healthy worker would have to miss ten heartbeats in a row to be declared lost.
const FAST: [&str; 4] = ["--heartbeat-timeout", "2s", "--heartbeat-interval", "200ms"];

fn args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = FAST.to_vec();
    v.extend_from_slice(extra);
    v
}

fn dir_arg(p: &Path) -> String {
    format!("{}/", p.display())
}

fn map_attempts(c: &TestCluster, id: &str) -> (u64, u64) {
    let tasks = c.tasks(id).unwrap();
    let maps: Vec<_> = tasks.iter().filter(|t| t["kind"] == "map").collect();
    (maps.len() as u64, maps.iter().map(|t| t["attempts"].as_u64().unwrap()).sum())
}

#[test]
fn chaos_wordcount_with_workers_killed_at_random_is_exact_and_reruns_no_finished_map() {
    let mut c = TestCluster::start_with(Mode::Processes, 0, &args(&["--speculation", "off"])).unwrap();
    let slow = Duration::from_millis(150);
    for _ in 0..3 {
        c.start_worker_slow(slow).unwrap();
    }
    let input = c.path("input");
    write_corpus(&input, 6, 24_000, 21).unwrap();
    let (i, o) = (dir_arg(&input), c.path("out").display().to_string());
    let id = c
        .submit(&["--job", "wordcount", "--input", &i, "--output", &o, "--reducers", "4", "--split-size", "6KiB"])
        .unwrap();

    // A seeded schedule: every few polls, kill -9 a random live worker and start another.
    let mut rng = StdRng::seed_from_u64(7);
    let mut next_kill = rng.random_range(4..12);
    let mut live: Vec<usize> = (0..3).collect();
    let mut kills = 0u64;
    let mut polls = 0;
    let status = c
        .wait_job(&id, Duration::from_secs(180), |c| {
            polls += 1;
            if polls == next_kill && kills < 6 {
                let victim = live.remove(rng.random_range(0..live.len()));
                c.kill_worker(victim);
                kills += 1;
                live.push(c.start_worker_slow(slow).unwrap());
                next_kill = polls + rng.random_range(6..16);
            }
        })
        .unwrap();
    assert_eq!(status["state"], "succeeded", "{status}");
    assert!(kills >= 2, "the schedule killed {kills} workers");
    assert_eq!(read_output(&c.path("out"), 4, true), word_count(&input));
    let (maps, attempts) = map_attempts(&c, &id);
    // Each kill loses at most the one attempt its worker was running: finished maps are in
    // the shared store and are never run again.
    assert!(attempts <= maps + kills, "{attempts} map attempts for {maps} maps and {kills} kills");
    eprintln!("chaos: {maps} maps, {attempts} map attempts, {kills} kills");
}

#[test]
fn crash_test_workers_that_exit_and_stall_at_random_still_give_exact_output() {
    // The MIT 6.824 crash test: map and reduce calls exit the worker process or stall, about
    // a third each; crashed workers are restarted in a loop.
    let mut c = TestCluster::start_with(Mode::Processes, 0, &args(&[])).unwrap();
    for _ in 0..3 {
        c.start_worker().unwrap();
    }
    let input = c.path("input");
    write_corpus(&input, 10, 3_000, 22).unwrap();
    let (i, o) = (dir_arg(&input), c.path("out").display().to_string());
    let id = c
        .submit(&[
            "--job",
            "crashtest",
            "--input",
            &i,
            "--output",
            &o,
            "--reducers",
            "3",
            "--param",
            "crash=0.33",
            "--param",
            "stall=0.33",
            "--param",
            "stall_ms=1000",
            "--param",
            "reduce_crash=0.03",
            "--param",
            "reduce_stall=0.03",
        ])
        .unwrap();
    let mut replaced = BTreeSet::new();
    let mut restarts = 0;
    let status = c
        .wait_job(&id, Duration::from_secs(240), |c| {
            for w in 0..c.workers_started() {
                if !replaced.contains(&w) && c.worker_exited(w) && restarts < 300 {
                    replaced.insert(w);
                    restarts += 1;
                    c.start_worker().unwrap();
                }
            }
        })
        .unwrap();
    assert_eq!(status["state"], "succeeded", "{status}");
    assert_eq!(read_output(&c.path("out"), 3, true), word_count(&input));
    eprintln!("crash test: {restarts} worker restarts");
}

#[test]
fn a_paused_worker_is_replaced_and_its_late_work_never_reaches_the_output() {
    let mut c = TestCluster::start_with(Mode::Processes, 0, &args(&["--speculation", "off"])).unwrap();
    let zombie = c.start_worker_slow(Duration::from_secs(3)).unwrap();
    let input = c.path("input");
    write_corpus(&input, 1, 5_000, 23).unwrap();
    let (i, o) = (dir_arg(&input), c.path("out").display().to_string());
    let id = c.submit(&["--job", "wordcount", "--input", &i, "--output", &o, "--reducers", "1"]).unwrap();
    // Bounded wait until the zombie-to-be holds the map.
    let held = quern_tests::eventually(Duration::from_secs(10), || c.workers_json()[0]["running"] == 1);
    assert!(held, "the first worker never got the map");
    c.signal_worker(zombie, libc::SIGSTOP);
    c.start_worker().unwrap();
    let status = c.wait_job(&id, Duration::from_secs(60), |_| {}).unwrap();
    assert_eq!(status["state"], "succeeded");
    let part = c.path("out").join("part-00000");
    let before = std::fs::read(&part).unwrap();
    let (_, attempts) = map_attempts(&c, &id);
    assert_eq!(attempts, 2, "the map ran again elsewhere");

    // Bring the zombie back: it finishes or abandons its stale attempt, re-registers under a
    // new identity, and nothing it does reaches the output or stays in the store.
    c.signal_worker(zombie, libc::SIGCONT);
    let mut reregistered = false;
    for _ in 0..400 {
        if c.worker_log(zombie).matches("registered").count() >= 2
            && files_under(&c.store_dir().join("jobs")).is_empty()
        {
            reregistered = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    assert!(reregistered, "zombie log:\n{}", c.worker_log(zombie));
    assert_eq!(std::fs::read(&part).unwrap(), before);
    assert_eq!(read_output(&c.path("out"), 1, true), word_count(&input));
    let workers: serde_json::Value = serde_json::from_str(&ok_stdout(&c.cli("workers", &["--json"]))).unwrap();
    assert_eq!(workers.as_array().unwrap().len(), 2, "the zombie is back as a new worker");
}

#[test]
fn a_straggler_gets_a_backup_attempt_that_wins() {
    let mut c = TestCluster::start_with(Mode::Processes, 0, &args(&["--speculation-min", "300ms"])).unwrap();
    c.start_worker_slow(Duration::from_secs(120)).unwrap();
    let input = c.path("input");
    write_corpus(&input, 6, 4_000, 24).unwrap();
    let (i, o) = (dir_arg(&input), c.path("out").display().to_string());
    let id = c.submit(&["--job", "wordcount", "--input", &i, "--output", &o, "--reducers", "2"]).unwrap();
    // The slow worker is alone at first, so it surely holds a map; then healthy ones come.
    let held = quern_tests::eventually(Duration::from_secs(10), || c.workers_json()[0]["running"] == 1);
    assert!(held, "the slow worker never got a task");
    c.start_worker().unwrap();
    c.start_worker().unwrap();
    let status = c.wait_job(&id, Duration::from_secs(60), |_| {}).unwrap();
    assert_eq!(status["state"], "succeeded");
    assert!(status["counters"]["BACKUP_ATTEMPTS_WON"].as_u64().unwrap_or(0) >= 1, "{status}");
    assert_eq!(read_output(&c.path("out"), 2, true), word_count(&input));
}

fn shuffle_objects(store: &Path) -> Vec<PathBuf> {
    files_under(store).into_iter().filter(|p| p.extension().is_some_and(|e| e == "arrows")).collect()
}

#[test]
fn a_corrupted_map_output_is_detected_and_its_map_runs_again() {
    let dir = tempfile::tempdir().unwrap();
    let gate = dir.path().join("hold-reduces");
    std::fs::write(&gate, b"").unwrap();
    let mut c = TestCluster::start_with_faults(
        Mode::Processes,
        2,
        &["--speculation", "off"],
        Faults::holding_reduces_while(&gate),
    )
    .unwrap();
    let input = c.path("input");
    write_corpus(&input, 4, 8_000, 25).unwrap();
    let (i, o) = (dir_arg(&input), c.path("out").display().to_string());
    let id = c.submit(&["--job", "wordcount", "--input", &i, "--output", &o, "--reducers", "2"]).unwrap();
    let maps_done = quern_tests::eventually(Duration::from_secs(20), || {
        let s = c.status(&id).unwrap();
        s["maps"]["done"] == s["maps"]["total"]
    });
    assert!(maps_done);
    // Flip bytes in the middle of the largest shuffle object, in the store itself.
    let mut objects = shuffle_objects(&c.store_dir());
    objects.sort_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0));
    let victim = objects.pop().expect("a shuffle object");
    let name = victim.file_name().unwrap().to_string_lossy().into_owned();
    let index: u64 = name.trim_start_matches("map-")[..5].parse().unwrap();
    let mut bytes = std::fs::read(&victim).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 8] {
        *b ^= 0x5a;
    }
    std::fs::write(&victim, bytes).unwrap();
    std::fs::remove_file(&gate).unwrap();

    let status = c.wait_job(&id, Duration::from_secs(60), |_| {}).unwrap();
    assert_eq!(status["state"], "succeeded", "{status}");
    assert_eq!(read_output(&c.path("out"), 2, true), word_count(&input));
    let tasks = c.tasks(&id).unwrap();
    let rerun = tasks.iter().find(|t| t["kind"] == "map" && t["index"] == index).unwrap();
    assert_eq!(rerun["attempts"], 2, "map {index} ran again: {rerun}");
}

/// Writes a corpus plus "poison" lines; returns (input dir, the same data without them, count).
fn poisoned_corpus(root: &Path) -> (PathBuf, PathBuf, u64) {
    let input = root.join("input");
    let clean = root.join("clean");
    write_corpus(&input, 3, 6_000, 26).unwrap();
    std::fs::create_dir_all(&clean).unwrap();
    let mut poisoned = 0;
    for f in 0..3 {
        let name = format!("doc-{f:02}.txt");
        let text = std::fs::read(input.join(&name)).unwrap();
        std::fs::write(clean.join(&name), &text).unwrap();
        let mut with = text.clone();
        for k in 0..=f {
            with.extend_from_slice(format!("poison apple {k}\n").as_bytes());
            poisoned += 1;
        }
        std::fs::write(input.join(&name), with).unwrap();
    }
    (input, clean, poisoned)
}

#[test]
fn panicking_user_code_fails_the_job_but_never_the_workers_and_skipping_mode_skips_the_bad_records() {
    let mut c = TestCluster::start_with(Mode::Processes, 2, &args(&[])).unwrap();
    let (input, clean, poisoned) = poisoned_corpus(&c.path("data"));
    let i = dir_arg(&input);
    let o1 = c.path("out1").display().to_string();
    let failed = c.cli(
        "submit",
        &["--job", "crashtest", "--param", "panic_word=poison", "--input", &i, "--output", &o1, "--wait"],
    );
    assert_eq!(failed.status.code(), Some(1));
    let err = String::from_utf8_lossy(&failed.stderr).into_owned();
    assert!(err.contains("panicked") && err.contains("bad record"), "{err}");
    assert!(!c.path("out1").exists());
    for w in 0..2 {
        assert!(!c.worker_exited(w), "a panic in user code must not kill worker {w}");
    }

    let o2 = c.path("out2").display().to_string();
    let out = c.cli(
        "submit",
        &[
            "--job",
            "crashtest",
            "--param",
            "panic_word=poison",
            "--input",
            &i,
            "--output",
            &o2,
            "--skip-bad-records",
            "--wait",
            "--json",
        ],
    );
    let status: serde_json::Value = serde_json::from_str(&ok_stdout(&out)).unwrap();
    assert_eq!(status["state"], "succeeded");
    assert_eq!(status["counters"]["SKIPPED_RECORDS"], poisoned);
    assert_eq!(read_output(&c.path("out2"), 4, true), word_count(&clean));
}

#[test]
fn a_task_without_progress_is_failed_after_the_task_timeout_and_run_again() {
    let mut c =
        TestCluster::start_with(Mode::Processes, 2, &args(&["--task-timeout", "2s", "--speculation", "off"])).unwrap();
    let input = c.path("input");
    write_corpus(&input, 4, 3_000, 17).unwrap();
    let marker = c.path("hang-marker");
    let hang = format!("hang_once={}", marker.display());
    let (i, o) = (dir_arg(&input), c.path("out").display().to_string());
    let id = c
        .submit(&[
            "--job",
            "crashtest",
            "--input",
            &i,
            "--output",
            &o,
            "--reducers",
            "2",
            "--param",
            &hang,
            "--param",
            "stall_ms=60000",
        ])
        .unwrap();
    let s = c.wait_job(&id, Duration::from_secs(120), |_| {}).unwrap();
    assert_eq!(s["state"], "succeeded", "{s}");
    assert!(marker.exists(), "one attempt hung");
    assert_eq!(read_output(Path::new(&o), 2, true), word_count(&input));
    let tasks = c.tasks(&id).unwrap();
    let rerun: Vec<_> = tasks.iter().filter(|t| t["attempts"].as_u64() >= Some(2)).collect();
    assert_eq!(rerun.len(), 1, "exactly the hung map ran again: {tasks:?}");
    assert!(rerun[0]["error"].as_str().unwrap_or_default().contains("no progress"), "{:?}", rerun[0]);
}
