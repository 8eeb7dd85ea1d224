//! Whole clusters on a real S3 API server (`s3s-fs` on 127.0.0.1): input, output, store and
//! journal all on `s3://`, outputs compared with sequential computations. Parts commit as
//! multipart uploads that only the coordinator completes.

use std::time::Duration;

use object_store::ObjectStoreExt;
use quern_api::client::{ConnectOptions, worker_client_lazy};
use quern_api::pb;
use quern_tests::data::{read_output, word_count, write_corpus};
use quern_tests::faults::Faults;
use quern_tests::s3::S3Server;
use quern_tests::{TestCluster, eventually, ok_stdout, wait_bounded};

/// A cluster of `workers` processes whose store is `s3://quern/store/`.
fn cluster(s3: &S3Server, workers: usize, coordinator_args: &[&str]) -> TestCluster {
    TestCluster::start_on_store(workers, &s3.url("store/"), coordinator_args, s3.env()).unwrap()
}

/// Submits and waits; the final status, which must be `succeeded`.
fn run(c: &TestCluster, args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.extend(["--wait", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&ok_stdout(&c.cli("submit", &all))).unwrap();
    assert_eq!(status["state"], "succeeded", "{status}");
    status
}

/// The cluster leaves nothing behind in the store but its journal and lease, no
/// `_temporary` under `outputs`, and no multipart upload open.
fn assert_clean(s3: &S3Server, outputs: &[&str]) {
    let clean = eventually(Duration::from_secs(30), || {
        s3.keys("store/jobs").unwrap().is_empty()
            && outputs.iter().all(|o| s3.keys(&format!("{o}/_temporary")).unwrap().is_empty())
            && s3.pending_uploads() == 0
    });
    assert!(clean, "left behind: {:?}, {} open uploads", s3.keys("store/jobs").unwrap(), s3.pending_uploads());
}

/// Record `i` of teragen's output carries its row number as 32 hex digits at bytes 12..44.
fn assert_rows(records: &[u8], rows: u64) {
    assert_eq!(records.len() as u64, rows * 100);
    for (i, r) in records.chunks(100).enumerate() {
        assert_eq!(&r[12..44], format!("{i:032X}").as_bytes(), "record {i}");
    }
}

#[test]
fn wordcount_pipeline_map_only_and_terasort_on_s3_are_exact_and_leave_only_their_outputs() {
    let s3 = S3Server::start().unwrap();
    let c = cluster(&s3, 2, &[]);
    let local = c.path("input");
    write_corpus(&local, 3, 30_000, 7).unwrap();
    let input = s3.upload_dir(&local, "in").unwrap();
    let expected = word_count(&local);

    let (out, top) = (s3.url("out"), s3.url("top"));
    run(&c, &["--job", "wordcount", "--input", &input, "--output", &out, "--reducers", "3", "--split-size", "8KiB"]);
    let got = c.path("got");
    s3.download_dir("out", &got).unwrap();
    assert_eq!(read_output(&got, 3, true), expected);

    // A two-stage pipeline: the top 5 words by count.
    run(&c, &["--job", "topwords", "--input", &input, "--output", &top, "--param", "n=5", "--split-size", "8KiB"]);
    let mut counts: Vec<(u64, String)> = expected.iter().map(|(w, n)| (n.parse().unwrap(), w.clone())).collect();
    counts.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.as_bytes().cmp(b.1.as_bytes())));
    let want: String = counts.iter().take(5).map(|(n, w)| format!("{w}\t{n}\n")).collect();
    let top_keys: Vec<String> = s3.download("top").unwrap().into_iter().map(|(k, _)| k).collect();
    assert_eq!(top_keys, ["top/_SUCCESS", "top/part-00000"]);
    assert_eq!(String::from_utf8(s3.download("top/part-00000").unwrap()[0].1.clone()).unwrap(), want);

    // Map-only (teragen, a part per map task), then terasort of it.
    let (gen_url, sorted_url) = (s3.url("gen"), s3.url("sorted"));
    run(&c, &["--job", "teragen", "--output", &gen_url, "--param", "rows=3000", "--maps", "3"]);
    let generated = s3.download("gen/part-").unwrap();
    assert_eq!(generated.len(), 3, "a part per map task");
    let records: Vec<u8> = generated.iter().flat_map(|(_, b)| b.clone()).collect();
    assert_rows(&records, 3000);
    run(&c, &["--job", "terasort", "--input", &format!("{gen_url}/"), "--output", &sorted_url, "--reducers", "3"]);
    let sorted: Vec<u8> = s3.download("sorted/part-").unwrap().into_iter().flat_map(|(_, b)| b).collect();
    let mut want: Vec<&[u8]> = records.chunks(100).collect();
    want.sort_by(|a, b| a[..10].cmp(&b[..10]).then(a.cmp(b)));
    assert!(sorted.chunks(100).eq(want.iter().copied()), "terasort output is the sorted input");

    assert_clean(&s3, &["out", "top", "gen", "sorted"]);
}

#[test]
fn a_part_larger_than_an_upload_part_commits_whole_as_one_multipart_upload() {
    let s3 = S3Server::start().unwrap();
    let c = cluster(&s3, 1, &["--upload-part-size", "5MiB"]);
    // 120,000 records of 100 bytes: one 12 MB part, uploaded as 5 + 5 + 2 MiB.
    let rows = 120_000u64;
    run(&c, &["--job", "teragen", "--output", &s3.url("big"), "--param", &format!("rows={rows}"), "--maps", "1"]);
    let keys = s3.keys("big").unwrap();
    assert_eq!(keys, ["big/_SUCCESS", "big/part-00000"]);
    let store = s3.store().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let meta = rt.block_on(store.head(&"big/part-00000".into())).unwrap();
    assert_eq!(meta.size, rows * 100);
    // A completed multipart upload's ETag ends in its part count; a copy's would not.
    let etag = meta.e_tag.unwrap_or_default();
    assert!(etag.trim_matches('"').ends_with("-3"), "etag {etag}");
    assert_rows(&s3.download("big/part-00000").unwrap()[0].1, rows);
    assert_clean(&s3, &["big"]);
}

/// A peer that plays a worker through the project's own gRPC client.
struct Peer {
    rt: tokio::runtime::Runtime,
    client: quern_api::client::WorkerClient,
    id: String,
    secret: String,
}

impl Peer {
    fn register(url: &str, jobs: &[&str]) -> Peer {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let mut client = rt.block_on(async { worker_client_lazy(url, &ConnectOptions::default()) }).unwrap();
        let req = pb::RegisterRequest {
            host: "zombie".into(),
            slots: 1,
            jobs: jobs.iter().map(|j| j.to_string()).collect(),
            ..Default::default()
        };
        let r = rt.block_on(client.register(req)).unwrap().into_inner();
        Peer { rt, client, id: r.worker_id, secret: r.worker_secret }
    }

    /// Polls until a reduce task is handed out (bounded).
    fn reduce(&mut self) -> pb::AttemptRef {
        for _ in 0..20 {
            let req = pb::PollRequest {
                worker_id: self.id.clone(),
                worker_secret: self.secret.clone(),
                free_slots: 1,
                wait_ms: 1000,
            };
            let tasks = self.rt.block_on(self.client.poll(req)).unwrap().into_inner().tasks;
            if let Some(t) = tasks.into_iter().find(|t| matches!(t.task, Some(pb::task_assignment::Task::Reduce(_)))) {
                return t.attempt.unwrap();
            }
        }
        panic!("no reduce task was handed out");
    }

    fn start_part(&mut self, attempt: &pb::AttemptRef) -> Result<pb::StartPartResponse, tonic::Status> {
        let req = pb::StartPartRequest {
            worker_id: self.id.clone(),
            worker_secret: self.secret.clone(),
            attempt: Some(attempt.clone()),
        };
        self.rt.block_on(self.client.start_part(req)).map(|r| r.into_inner())
    }

    fn commit(&mut self, attempt: &pb::AttemptRef, parts: Vec<String>) -> bool {
        let req = pb::CommitRequest {
            worker_id: self.id.clone(),
            worker_secret: self.secret.clone(),
            attempt: Some(attempt.clone()),
            upload_parts: parts,
        };
        self.rt.block_on(self.client.commit(req)).is_ok_and(|r| r.into_inner().granted)
    }
}

#[test]
fn a_zombie_that_uploaded_its_part_can_never_make_it_visible() {
    let s3 = S3Server::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let hold = dir.path().join("hold");
    std::fs::write(&hold, b"").unwrap();
    let args = ["--heartbeat-timeout", "2s", "--speculation", "off"];
    let faults = Faults::holding_reduces_while(&hold);
    let mut c = TestCluster::start_on_store_with_faults(1, &s3.url("store/"), &args, s3.env(), faults).unwrap();
    let local = c.path("input");
    write_corpus(&local, 2, 10_000, 11).unwrap();
    let input = s3.upload_dir(&local, "in").unwrap();
    let id =
        c.submit(&["--job", "wordcount", "--input", &input, "--output", &s3.url("out"), "--reducers", "1"]).unwrap();
    let mapped = eventually(Duration::from_secs(60), || {
        let s = c.status(&id).unwrap();
        s["maps"]["done"].as_u64().is_some() && s["maps"]["done"] == s["maps"]["total"]
    });
    assert!(mapped, "the maps never finished");
    // Map outputs live in the store: the worker can go, the zombie-to-be takes the reduce.
    c.kill_worker(0);
    let mut zombie = Peer::register(c.url(), &["wordcount"]);
    std::fs::remove_file(&hold).unwrap();
    let attempt = zombie.reduce();
    let up = zombie.start_part(&attempt).unwrap();
    assert_eq!(up.part_url, s3.url("out/part-00000"), "the upload's key is the part the coordinator named");
    let store = s3.multipart().unwrap();
    let path = object_store::path::Path::from("out/part-00000");
    let part = zombie
        .rt
        .block_on(store.put_part(&path, &up.upload_id, 0, object_store::PutPayload::from_static(b"zombie\t1\n")))
        .unwrap();
    // It stops heartbeating and is declared lost while the job still runs; back, it asks to
    // commit what it uploaded, and to start again: both refused.
    let lost = eventually(Duration::from_secs(30), || {
        let workers = c.workers_json();
        workers.as_array().is_some_and(|w| w.iter().all(|w| w["host"] != "zombie"))
    });
    assert!(lost, "the zombie was never declared lost: {}", c.workers_json());
    assert!(!zombie.commit(&attempt, vec![part.content_id.clone()]), "a lost attempt's commit is refused");
    assert!(zombie.start_part(&attempt).is_err(), "a lost attempt gets no upload");
    assert_eq!(c.status(&id).unwrap()["state"], "running", "refused while its job runs, not because it ended");
    assert_eq!(s3.keys("out/").unwrap(), Vec::<String>::new(), "nothing visible");
    // A real worker runs the reduce again; the zombie's commit stays refused afterwards too.
    c.start_worker().unwrap();
    let status = c.wait_job(&id, Duration::from_secs(120), |_| {}).unwrap();
    assert_eq!(status["state"], "succeeded", "{status}");
    assert!(!zombie.commit(&attempt, vec![part.content_id]), "a lost attempt's commit is refused");
    let got = c.path("got");
    s3.download_dir("out", &got).unwrap();
    assert_eq!(read_output(&got, 1, true), word_count(&local));
    assert_clean(&s3, &["out"]);
}

#[test]
fn a_worker_killed_and_the_coordinator_restarted_on_s3_cost_nothing_committed() {
    let s3 = S3Server::start().unwrap();
    let fast = ["--heartbeat-timeout", "2s", "--lease", "1s"];
    let mut c = cluster(&s3, 0, &fast);
    for _ in 0..3 {
        c.start_worker_slow(Duration::from_millis(150)).unwrap();
    }
    let local = c.path("input");
    write_corpus(&local, 4, 24_000, 5).unwrap();
    let input = s3.upload_dir(&local, "in").unwrap();
    let out = s3.url("out");
    let args = ["--job", "wordcount", "--input", &input, "--output", &out, "--reducers", "4", "--split-size", "8KiB"];
    let waiter = c.spawn_cli("submit", &[&args[..], &["--wait", "--json"]].concat());
    let mut id = String::new();
    let started = eventually(Duration::from_secs(30), || {
        let job = c.first_job();
        id = job["id"].as_str().unwrap_or_default().to_string();
        job["maps"]["done"].as_u64() >= Some(2)
    });
    assert!(started, "the job never got going");
    // A worker dies: it costs only its running attempts.
    c.kill_worker(0);
    let before = c.succeeded_tasks(&id).unwrap();
    assert!(!before.is_empty() && c.status(&id).unwrap()["state"] == "running", "crashed mid-job");
    c.kill_coordinator();
    c.restart_coordinator().unwrap();
    assert!(eventually(Duration::from_secs(20), || c.answers()), "{}", c.coordinator_log(1));
    assert!(c.coordinator_log(1).contains("recovered from the journal"), "{}", c.coordinator_log(1));
    let done = wait_bounded(waiter, Duration::from_secs(180));
    assert!(done.status.success(), "waiter: {}", String::from_utf8_lossy(&done.stderr));
    let status: serde_json::Value = serde_json::from_slice(&done.stdout).unwrap();
    assert_eq!(status["state"], "succeeded");
    let got = c.path("got");
    s3.download_dir("out", &got).unwrap();
    assert_eq!(read_output(&got, 4, true), word_count(&local));
    let after = c.succeeded_tasks(&id).unwrap();
    for (task, attempts) in &before {
        assert_eq!(after.get(task), Some(attempts), "task {task:?} ran again after the restart");
    }
    assert_clean(&s3, &["out"]);
}

#[test]
fn on_a_store_without_conditional_writes_a_second_coordinator_exits_instead_of_waiting_as_a_standby() {
    let s3 = S3Server::start().unwrap();
    let args = ["--store-conditional-writes=false", "--lease", "1s"];
    let c = cluster(&s3, 0, &args);
    let mut second = std::process::Command::new(quern_tests::binary("quern"));
    second.envs(s3.env());
    let store = s3.url("store/");
    let out = wait_bounded(
        quern_tests::spawn_command(
            second,
            &[&["coordinator", "--listen", "127.0.0.1:0", "--store", &store], &args[..]].concat(),
        ),
        Duration::from_secs(60),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let line = err.lines().find(|l| l.starts_with("error:")).unwrap_or_default();
    assert!(line.contains("--store-conditional-writes=false") && line.contains(&store), "{err}");
    assert!(c.answers(), "the first coordinator leads on");
}

#[test]
fn bad_store_settings_fail_with_one_line_naming_the_url_and_write_nothing() {
    let s3 = S3Server::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("x.txt"), "a b a\n").unwrap();
    let input = s3.upload_dir(dir.path(), "in").unwrap();
    let env = s3.env();
    let with = |k: &str, v: &str| -> Vec<(String, String)> {
        env.iter().filter(|(n, _)| n != k).cloned().chain([(k.to_string(), v.to_string())]).collect()
    };
    let without = |keys: &[&str]| -> Vec<(String, String)> {
        // With no credentials the client asks the instance metadata service: a closed port here.
        env.iter()
            .filter(|(n, _)| !keys.contains(&n.as_str()))
            .cloned()
            .chain([("AWS_METADATA_ENDPOINT".to_string(), "http://127.0.0.1:9".to_string())])
            .collect()
    };
    let cases = [
        ("no such bucket", env.clone(), s3.url("out1").replace("s3://quern/", "s3://nosuchbucket/"), "NoSuchBucket"),
        ("wrong secret key", with("AWS_SECRET_ACCESS_KEY", "wrong"), s3.url("out2"), "403"),
        ("wrong endpoint", with("AWS_ENDPOINT", "http://127.0.0.1:9"), s3.url("out3"), "127.0.0.1:9"),
        (
            "no credentials",
            without(&["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]),
            s3.url("out4"),
            "no AWS credentials",
        ),
    ];
    for (what, env, output, answer) in cases {
        let mut cmd = std::process::Command::new(quern_tests::binary("quern"));
        cmd.env_clear().env("PATH", std::env::var_os("PATH").unwrap_or_default()).envs(env);
        let args = ["run", "--job", "wordcount", "--input", &input, "--output", &output];
        let out = wait_bounded(quern_tests::spawn_command(cmd, &args), Duration::from_secs(120));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{what}: {err}");
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 1, "{what}: one line: {err}");
        assert!(lines[0].starts_with("error: store error: s3://"), "{what}: {err}");
        assert!(lines[0].contains(answer), "{what}: the store's answer: {err}");
    }
    assert_eq!(s3.keys("").unwrap(), ["in/x.txt"], "nothing was written");
}

#[test]
fn on_s3_with_atomic_create_only_writes_a_standby_takes_over_mid_job_and_the_output_is_exact() {
    let s3 = S3Server::start_moto().unwrap();
    let fast = ["--heartbeat-timeout", "2s", "--heartbeat-interval", "200ms", "--lease", "1s"];
    let mut c = cluster(&s3, 0, &fast);
    let primary = c.url().to_string();
    let (standby, standby_log) = c.start_standby().unwrap();
    let both = format!("{primary},{standby}");
    c.set_worker_coordinator(&both);
    for _ in 0..2 {
        c.start_worker_slow(Duration::from_millis(200)).unwrap();
    }
    let local = c.path("input");
    write_corpus(&local, 4, 24_000, 34).unwrap();
    let input = s3.upload_dir(&local, "in").unwrap();
    let out = s3.url("out");
    let mut cmd = std::process::Command::new(quern_tests::binary("quern"));
    cmd.envs(s3.env());
    let args = ["submit", "--coordinator", &both, "--job", "wordcount", "--input", &input, "--output", &out];
    let more = ["--reducers", "3", "--split-size", "8KiB", "--wait", "--json"];
    let waiter = quern_tests::spawn_command(cmd, &[&args[..], &more[..]].concat());
    let started = eventually(Duration::from_secs(30), || c.first_job()["maps"]["done"].as_u64().unwrap_or(0) >= 2);
    assert!(started, "the job never got going");
    c.kill_coordinator();
    let done = wait_bounded(waiter, Duration::from_secs(120));
    let log = c.coordinator_log(standby_log);
    assert!(done.status.success(), "waiter: {}\nstandby: {log}", String::from_utf8_lossy(&done.stderr));
    assert!(log.contains("waiting as a standby") && log.contains("took the lead"), "{log}");
    let got = c.path("got");
    s3.download_dir("out", &got).unwrap();
    assert_eq!(read_output(&got, 3, true), word_count(&local));
    assert_clean(&s3, &["out"]);
}
