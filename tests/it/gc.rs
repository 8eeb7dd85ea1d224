//! Cleaning up after jobs: `quern run` waits for its job's cleanup, a coordinator that takes
//! over sweeps what crashed jobs left in the store, and `quern gc` lists (dry run) or deletes
//! leftovers without touching the data of running jobs.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, SystemTime};

use quern_api::split::Split;
use quern_api::{JobId, StoreUrl};
use quern_coordinator::job::JobSpec;
use quern_coordinator::journal::{self, Ended, Journal, Record};
use quern_tests::data::{files_under, read_output, word_count, write_corpus};
use quern_tests::faults::Faults;
use quern_tests::s3::S3Server;
use quern_tests::{Mode, TestCluster, eventually, ok_stdout, quern, spawn_command, wait_bounded};
use tokio_util::sync::CancellationToken;

#[test]
fn quern_run_returns_after_its_cleanup_and_leaves_nothing_under_jobs() {
    // Three runs: before `run` waited for the cleanup, most runs (not all) left map outputs.
    for seed in 41..44 {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("input");
        write_corpus(&input, 3, 20_000, seed).unwrap();
        let (store, out) = (dir.path().join("store"), dir.path().join("out"));
        let (i, s, o) = (format!("{}/", input.display()), store.display().to_string(), out.display().to_string());
        let started = std::time::Instant::now();
        let args = ["--input", &i, "--output", &o, "--store", &s, "--reducers", "3", "--split-size", "2KiB"];
        ok_stdout(&quern(&[&["run", "--job", "wordcount"][..], &args].concat()));
        eprintln!("quern run took {:?}", started.elapsed());
        assert_eq!(read_output(&out, 3, true), word_count(&input));
        // The store keeps its journal and lease, and nothing of the job.
        let left = files_under(&store.join("jobs"));
        assert!(left.is_empty(), "left under jobs/: {left:?}");
    }
}

/// A short lease: a coordinator restarted after kill -9 waits 1.5 leases before it may act.
const FAST: [&str; 6] = ["--heartbeat-timeout", "2s", "--heartbeat-interval", "200ms", "--lease", "1s"];

/// Writes a small object at `path` (creating directories), last modified `age` ago.
fn fabricate(path: &Path, age: Duration) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, b"left over").unwrap();
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(SystemTime::now() - age).unwrap();
}

/// `(verb, url)` of each line of `quern gc` that names a directory (`delete`, `keep`).
fn gc_lines(stdout: &str) -> BTreeSet<(String, String)> {
    stdout
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let (verb, url) = (words.next()?, words.next()?);
            ["delete", "keep"].contains(&verb).then(|| (verb.to_string(), url.to_string()))
        })
        .collect()
}

#[test]
fn gc_lists_then_deletes_exactly_the_leftovers_and_a_restarted_coordinator_sweeps_the_rest() {
    let hold = tempfile::NamedTempFile::new().unwrap();
    let faults = Faults::holding_reduces_while(hold.path());
    let mut c = TestCluster::start_with_faults(Mode::Processes, 1, &FAST, faults).unwrap();
    let input = c.path("input");
    write_corpus(&input, 3, 20_000, 45).unwrap();
    let i = format!("{}/", input.display());
    let (out_r, out_k) = (c.path("out-r").display().to_string(), c.path("out-k").display().to_string());
    // Job R runs: its maps finish and its reduces are held back. Job K is killed once its
    // maps are done, and its own cleanup deletes its data.
    let job = |out: &str| c.submit(&["--job", "wordcount", "--input", &i, "--output", out, "--reducers", "2"]).unwrap();
    let (r, k) = (job(&out_r), job(&out_k));
    let maps_done = |id: &str| {
        let s = c.status(id).unwrap();
        s["maps"]["done"] == s["maps"]["total"]
    };
    assert!(eventually(Duration::from_secs(60), || maps_done(&r) && maps_done(&k)), "maps did not finish");
    ok_stdout(&c.cli("kill", &[&k]));
    let store = c.store_dir();
    let (r_dir, k_dir) = (store.join("jobs").join(&r), store.join("jobs").join(&k));
    assert!(eventually(Duration::from_secs(30), || !k_dir.exists()), "the killed job's cleanup did not run");
    let r_data = files_under(&r_dir);
    assert!(!r_data.is_empty());
    // A crash: the lease stays unreleased. Then leftovers: a zombie's map output in the
    // killed job's directory, and directories of jobs no journal knows, one written two
    // hours ago and one just now.
    c.kill_coordinator();
    fabricate(&k_dir.join("map-00000-e1-a9.arrows"), Duration::ZERO);
    let (old, new) = (store.join("jobs/job_1_0001"), store.join("jobs/job_1_0002"));
    fabricate(&old.join("map-00000-e1-a1.arrows"), Duration::from_secs(7200));
    fabricate(&old.join("stage-0/part-00000"), Duration::from_secs(7300));
    fabricate(&new.join("map-00000-e1-a1.arrows"), Duration::ZERO);
    let before = files_under(&store);

    let url = |p: &Path| format!("file://{}/", p.display());
    let s = store.display().to_string();
    let dry = quern(&["gc", "--store", &s]);
    let text = ok_stdout(&dry);
    eprintln!("{text}");
    assert!(String::from_utf8_lossy(&dry.stderr).contains("may be running"), "the unreleased lease is noted");
    let expected: BTreeSet<(String, String)> =
        [("delete", url(&k_dir)), ("delete", url(&old)), ("keep", url(&r_dir)), ("keep", url(&new))]
            .into_iter()
            .map(|(v, u)| (v.to_string(), u))
            .collect();
    assert_eq!(gc_lines(&text), expected);
    assert!(text.lines().last().unwrap().starts_with("dry run: would delete 2 directories (3 objects"), "{text}");
    assert_eq!(files_under(&store), before, "a dry run deletes nothing");

    let text = ok_stdout(&quern(&["gc", "--store", &s, "--delete"]));
    assert_eq!(gc_lines(&text), expected);
    let mut left = before.clone();
    left.retain(|f| !f.starts_with(&k_dir) && !f.starts_with(&old));
    assert_eq!(files_under(&store), left, "exactly the listed directories are gone");
    let again = ok_stdout(&quern(&["gc", "--store", &s]));
    assert!(again.contains("would delete 0 directories"), "{again}");

    // A restarted coordinator knows every job of its own, so its sweep deletes the recent
    // unknown directory too; the running job's data stays, and the job finishes from it.
    c.restart_coordinator().unwrap();
    let swept = eventually(Duration::from_secs(30), || c.coordinator_log(1).contains("swept the store"));
    assert!(swept, "{}", c.coordinator_log(1));
    assert!(!new.exists(), "the sweep deleted the unknown job's directory");
    assert_eq!(files_under(&r_dir), r_data, "the running job's data is untouched");
    let before_tasks = c.succeeded_tasks(&r).unwrap();
    std::fs::remove_file(hold.path()).unwrap();
    let s = c.wait_job(&r, Duration::from_secs(120), |_| {}).unwrap();
    assert_eq!(s["state"], "succeeded");
    assert_eq!(read_output(&c.path("out-r"), 2, true), word_count(&input));
    let after_tasks = c.succeeded_tasks(&r).unwrap();
    for (task, attempts) in &before_tasks {
        assert_eq!(after_tasks.get(task), Some(attempts), "{task:?} ran again: its data was lost");
    }
    assert!(eventually(Duration::from_secs(30), || files_under(&store.join("jobs")).is_empty()));
}

/// Writes `records` as the journal of `store` with the coordinator crate's own writer.
fn write_journal(store: &StoreUrl, records: Vec<Record>) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let journal = Journal::start(store, 0, Duration::from_secs(5), CancellationToken::new());
        let n = journal.append(records);
        assert!(journal.durable(n, Duration::from_secs(10)).await, "journal not written");
    });
}

fn read_journal(store: &StoreUrl) -> Vec<Record> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(journal::read_all(store)).unwrap().records
}

/// A word count job's submission record, reading `input` (one object) into `output`.
fn submitted(id: &JobId, seq: u64, input: &Path, output: &Path) -> Record {
    let url = |p: &Path| StoreUrl::from_user(&p.display().to_string()).unwrap();
    let size = std::fs::metadata(input).unwrap().len();
    let spec = JobSpec {
        name: "wordcount".into(),
        inputs: vec![url(input)],
        output: url(output),
        reducers: 2,
        split_size: 64 << 20,
        params: Default::default(),
        priority: 0,
        skip_bad_records: false,
        stages: Vec::new(),
        side: Default::default(),
        formats: Default::default(),
        generate_rows: 0,
    };
    let splits = vec![Split { url: url(input).to_string(), start: 0, end: size, object_size: size }];
    Record::JobSubmitted { id: id.clone(), seq, spec: Box::new(spec), splits, submitted_ms: quern_api::now_ms() }
}

#[test]
fn a_coordinator_taking_over_sweeps_what_a_crash_left_of_an_ended_job_and_journals_it() {
    // The store of a coordinator that crashed after job A's end was journalled and before
    // A's cleanup ran: A's map output and a reduce attempt's part under its output's
    // `_temporary/` are left, next to running job B's data and an unknown job's.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let store = StoreUrl::from_user(&format!("{}/store/", root.display())).unwrap();
    write_corpus(&root.join("input"), 1, 2_000, 46).unwrap();
    let doc = root.join("input/doc-00.txt");
    let (a, b) = (JobId::new(1, 1), JobId::new(1, 2));
    write_journal(
        &store,
        vec![
            submitted(&a, 1, &doc, &root.join("out-a")),
            submitted(&b, 2, &doc, &root.join("out-b")),
            Record::JobEnded { job: a.clone(), outcome: Ended::Killed, finished_ms: quern_api::now_ms() },
        ],
    );
    let jobs = root.join("store/jobs");
    let temporary = root.join(format!("out-a/_temporary/{a}"));
    fabricate(&jobs.join(a.as_str()).join("map-00000-e1-a1.arrows"), Duration::ZERO);
    fabricate(&temporary.join("part-00000-e1-a1"), Duration::ZERO);
    fabricate(&jobs.join(b.as_str()).join("map-00000-e1-a1.arrows"), Duration::ZERO);
    fabricate(&jobs.join("job_1_0009/map-00000-e1-a1.arrows"), Duration::ZERO);

    let mut args = FAST.to_vec();
    args.extend(["--job-wait", "1h"]);
    let c = TestCluster::start_on_store(0, store.as_str(), &args, Vec::new()).unwrap();
    let swept = eventually(Duration::from_secs(30), || c.coordinator_log(0).contains("swept the store"));
    assert!(swept, "{}", c.coordinator_log(0));
    let left: Vec<_> = files_under(&jobs).iter().map(|f| f.strip_prefix(&jobs).unwrap().to_path_buf()).collect();
    assert_eq!(left, [Path::new(b.as_str()).join("map-00000-e1-a1.arrows")]);
    assert!(!root.join("out-a/_temporary").exists(), "the ended job's temporary parts are gone");
    let list: serde_json::Value = serde_json::from_str(&ok_stdout(&c.cli("list", &["--json"]))).unwrap();
    let states: Vec<(&str, &str)> =
        list.as_array().unwrap().iter().map(|j| (j["id"].as_str().unwrap(), j["state"].as_str().unwrap())).collect();
    assert_eq!(states, [(a.as_str(), "killed"), (b.as_str(), "queued")]);
    // The sweep journalled that A's data is gone, so no later sweep lists A's output again;
    // gc finds nothing left to delete.
    let cleaned = eventually(Duration::from_secs(10), || {
        read_journal(&store).iter().any(|r| matches!(r, Record::JobCleaned { job } if *job == a))
    });
    assert!(cleaned, "no JobCleaned record for {a}");
    let text = ok_stdout(&quern(&["gc", "--store", store.as_str()]));
    assert!(text.contains("would delete 0 directories"), "{text}");
}

#[test]
fn gc_on_s3_lists_then_aborts_an_open_upload_noted_by_a_job_nobody_knows() {
    let s3 = S3Server::start().unwrap();
    // A coordinator that crashed (and whose journal is gone) left an upload it had started
    // for a part attempt, its note, and a map output.
    let part = object_store::path::Path::from("out/part-00000");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let upload = rt.block_on(s3.multipart().unwrap().create_multipart(&part)).unwrap();
    let note = serde_json::json!({ "part": s3.url("out/part-00000"), "id": upload }).to_string();
    let files = [
        ("uploads/part-00000-e1-a1".to_string(), note.into_bytes()),
        ("map-00000-e1-a1.arrows".to_string(), b"left over".to_vec()),
    ];
    s3.upload("store/jobs/job_1_0007", &files).unwrap();
    assert_eq!(s3.pending_uploads(), 1);
    let gc = |extra: &[&str]| {
        let store = s3.url("store/");
        let args = [&["gc", "--store", store.as_str(), "--min-age", "0s"][..], extra].concat();
        let mut cmd = std::process::Command::new(quern_tests::binary("quern"));
        cmd.envs(s3.env());
        ok_stdout(&wait_bounded(spawn_command(cmd, &args), Duration::from_secs(120)))
    };
    let text = gc(&[]);
    let dir = s3.url("store/jobs/job_1_0007/");
    assert!(text.contains(&format!("delete  {dir}  2 objects")), "{text}");
    assert!(text.contains(&format!("abort   {}  upload {upload}", s3.url("out/part-00000"))), "{text}");
    assert_eq!((s3.pending_uploads(), s3.keys("store/jobs/").unwrap().len()), (1, 2), "a dry run changes nothing");
    let text = gc(&["--delete"]);
    assert!(text.contains("deleted 1 directory (2 objects"), "{text}");
    assert_eq!(s3.pending_uploads(), 0, "the upload was aborted");
    assert!(s3.keys("store/jobs/").unwrap().is_empty());
    assert!(s3.keys("out/").unwrap().is_empty(), "nothing became visible in the output");
}
