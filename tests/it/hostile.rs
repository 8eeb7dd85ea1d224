//! A hostile peer against a real coordinator with two workers, written with the project's
//! own gRPC client types (not the CLI): forged reports for attempts it does not hold and
//! for finished jobs, ids of other workers, oversized and malformed messages, unknown jobs,
//! poisoned parameters, inputs that are still being written, the path policy, and a
//! bounded flood of idle connections. After each, the coordinator is alive, nothing outside
//! its own prefixes changed, and a following word count is exact.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use quern_api::client::{ConnectOptions, JobClient, WorkerClient, job_client, worker_client_lazy};
use quern_api::pb;
use quern_tests::data::{files_under, read_output, word_count, write_corpus};
use quern_tests::faults::Faults;
use quern_tests::{Mode, TestCluster, eventually};

fn dir_arg(p: &Path) -> String {
    format!("{}/", p.display())
}

fn file_url(p: &Path) -> String {
    format!("file://{}", p.display())
}

/// Every file under `root` with its bytes, except under `skip` (the store, which the
/// coordinator owns, and outputs the test itself asked for).
fn snapshot(root: &Path, skip: &[PathBuf]) -> BTreeMap<PathBuf, Vec<u8>> {
    files_under(root)
        .into_iter()
        .filter(|f| !skip.iter().any(|s| f.starts_with(s)) && f.extension().is_none_or(|e| e != "log"))
        .map(|f| {
            let bytes = std::fs::read(&f).unwrap_or_default();
            (f, bytes)
        })
        .collect()
}

struct Peer {
    rt: tokio::runtime::Runtime,
    jobs: JobClient,
    workers: WorkerClient,
}

impl Peer {
    fn connect(url: &str) -> Peer {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let jobs = rt.block_on(job_client(url, &ConnectOptions::default())).unwrap();
        let workers = rt.block_on(async { worker_client_lazy(url, &ConnectOptions::default()) }).unwrap();
        Peer { rt, jobs, workers }
    }

    fn submit(&mut self, spec: pb::JobSpec) -> Result<String, tonic::Status> {
        let jobs = &mut self.jobs;
        self.rt.block_on(jobs.submit(pb::SubmitRequest { spec: Some(spec) })).map(|r| r.into_inner().job_id)
    }

    /// Registers; returns the worker id and its secret.
    fn register(&mut self, req: pb::RegisterRequest) -> Result<(String, String), tonic::Status> {
        let w = &mut self.workers;
        self.rt.block_on(w.register(req)).map(|r| r.into_inner()).map(|r| (r.worker_id, r.worker_secret))
    }

    fn heartbeat(&mut self, r: pb::HeartbeatRequest) -> Result<pb::HeartbeatResponse, tonic::Status> {
        let w = &mut self.workers;
        self.rt.block_on(w.heartbeat(r)).map(|r| r.into_inner())
    }

    fn report(&mut self, r: pb::OutcomeReport) -> Result<pb::OutcomeResponse, tonic::Status> {
        let w = &mut self.workers;
        self.rt.block_on(w.report(r)).map(|r| r.into_inner())
    }

    fn commit(&mut self, r: pb::CommitRequest) -> Result<pb::CommitResponse, tonic::Status> {
        let w = &mut self.workers;
        self.rt.block_on(w.commit(r)).map(|r| r.into_inner())
    }

    fn real_worker_ids(&mut self) -> Vec<String> {
        let j = &mut self.jobs;
        let list = self.rt.block_on(j.workers(pb::ListWorkersRequest {})).unwrap().into_inner();
        list.workers.into_iter().filter(|w| w.host.starts_with("host-")).map(|w| w.id).collect()
    }
}

fn wordcount(input: &Path, output: &Path) -> pb::JobSpec {
    pb::JobSpec {
        job: "wordcount".into(),
        inputs: vec![file_url(input) + "/"],
        output: file_url(output),
        reducers: 2,
        ..Default::default()
    }
}

fn attempt(job: &str, kind: pb::TaskKind, index: u32, attempt: u32) -> Option<pb::AttemptRef> {
    Some(pb::AttemptRef { job_id: job.into(), kind: kind as i32, index, attempt })
}

/// A worker id and the secret the caller claims for it.
type Who<'a> = (&'a str, &'a str);

fn map_success((worker, secret): Who<'_>, job: &str, index: u32, n: u32, partitions: usize) -> pb::OutcomeReport {
    pb::OutcomeReport {
        worker_id: worker.into(),
        worker_secret: secret.into(),
        attempt: attempt(job, pb::TaskKind::Map, index, n),
        outcome: Some(pb::outcome_report::Outcome::Succeeded(pb::Succeeded {
            counters: Default::default(),
            map_output: Some(pb::MapOutput { partitions: vec![pb::Segment::default(); partitions] }),
        })),
    }
}

/// Runs a word count through the CLI and checks it against the sequential count.
fn exact_wordcount(c: &mut TestCluster, input: &Path, name: &str) {
    let out = c.path(name);
    let id = c
        .submit(&[
            "--job",
            "wordcount",
            "--input",
            &dir_arg(input),
            "--output",
            &out.display().to_string(),
            "--reducers",
            "2",
        ])
        .unwrap();
    let s = c.wait_job(&id, Duration::from_secs(120), |_| {}).unwrap();
    assert_eq!(s["state"], "succeeded", "{s}");
    assert_eq!(read_output(&out, 2, true), word_count(input));
}

#[test]
fn a_hostile_peer_cannot_hurt_the_coordinator_or_anything_outside_its_prefixes() {
    let hold = std::env::temp_dir().join(format!("quern-hold-{}", std::process::id()));
    let mut c = TestCluster::start_with_faults(
        Mode::Processes,
        2,
        &["--job-wait", "2s", "--heartbeat-timeout", "3s"],
        Faults::holding_reduces_while(&hold),
    )
    .unwrap();
    let input = c.path("input");
    write_corpus(&input, 3, 6_000, 5).unwrap();
    let victim = c.path("victim");
    std::fs::create_dir_all(&victim).unwrap();
    std::fs::write(victim.join("precious.txt"), b"do not delete").unwrap();
    let mut peer = Peer::connect(c.url());

    // A finished job whose parts a forged report might try to delete.
    let done_out = c.path("done");
    let done = peer.submit(wordcount(&input, &done_out)).unwrap();
    assert_eq!(c.wait_job(&done, Duration::from_secs(120), |_| {}).unwrap()["state"], "succeeded");
    let skip = vec![c.store_dir()];
    let before = snapshot(&c.path(""), &skip);

    // 1. Forged reports: for a finished job, from a fake worker and with a real worker's id.
    let (fake, fake_secret) =
        peer.register(pb::RegisterRequest { host: "evil".into(), slots: 1, ..Default::default() }).unwrap();
    let real = peer.real_worker_ids();
    assert_eq!(real.len(), 2);
    // Another worker's id without its secret: every call is refused outright.
    for forged in [
        peer.report(map_success((&real[0], ""), &done, 0, 1, 2)).map(drop),
        peer.report(map_success((&real[0], &fake_secret), &done, 0, 1, 2)).map(drop),
        peer.commit(pb::CommitRequest {
            worker_id: real[0].clone(),
            worker_secret: fake_secret.clone(),
            attempt: attempt(&done, pb::TaskKind::Reduce, 1, 1),
            ..Default::default()
        })
        .map(drop),
        // An empty running list would fail the real worker's attempts as dropped.
        peer.heartbeat(pb::HeartbeatRequest { worker_id: real[1].clone(), ..Default::default() }).map(drop),
    ] {
        assert_eq!(forged.unwrap_err().code(), tonic::Code::PermissionDenied);
    }
    // As itself, the fake worker gets nothing taken either.
    let who: Who<'_> = (&fake, &fake_secret);
    {
        for n in 1..4 {
            let r = peer.report(map_success(who, &done, 0, n, 2)).unwrap();
            assert!(!r.accepted, "a report for a finished job is refused");
        }
        let lost = pb::OutcomeReport {
            worker_id: who.0.into(),
            worker_secret: who.1.into(),
            attempt: attempt(&done, pb::TaskKind::Reduce, 0, 1),
            outcome: Some(pb::outcome_report::Outcome::Failed(pb::Failed {
                kind: pb::FailureKind::MapOutputLost as i32,
                message: "forged".into(),
                lost_map_index: Some(0),
                lost_map_attempt: 1,
                log_tail: Vec::new(),
            })),
        };
        assert!(!peer.report(lost).unwrap().accepted);
        let commit = pb::CommitRequest {
            worker_id: who.0.into(),
            worker_secret: who.1.into(),
            attempt: attempt(&done, pb::TaskKind::Reduce, 1, 1),
            upload_parts: vec!["forged".into()],
        };
        assert!(!peer.commit(commit).unwrap().granted);
    }
    assert_eq!(c.status(&done).unwrap()["state"], "succeeded");
    assert_eq!(snapshot(&c.path(""), &skip), before, "no file outside the store changed");

    // 2. Reports for attempts of a running job that the caller does not hold.
    std::fs::write(&hold, b"").unwrap();
    let running_out = c.path("running");
    let running = peer.submit(wordcount(&input, &running_out)).unwrap();
    assert!(eventually(Duration::from_secs(60), || c.status(&running).unwrap()["maps"]["done"].as_u64() >= Some(1)));
    for index in 0..3 {
        let r = peer.report(map_success(who, &running, index, 1, 2)).unwrap();
        assert!(!r.accepted, "a fake worker never gets a report taken");
        let e = peer.report(map_success((&real[1], ""), &running, index, 1, 2)).unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
    }
    let commit = pb::CommitRequest {
        worker_id: who.0.into(),
        worker_secret: who.1.into(),
        attempt: attempt(&running, pb::TaskKind::Reduce, 0, 1),
        ..Default::default()
    };
    assert!(!peer.commit(commit).unwrap().granted, "no reduce runs yet, so no commit");
    // Nor an upload to start: only a live part attempt gets one.
    let start = pb::StartPartRequest {
        worker_id: who.0.into(),
        worker_secret: who.1.into(),
        attempt: attempt(&running, pb::TaskKind::Reduce, 0, 1),
    };
    let w = &mut peer.workers;
    assert_eq!(peer.rt.block_on(w.start_part(start)).unwrap_err().code(), tonic::Code::FailedPrecondition);
    // More upload pieces than S3 allows, or a piece id over the name limit: refused outright.
    for upload_parts in [vec!["p".to_string(); 10_001], vec!["p".repeat(257)]] {
        let commit = pb::CommitRequest {
            worker_id: who.0.into(),
            worker_secret: who.1.into(),
            attempt: attempt(&running, pb::TaskKind::Reduce, 0, 1),
            upload_parts,
        };
        assert_eq!(peer.commit(commit).unwrap_err().code(), tonic::Code::InvalidArgument);
    }
    // Malformed ids and references are refused outright.
    let bad_ref = pb::OutcomeReport {
        worker_id: fake.clone(),
        worker_secret: fake_secret.clone(),
        attempt: Some(pb::AttemptRef { job_id: "../../etc".into(), kind: 1, index: 0, attempt: 1 }),
        outcome: Some(pb::outcome_report::Outcome::Killed(pb::Killed {})),
    };
    assert_eq!(peer.report(bad_ref).unwrap_err().code(), tonic::Code::InvalidArgument);

    // 3. Inputs being written by the running job are refused; so is its output.
    let mut reading = wordcount(&running_out, &c.path("reader"));
    reading.inputs = vec![file_url(&running_out) + "/"];
    let e = peer.submit(reading).unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e}");
    assert!(e.message().contains("being written"), "{e}");
    let e = peer.submit(wordcount(&input, &running_out)).unwrap_err();
    assert_eq!(e.code(), tonic::Code::AlreadyExists, "{e}");
    std::fs::remove_file(&hold).unwrap();
    let s = c.wait_job(&running, Duration::from_secs(120), |_| {}).unwrap();
    assert_eq!(s["state"], "succeeded", "{s}");
    assert_eq!(read_output(&running_out, 2, true), word_count(&input), "forged reports did not change the output");

    // 4. Oversized and malformed messages.
    let big = c.path("big");
    write_corpus(&big, 1, 120_000, 2).unwrap();
    let huge = pb::RegisterRequest { host: "h".repeat(10_000), slots: 1, ..Default::default() };
    assert_eq!(peer.register(huge).unwrap_err().code(), tonic::Code::InvalidArgument);
    let many =
        pb::RegisterRequest { host: "h".into(), slots: 1, jobs: vec!["j".into(); 100_000], ..Default::default() };
    assert_eq!(peer.register(many).unwrap_err().code(), tonic::Code::InvalidArgument);
    let no_slots = pb::RegisterRequest { host: "h".into(), slots: 0, ..Default::default() };
    assert_eq!(peer.register(no_slots).unwrap_err().code(), tonic::Code::InvalidArgument);
    for spec in [
        pb::JobSpec { job: "wordcount".into(), ..Default::default() },
        pb::JobSpec { inputs: vec!["/etc/passwd".into()], ..wordcount(&input, &c.path("x1")) },
        pb::JobSpec { input_format: "csv".into(), ..wordcount(&input, &c.path("x2")) },
        pb::JobSpec { reducers: u32::MAX, ..wordcount(&input, &c.path("x3")) },
        pb::JobSpec {
            params: [("stopwords".to_string(), "x".repeat(2 << 20))].into(),
            ..wordcount(&input, &c.path("x4"))
        },
        // Parameters the job's own code refuses, checked by the coordinator at submit.
        pb::JobSpec {
            params: [("no_such_param".to_string(), "1".to_string())].into(),
            ..wordcount(&input, &c.path("x5"))
        },
        pb::JobSpec {
            job: "sort".into(),
            params: [("__cuts".to_string(), "aéb".to_string())].into(),
            ..wordcount(&input, &c.path("x6"))
        },
        // The coordinator's own store is no job's input or output.
        pb::JobSpec { inputs: vec![file_url(&c.store_dir()) + "/"], ..wordcount(&input, &c.path("x8")) },
        pb::JobSpec { output: file_url(&c.store_dir().join("jobs/evil")), ..wordcount(&input, &c.path("x9")) },
        // A split per byte would be millions of map tasks.
        pb::JobSpec { split_size: 1, ..wordcount(&big, &c.path("x7")) },
    ] {
        let e = peer.submit(spec).unwrap_err();
        assert!(matches!(e.code(), tonic::Code::InvalidArgument | tonic::Code::PermissionDenied), "{e}");
    }

    // 5. A job no worker runs fails after --job-wait, and its output is free again.
    let unknown_out = c.path("unknown");
    let unknown = peer.submit(pb::JobSpec { job: "nosuchjob".into(), ..wordcount(&input, &unknown_out) }).unwrap();
    let s = c.wait_job(&unknown, Duration::from_secs(60), |_| {}).unwrap();
    assert_eq!(s["state"], "failed");
    assert!(s["error"].as_str().unwrap().contains("no worker runs job \"nosuchjob\""), "{s}");

    // 6. A bounded flood of idle connections.
    let addr = c.url().trim_start_matches("http://").to_string();
    let idle: Vec<std::net::TcpStream> = (0..300).filter_map(|_| std::net::TcpStream::connect(&addr).ok()).collect();
    assert!(idle.len() >= 100, "could open only {} connections", idle.len());

    // After all of it: every worker slot is free, nothing outside changed, and a word count
    // is exact.
    assert_eq!(snapshot(&c.path(""), &[c.store_dir(), running_out.clone(), c.path("unknown"), big.clone()]), {
        let mut b = before.clone();
        b.retain(|p, _| !p.starts_with(&running_out));
        b
    });
    assert_eq!(std::fs::read(victim.join("precious.txt")).unwrap(), b"do not delete");
    exact_wordcount(&mut c, &input, "after");
    drop(idle);
}

#[test]
fn the_path_policy_refuses_locations_outside_the_allowed_prefixes() {
    let base = tempfile::tempdir().unwrap();
    let allowed = base.path().join("data");
    let allowed_arg = format!("{}/", allowed.display());
    let mut c = TestCluster::start_with(Mode::Processes, 1, &["--allow-url", &allowed_arg]).unwrap();
    let input = allowed.join("input");
    write_corpus(&input, 2, 3_000, 9).unwrap();
    let outside = base.path().join("secret");
    write_corpus(&outside, 1, 100, 1).unwrap();
    let mut peer = Peer::connect(c.url());
    let cases = [
        wordcount(&outside, &allowed.join("o1")),
        wordcount(&input, &base.path().join("o2")),
        pb::JobSpec {
            inputs: vec![format!("file://{}/../secret/", allowed.display())],
            ..wordcount(&input, &allowed.join("o3"))
        },
        pb::JobSpec {
            inputs: vec![format!("file://{}/%2e%2e/secret/", allowed.display())],
            ..wordcount(&input, &allowed.join("o4"))
        },
        pb::JobSpec {
            side: [("stopwords".to_string(), file_url(&outside.join("part-0.txt")))].into(),
            ..wordcount(&input, &allowed.join("o5"))
        },
    ];
    for spec in cases {
        let e = peer.submit(spec).unwrap_err();
        assert!(e.code() == tonic::Code::PermissionDenied || e.code() == tonic::Code::InvalidArgument, "{e}");
    }
    // The CLI says so in one line and exits non-zero.
    let out = c.cli(
        "submit",
        &["--job", "wordcount", "--input", &dir_arg(&outside), "--output", &allowed.join("o6").display().to_string()],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("outside the allowed locations"), "{err}");
    // Inside the prefix all is well.
    let out_dir = allowed.join("ok");
    let id = c
        .submit(&[
            "--job",
            "wordcount",
            "--input",
            &dir_arg(&input),
            "--output",
            &out_dir.display().to_string(),
            "--reducers",
            "2",
        ])
        .unwrap();
    assert_eq!(c.wait_job(&id, Duration::from_secs(120), |_| {}).unwrap()["state"], "succeeded");
    assert_eq!(read_output(&out_dir, 2, true), word_count(&input));
}

#[test]
fn the_stock_binary_never_offers_the_crash_test_job_and_the_test_binary_does() {
    // Whatever the environment says: the test jobs are simply not in the stock binary.
    let jobs = |binary: &str| {
        let mut cmd = std::process::Command::new(quern_tests::binary(binary));
        cmd.arg("jobs").env("QUERN_TEST_JOBS", "1");
        String::from_utf8_lossy(&cmd.output().unwrap().stdout).into_owned()
    };
    let (stock, test) = (jobs("quern"), jobs("quern-test"));
    assert!(stock.contains("wordcount") && !stock.contains("crashtest"), "{stock}");
    assert!(test.contains("wordcount") && test.contains("crashtest"), "{test}");
}
