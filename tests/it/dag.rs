//! DAG pipelines on a cluster of processes: the independent branches of `wordstats` (word
//! count and the inverted index, both reading the job's input) run side by side, the join
//! starts once both have finished, and a coordinator killed with SIGKILL while both branches
//! run resumes both from its journal. The output always equals a sequential computation.
//!
//! Side by side is shown without timing: the coordinator holds every reduce task back while a
//! gate file exists, so stage 1 (word count) cannot finish; the maps of stage 2 (the index)
//! all succeeding meanwhile is only possible if stage 2 runs beside stage 1.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use quern_tests::data::{index, read_output, word_count, write_corpus};
use quern_tests::faults::Faults;
use quern_tests::{Mode, TestCluster};
use serde_json::{Value, json};

/// A short lease: a coordinator restarted after kill -9 waits 1.5 leases before it may act.
const FAST: [&str; 6] = ["--heartbeat-timeout", "2s", "--heartbeat-interval", "200ms", "--lease", "1s"];

const REDUCERS: usize = 3;

/// Word count and inverted index joined on the word, computed sequentially.
fn expected(input: &Path) -> BTreeMap<String, String> {
    let docs = index(input);
    word_count(input).into_iter().map(|(w, n)| (w.clone(), format!("{n}\t{}", docs[&w]))).collect()
}

/// Lines of the corpus: every one is a map input record of stage 1 and of stage 2.
fn lines(input: &Path) -> u64 {
    (0..4)
        .map(|f| {
            let bytes = std::fs::read(input.join(format!("doc-{f:02}.txt"))).unwrap();
            bytes.iter().filter(|&&b| b == b'\n').count() as u64 + u64::from(!bytes.ends_with(b"\n"))
        })
        .sum()
}

/// A cluster of two worker processes whose coordinator holds reduces while `gate` exists,
/// and a corpus in it.
fn cluster(gate: &Path, args: &[&str], seed: u64) -> (TestCluster, std::path::PathBuf) {
    std::fs::write(gate, b"").unwrap();
    let c = TestCluster::start_with_faults(Mode::Processes, 2, args, Faults::holding_reduces_while(gate)).unwrap();
    let input = c.path("input");
    write_corpus(&input, 4, 24_000, seed).unwrap();
    (c, input)
}

/// Submits `wordstats` and waits (bounded) until both branches are running with every map
/// of both done, while reduces are held; returns the job id and its tasks then.
fn both_branches_mapped(c: &TestCluster, input: &Path) -> (String, Vec<Value>) {
    let (i, o) = (format!("{}/", input.display()), c.path("out").display().to_string());
    let r = REDUCERS.to_string();
    let args = ["--job", "wordstats", "--input", &i, "--output", &o, "--reducers", &r, "--split-size", "16KiB"];
    let id = c.submit(&args).unwrap();
    let mut last = Value::Null;
    let mapped = quern_tests::eventually(Duration::from_secs(60), || {
        last = c.status(&id).unwrap();
        last["running_stages"] == json!([1, 2]) && last["maps"]["done"] == last["maps"]["total"]
    });
    assert!(mapped, "the branches never ran side by side: {last}");
    assert_eq!(last["running_stage_jobs"], json!(["wordcount", "indexer"]));
    let tasks = c.tasks(&id).unwrap();
    let of = |stage: u64, kind: &str| -> Vec<&Value> {
        tasks.iter().filter(|t| t["stage"] == stage && t["kind"] == kind).collect()
    };
    // Every map of the index (stage 2) succeeded while word count (stage 1) had not
    // finished: none of its reduces could run.
    assert!(!of(2, "map").is_empty() && of(2, "map").iter().all(|t| t["state"] == "succeeded"), "{tasks:?}");
    assert_eq!(of(1, "reduce").len(), REDUCERS);
    assert!(of(1, "reduce").iter().all(|t| t["state"] == "pending"), "{tasks:?}");
    assert!(of(3, "map").is_empty(), "the join waits for both: {tasks:?}");
    (id, tasks)
}

/// Checks a finished `wordstats` run: state, stage shown, exact output, counters of every
/// stage counted once, no scratch left.
fn check_done(c: &TestCluster, status: &Value, input: &Path) {
    assert_eq!(status["state"], "succeeded", "{status}");
    assert_eq!((status["stage"].as_u64(), status["stages"].as_u64()), (Some(3), Some(3)));
    assert_eq!(status["stage_job"], "join");
    let expected = expected(input);
    assert_eq!(read_output(&c.path("out"), REDUCERS, true), expected);
    // Stages 1 and 2 each read every line; stage 3 one line per word from each of them.
    assert_eq!(
        status["counters"]["MAP_INPUT_RECORDS"].as_u64().unwrap(),
        2 * lines(input) + 2 * expected.len() as u64,
        "{status}"
    );
    assert_eq!(c.scratch_left(), Vec::<std::path::PathBuf>::new());
}

#[test]
fn the_independent_branches_of_wordstats_run_side_by_side() {
    let dir = tempfile::tempdir().unwrap();
    let gate = dir.path().join("hold-reduces");
    let (mut c, input) = cluster(&gate, &[], 41);
    let (id, _) = both_branches_mapped(&c, &input);
    std::fs::remove_file(&gate).unwrap();
    let status = c.wait_job(&id, Duration::from_secs(120), |_| {}).unwrap();
    check_done(&c, &status, &input);
}

#[test]
fn a_coordinator_killed_while_both_branches_run_resumes_both() {
    let dir = tempfile::tempdir().unwrap();
    let gate = dir.path().join("hold-reduces");
    let (mut c, input) = cluster(&gate, &FAST, 42);
    let (id, before) = both_branches_mapped(&c, &input);
    let attempts = |tasks: &[Value]| -> BTreeMap<(u64, String, u64), u64> {
        tasks
            .iter()
            .filter(|t| t["state"] == "succeeded")
            .map(|t| {
                let key = (t["stage"].as_u64().unwrap(), t["kind"].as_str().unwrap().to_string());
                ((key.0, key.1, t["index"].as_u64().unwrap()), t["attempts"].as_u64().unwrap())
            })
            .collect()
    };
    let committed = attempts(&before);

    c.kill_coordinator();
    c.restart_coordinator().unwrap();
    let answered = quern_tests::eventually(Duration::from_secs(20), || c.answers());
    assert!(answered, "{}", c.coordinator_log(1));
    assert!(c.coordinator_log(1).contains("recovered from the journal"), "{}", c.coordinator_log(1));
    // Both branches are back, their maps done: nothing committed runs again.
    let status = c.status(&id).unwrap();
    assert_eq!(status["running_stages"], json!([1, 2]), "{status}");
    assert_eq!(status["maps"]["done"], status["maps"]["total"], "{status}");
    let after = attempts(&c.tasks(&id).unwrap());
    assert_eq!(after, committed, "a committed map ran again after the restart");

    std::fs::remove_file(&gate).unwrap();
    let status = c.wait_job(&id, Duration::from_secs(120), |_| {}).unwrap();
    check_done(&c, &status, &input);
}
