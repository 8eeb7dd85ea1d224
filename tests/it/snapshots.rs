//! Journal snapshots: a coordinator that ran a thousand jobs restarts with every one of them
//! in `quern list`, as it was, from a journal compacted to a bounded number of objects. The
//! restart times with and without snapshots are printed (not asserted).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use quern_api::client::{ConnectOptions, job_client};
use quern_api::pb;
use quern_tests::data::{files_under, read_output, word_count, write_corpus};
use quern_tests::{Mode, TestCluster, eventually, ok_stdout};

const JOBS: usize = 1000;
/// Snapshots every this many records (the default).
const EVERY: usize = 1000;

/// `quern list --json`, by job id.
fn list(c: &TestCluster) -> BTreeMap<String, serde_json::Value> {
    let jobs: Vec<serde_json::Value> = serde_json::from_str(&ok_stdout(&c.cli("list", &["--json"]))).unwrap();
    jobs.into_iter().map(|j| (j["id"].as_str().unwrap().to_string(), j)).collect()
}

/// Stops the coordinator cleanly (it releases its lease), starts it again with `args`, and
/// returns (until listening, until answering, the replay time it logged).
fn restart(c: &mut TestCluster, args: &[&str], n: usize) -> (Duration, Duration, String) {
    c.signal_coordinator(libc::SIGTERM);
    assert!(eventually(Duration::from_secs(60), || c.coordinator_exited()), "the coordinator did not stop");
    let started = Instant::now();
    let listening = c.restart_coordinator_with(args).unwrap();
    assert!(eventually(Duration::from_secs(60), || c.answers()), "{}", c.coordinator_log(n));
    let answering = started.elapsed();
    (listening, answering, replay_line(&c.coordinator_log(n)))
}

/// The fields of the coordinator's "recovered from the journal" log line, without colours.
fn replay_line(log: &str) -> String {
    let line = log.lines().find(|l| l.contains("recovered from the journal")).unwrap_or("");
    let mut plain = String::new();
    let mut chars = line.chars();
    while let Some(ch) = chars.next() {
        if ch == '\u{1b}' {
            // An escape sequence runs to its final letter.
            chars.by_ref().find(|c| c.is_ascii_alphabetic());
        } else {
            plain.push(ch);
        }
    }
    plain.split_once("recovered from the journal").map_or(plain.clone(), |(_, fields)| fields.trim().to_string())
}

fn journal_objects(c: &TestCluster) -> usize {
    files_under(&c.store_dir().join("journal")).len()
}

#[test]
fn a_thousand_finished_jobs_survive_restarts_from_a_compacted_journal() {
    let off = ["--journal-snapshot-every", "0", "--max-jobs", "5000"];
    let mut c = TestCluster::start_with(Mode::Processes, 2, &off).unwrap();
    let input = c.path("input");
    write_corpus(&input, 1, 400, 47).unwrap();
    let doc = format!("file://{}/doc-00.txt", input.display());
    let outs: Vec<String> = (0..JOBS).map(|k| format!("file://{}/out-{k}", c.path("outs").display())).collect();

    // A thousand word counts, one in four killed as soon as it is accepted.
    let started = Instant::now();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut client = job_client(c.url(), &ConnectOptions::default()).await.unwrap();
        for (k, out) in outs.iter().enumerate() {
            let spec = pb::JobSpec {
                job: "wordcount".into(),
                inputs: vec![doc.clone()],
                output: out.clone(),
                reducers: 1,
                split_size: 64 << 20,
                ..Default::default()
            };
            let id = client.submit(pb::SubmitRequest { spec: Some(spec) }).await.unwrap().into_inner().job_id;
            if k % 4 == 3 {
                // A job already committing or done can no longer be killed: then it succeeds.
                let _ = client.kill(pb::JobRequest { job_id: id }).await;
            }
        }
    });
    let all_ended = eventually(Duration::from_secs(900), || {
        let jobs = list(&c);
        jobs.len() == JOBS
            && jobs.values().all(|j| matches!(j["state"].as_str(), Some("succeeded" | "failed" | "killed")))
    });
    assert!(all_ended, "the jobs did not all end");
    let before = list(&c);
    let count = |state: &str| before.values().filter(|j| j["state"] == state).count();
    let (succeeded, killed) = (count("succeeded"), count("killed"));
    eprintln!("{JOBS} jobs ({succeeded} succeeded, {killed} killed) in {:.1}s", started.elapsed().as_secs_f64());
    assert_eq!(succeeded + killed, JOBS);
    assert!(killed > 0 && succeeded > 0);
    // Their outputs are right (a sample), computed independently.
    let expected = word_count(&input);
    for j in before.values().filter(|j| j["state"] == "succeeded").take(3) {
        let out = std::path::PathBuf::from(j["output"].as_str().unwrap().trim_start_matches("file://"));
        assert_eq!(read_output(&out, 1, true), expected);
    }
    let raw = journal_objects(&c);

    // Without snapshots: the whole journal is replayed.
    let (listen, answer, replay) = restart(&mut c, &off, 1);
    eprintln!(
        "without snapshots: {raw} journal objects; listening after {listen:?}, answering after {answer:?}; {replay}"
    );
    assert_eq!(list(&c), before);

    // With them: the first start replays the whole journal too, then writes a snapshot and
    // deletes the entries it covers.
    let every = EVERY.to_string();
    let on = ["--journal-snapshot-every", every.as_str(), "--max-jobs", "5000"];
    let (listen, answer, _) = restart(&mut c, &on, 2);
    eprintln!("first start with snapshots: listening after {listen:?}, answering after {answer:?}");
    let compacted = eventually(Duration::from_secs(60), || journal_objects(&c) < 2 * EVERY);
    assert!(compacted, "{} journal objects; {}", journal_objects(&c), c.coordinator_log(2));
    assert!(c.coordinator_log(2).contains("journal snapshot written"));
    assert_eq!(list(&c), before);

    // And from the snapshot on.
    let (listen, answer, replay) = restart(&mut c, &on, 3);
    let objects = journal_objects(&c);
    eprintln!(
        "with snapshots: {objects} journal objects; listening after {listen:?}, answering after {answer:?}; {replay}"
    );
    assert!(objects < 2 * EVERY);
    assert_eq!(list(&c), before, "every job as it was");
}
