//! Robustness against hostile or broken job specs, user code and input: a job whose builder
//! or map panics, cut points that are not hex sent past the CLI over raw gRPC, a
//! decompression bomb, and CLI output into a closed pipe. Each ends with a clear error; the
//! cluster keeps every slot, and the next word count is exact.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use quern_api::{Job, JobError, MapContext, OutputContext, ParamError, Params, Record, Registry, pb};
use quern_tests::data::{read_output, word_count, write_corpus};
use quern_tests::{Mode, TestCluster, binary, eventually, wait_bounded};

/// A job whose map panics on every record (its builder is fine).
struct MapPanics;

impl Job for MapPanics {
    type Key = String;
    type Value = u64;

    fn map(&self, rec: &Record<'_>, _: &mut MapContext<'_, String, u64>) -> Result<(), JobError> {
        panic!("map blew up on purpose at offset {}", rec.offset);
    }

    fn reduce(&self, _: String, _: &mut dyn Iterator<Item = u64>, _: &mut OutputContext<'_>) -> Result<(), JobError> {
        Ok(())
    }
}

/// The built-in jobs plus two that panic: `buildpanic` while being built from its
/// parameters, `mappanic` in its map.
fn hostile_registry() -> Registry {
    let mut r = quern_examples::builtin();
    r.register("buildpanic", "its builder panics", &["spare"], |p: &Params| -> Result<MapPanics, ParamError> {
        if p.get("spare").is_none() {
            panic!("builder blew up on purpose");
        }
        Ok(MapPanics)
    });
    r.register("mappanic", "its map panics", &[], |_: &Params| Ok(MapPanics));
    r
}

fn url_of(dir: &Path) -> String {
    format!("file://{}/", dir.display())
}

/// Submits straight over gRPC, as an attacker would, skipping every check the CLI makes.
fn raw_submit(coordinator: &str, job: &str, input: &Path, output: &Path, params: &[(&str, &str)]) -> String {
    try_raw_submit(coordinator, job, input, output, params).unwrap()
}

/// [`raw_submit`], returning the coordinator's refusal.
fn try_raw_submit(
    coordinator: &str,
    job: &str,
    input: &Path,
    output: &Path,
    params: &[(&str, &str)],
) -> Result<String, tonic::Status> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut client =
            quern_api::client::job_client(coordinator, &quern_api::client::ConnectOptions::default()).await.unwrap();
        let spec = pb::JobSpec {
            job: job.into(),
            inputs: vec![url_of(input)],
            output: format!("file://{}", output.display()),
            reducers: 2,
            params: params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..Default::default()
        };
        client.submit(pb::SubmitRequest { spec: Some(spec) }).await.map(|r| r.into_inner().job_id)
    })
}

/// Waits for a job that must fail, and returns its error.
fn failed_with(c: &mut TestCluster, id: &str) -> String {
    let s = c.wait_job(id, Duration::from_secs(120), |_| {}).unwrap();
    assert_eq!(s["state"], "failed", "{s}");
    s["error"].as_str().unwrap_or_default().to_string()
}

/// After whatever came before: no worker still counts a running attempt, and a word count
/// runs its maps on every worker and is exact.
fn cluster_is_whole(c: &mut TestCluster, input: &Path, out: &Path, workers: usize) {
    let idle = eventually(Duration::from_secs(30), || {
        let ws = c.workers_json();
        ws.as_array().is_some_and(|ws| ws.len() == workers && ws.iter().all(|w| w["running"] == 0))
    });
    assert!(idle, "attempts still counted as running: {}", c.workers_json());
    let (i, o) = (url_of(input), out.display().to_string());
    let id = c
        .submit(&["--job", "wordcount", "--input", &i, "--output", &o, "--reducers", "2", "--split-size", "2KiB"])
        .unwrap();
    let s = c.wait_job(&id, Duration::from_secs(120), |_| {}).unwrap();
    assert_eq!(s["state"], "succeeded", "{s}");
    assert_eq!(read_output(out, 2, true), word_count(input));
    let ran_on: BTreeSet<String> = c
        .tasks(&id)
        .unwrap()
        .iter()
        .filter(|t| t["kind"] == "map")
        .flat_map(|t| t["workers"].as_array().cloned().unwrap_or_default())
        .filter_map(|w| w.as_str().map(str::to_string))
        .collect();
    assert_eq!(ran_on.len(), workers, "maps ran only on {ran_on:?}");
}

#[test]
fn panicking_builders_and_maps_fail_their_jobs_and_every_slot_lives_on() {
    let mut c = TestCluster::start(Mode::InProcess, 0).unwrap();
    for _ in 0..2 {
        c.start_worker_with_registry(hostile_registry()).unwrap();
    }
    let input = c.path("input");
    write_corpus(&input, 4, 8_000, 5).unwrap();

    // Twice each: with the old worker, two of these took both slots for good.
    for n in 0..2 {
        let id = raw_submit(c.url(), "buildpanic", &input, &c.path(&format!("b{n}")), &[]);
        let error = failed_with(&mut c, &id);
        assert!(error.contains("builder blew up on purpose"), "{error}");
        let id = raw_submit(c.url(), "mappanic", &input, &c.path(&format!("m{n}")), &[]);
        let error = failed_with(&mut c, &id);
        assert!(error.contains("map blew up on purpose"), "{error}");
    }
    // The attack that found the hole: cut points cutting a character in half.
    let id = raw_submit(c.url(), "sort", &input, &c.path("s"), &[("__cuts", "a\u{e9}b")]);
    let error = failed_with(&mut c, &id);
    assert!(error.contains("__cuts"), "{error}");

    let wc = c.path("wc");
    cluster_is_whole(&mut c, &input, &wc, 2);
}

#[test]
fn hostile_cut_points_fail_in_the_cli_and_over_grpc_on_a_real_cluster() {
    let mut c = TestCluster::start(Mode::Processes, 2).unwrap();
    let input = c.path("input");
    write_corpus(&input, 3, 6_000, 9).unwrap();
    let (i, o) = (url_of(&input), c.path("cli-out").display().to_string());

    // Through the CLI: one line, exit 1, before anything is submitted.
    let out = c.cli("submit", &["--job", "sort", "--input", &i, "--output", &o, "--param", "__cuts=a\u{e9}b"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("__cuts") && !err.contains("panicked"), "{err}");
    let out =
        quern_tests::quern(&["run", "--job", "sort", "--input", &i, "--output", &o, "--param", "__cuts=zz,\u{1F600}"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("__cuts") && !err.contains("panicked"), "{err}");

    // Over raw gRPC, twice: the coordinator builds the job at submit (its binary has it) and
    // refuses the spec with the job's own error; the workers never see it.
    for n in 0..2 {
        let e =
            try_raw_submit(c.url(), "sort", &input, &c.path(&format!("s{n}")), &[("__cuts", "a\u{e9}b")]).unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
        assert!(e.message().contains("__cuts"), "{e}");
    }
    let wc = c.path("wc");
    cluster_is_whole(&mut c, &input, &wc, 2);
    for w in 0..2 {
        assert!(!c.worker_log(w).contains("panicked"), "worker {w} panicked:\n{}", c.worker_log(w));
    }
}

#[test]
fn a_gzip_bomb_fails_its_job_with_a_clear_error() {
    let mut c = TestCluster::start(Mode::InProcess, 1).unwrap();
    let input = c.path("bomb");
    std::fs::create_dir_all(&input).unwrap();
    // 100 MiB of zeros and no newline, about 100 KiB compressed.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..100 {
        gz.write_all(&zeros).unwrap();
    }
    std::fs::write(input.join("bomb.txt.gz"), gz.finish().unwrap()).unwrap();
    let (i, o) = (url_of(&input), c.path("out").display().to_string());
    let id = c.submit(&["--job", "wordcount", "--input", &i, "--output", &o]).unwrap();
    let error = failed_with(&mut c, &id);
    assert!(error.contains("bomb.txt.gz") && error.contains("line longer than"), "{error}");
    assert!(!c.path("out").join("_SUCCESS").exists());
}

/// Runs `quern ARGS` with its stdout (or stderr) the write end of a pipe whose read end is
/// already closed, as `quern ... | head -c 1500` is once `head` has had its fill.
fn into_closed_pipe(args: &[&str], close_stderr: bool) -> std::process::Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut cmd = Command::new(binary("quern"));
    cmd.args(args).env("RUST_LOG", "error").env("RUST_BACKTRACE", "1").stdin(Stdio::null());
    if close_stderr {
        cmd.stdout(Stdio::piped()).stderr(writer);
    } else {
        cmd.stdout(writer).stderr(Stdio::piped());
    }
    wait_bounded(cmd.spawn().unwrap(), Duration::from_secs(60))
}

#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    let mut c = TestCluster::start(Mode::InProcess, 1).unwrap();
    let input = c.path("input");
    write_corpus(&input, 2, 20_000, 3).unwrap();
    let (i, o) = (url_of(&input), c.path("out").display().to_string());
    let id = c.submit(&["--job", "wordcount", "--input", &i, "--output", &o, "--split-size", "1KiB"]).unwrap();
    assert_eq!(c.wait_job(&id, Duration::from_secs(120), |_| {}).unwrap()["state"], "succeeded");

    let url = c.url().to_string();
    let commands: [&[&str]; 6] = [
        &["tasks", "--coordinator", &url, &id, "--json"],
        &["tasks", "--coordinator", &url, &id],
        &["status", "--coordinator", &url, &id],
        &["list", "--coordinator", &url, "--json"],
        &["workers", "--coordinator", &url],
        &["jobs"],
    ];
    for args in commands {
        let out = into_closed_pipe(args, false);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !err.contains("panicked") && !err.contains("backtrace") && !err.contains("Broken pipe"),
            "{args:?}: {err}"
        );
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
    }
    // An error with stderr closed still exits 1, not with a panic's 101.
    let out = into_closed_pipe(&["status", "--coordinator", "http://127.0.0.1:1", "some-job"], true);
    assert_eq!(out.status.code(), Some(1));
    // Without a closed pipe the same commands still print everything.
    let tasks = c.tasks(&id).unwrap();
    assert!(tasks.len() > 10, "{} tasks", tasks.len());
}
