//! Misconfigured clusters fail fast, with one line naming the likely cause: a worker that
//! cannot use the store stops at registration, and a store the workers do not share fails
//! the job instead of re-running maps forever. Real processes on a real S3 API server.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use quern_tests::data::write_corpus;
use quern_tests::s3::S3Server;
use quern_tests::{TestCluster, binary, spawn_command, wait_bounded};

/// A worker process started by a test (outside the cluster's own, so that it can have an
/// environment of its own), killed on drop.
struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `quern worker` against `c` with `env` (its own `AWS_*`) and `args`, logging to
/// the cluster's directory.
fn worker(c: &TestCluster, env: &[(String, String)], args: &[&str], log: &str) -> Worker {
    let log = std::fs::File::create(c.path(log)).unwrap();
    let child = Command::new(binary("quern"))
        .args(["worker", "--coordinator", c.url()])
        .args(args)
        .envs(env.iter().cloned())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    Worker(child)
}

/// A loopback port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn a_worker_that_cannot_use_the_store_exits_at_registration_naming_it() {
    let s3 = S3Server::start().unwrap();
    let store = s3.url("store/");
    let c = TestCluster::start_on_store(1, &store, &[], s3.env()).unwrap();
    let mut env = s3.env();
    let wrong = format!("http://127.0.0.1:{}", closed_port());
    env.retain(|(k, _)| k != "AWS_ENDPOINT");
    env.push(("AWS_ENDPOINT".into(), wrong));
    let mut cmd = Command::new(binary("quern"));
    cmd.envs(env);
    let child = spawn_command(cmd, &["worker", "--coordinator", c.url(), "--host", "misconfigured"]);
    // The check gives up after two retries per step; a minute is far more than it needs.
    let out = wait_bounded(child, Duration::from_secs(120));
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("the worker said: {stderr}");
    assert!(!out.status.success(), "the worker must exit non-zero: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    let expected = format!("error: worker cannot use the store {store}: writing {store}workers/probe-misconfigured-");
    assert!(stderr.starts_with(&expected), "{stderr}");

    // The cluster is unharmed: its coordinator answers and its good worker runs a job.
    assert!(c.answers());
    let input = c.path("input");
    write_corpus(&input, 2, 5_000, 3).unwrap();
    let output = c.path("out").display().to_string();
    let args = ["--job", "wordcount", "--input", &format!("{}/", input.display()), "--output", &output, "--wait"];
    let done = c.cli("submit", &args);
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    // The worker that stopped is dropped once its heartbeats are missed.
    let dropped = quern_tests::eventually(Duration::from_secs(60), || {
        c.workers_json().as_array().is_some_and(|w| w.len() == 1 && w[0]["host"] == "host-0")
    });
    assert!(dropped, "{}", c.workers_json());
}

#[test]
fn a_store_the_workers_do_not_share_fails_the_job_naming_the_likely_cause() {
    // The coordinator's store and each worker's are the same URL, s3://quern/store/, on
    // three different S3 servers: what workers whose AWS_* settings differ see (and, for
    // file:// stores, hosts that each have their own /tmp/store).
    let (main, a, b) = (S3Server::start().unwrap(), S3Server::start().unwrap(), S3Server::start().unwrap());
    let store = main.url("store/");
    // Delay scheduling that waits as long as the test runs keeps every map (and every
    // re-run) on the worker whose disk holds its input, so neither store ever holds all
    // map outputs and no reducer can succeed by luck.
    let coordinator = ["--locality-wait", "120s", "--speculation", "off"];
    let c = TestCluster::start_on_store(0, &store, &coordinator, main.env()).unwrap();
    let input = c.path("input");
    for (host, seed) in [("a", 1), ("b", 2)] {
        write_corpus(&input.join(host), 2, 4_000, seed).unwrap();
    }
    let local = |h: &str| input.join(h).display().to_string();
    let (da, db) = (local("a"), local("b"));
    let _wa = worker(&c, &a.env(), &["--host", "a", "--local-data", &da], "worker-a.log");
    let _wb = worker(&c, &b.env(), &["--host", "b", "--local-data", &db], "worker-b.log");
    let registered =
        quern_tests::eventually(Duration::from_secs(60), || c.workers_json().as_array().is_some_and(|w| w.len() == 2));
    assert!(registered, "both workers register: {}", c.workers_json());

    let output = c.path("out").display().to_string();
    let inputs = format!("{da}/,{db}/");
    let args = ["--job", "wordcount", "--input", &inputs, "--output", &output, "--reducers", "2"];
    let id = c.submit(&args).unwrap();
    let mut c = c;
    let status = c.wait_job(&id, Duration::from_secs(180), |_| {}).unwrap();
    assert_eq!(status["state"], "failed", "{status}");
    let error = status["error"].as_str().unwrap();
    eprintln!("the job failed with: {error}");
    let cause = format!(
        "'s output was lost 4 times: do the workers share the store? \
         (every worker's AWS_* settings must reach the same S3 service for {store})"
    );
    assert!(error.starts_with("map ") && error.ends_with(&cause), "{error}");
    assert!(!error.contains('\n'));
    // The failed job left no part behind.
    assert!(!c.path("out").join("part-00000").exists());
}
