//! # quern-tests: the one test harness
//!
//! [`TestCluster`] starts a real coordinator and workers on 127.0.0.1 with a `file://` store
//! in a temporary directory (or another store, e.g. the S3 server of [`s3`]), either as
//! separate `quern-test` processes ([`Mode::Processes`]) or as the embedded [`LocalCluster`]
//! of `quern run` ([`Mode::InProcess`]), and offers the same operations on both: run CLI
//! commands against it, kill and start workers, read the output. Everything is torn down on
//! drop. [`data`] generates test corpora and computes expected results sequentially,
//! independently of the code under test. [`locality`] is the data-locality layout of the
//! scheduling tests and benchmark.
//!
//! `quern-test` (this crate's binary) is the `quern` CLI plus the test-only jobs of [`jobs`]
//! and the faults of [`faults`]: slow workers, a coordinator holding reduces back, and
//! object stores that fail, stall or corrupt chosen requests ([`faulty::FaultyStore`]).
//! The fault verbs ([`TestCluster::start_worker_with_faults`],
//! [`TestCluster::start_with_faults`]) give them to one process at a time.
#![allow(clippy::unwrap_used, missing_docs)]

pub mod bench;
pub mod data;
pub mod faults;
pub mod faulty;
pub mod jobs;
pub mod locality;
pub mod netns;
pub mod s3;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use quern_cli::local::LocalCluster;
use tempfile::TempDir;

use crate::faults::Faults;

/// The binary the cluster runs: the CLI with the test jobs and fault hooks.
const TEST_BINARY: &str = "quern-test";

/// How the cluster's nodes run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `quern-test coordinator` and `quern-test worker` processes.
    Processes,
    /// Coordinator and workers as tasks of a runtime in the test process: a [`LocalCluster`].
    InProcess,
}

/// A built binary of this workspace (`quern`, `quern-test`, `my-quern`): beside the running
/// executable, or one directory up from a test executable in `deps/`. `cargo test` builds
/// every workspace binary before the tests.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let file = format!("{name}{}", std::env::consts::EXE_SUFFIX);
    let here = exe.parent().expect("executable directory");
    let candidates = [here.join(&file), here.parent().map(|p| p.join(&file)).unwrap_or_default()];
    let found = candidates.iter().find(|p| p.is_file());
    found.cloned().unwrap_or_else(|| panic!("{file} is not built next to {}; build the workspace first", exe.display()))
}

/// Runs `quern` with `args`, returning its output.
pub fn quern(args: &[&str]) -> Output {
    run_binary("quern", args)
}

/// Runs a workspace binary with `args`, with a bounded run time.
pub fn run_binary(name: &str, args: &[&str]) -> Output {
    wait_bounded(spawn_binary(name, args), Duration::from_secs(300))
}

/// Starts a workspace binary with piped output.
pub fn spawn_binary(name: &str, args: &[&str]) -> Child {
    spawn_command(Command::new(binary(name)), args)
}

/// Starts `cmd` (a workspace binary, perhaps with environment set) with piped output.
pub fn spawn_command(mut cmd: Command, args: &[&str]) -> Child {
    cmd.args(args)
        // Errors reach the user as one line of our own; library warnings (a transport
        // hiccup on a loaded machine) must not add lines that the tests count.
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn binary")
}

/// Waits for a child, killing it after `limit`: a hung command fails the test instead of
/// hanging CI.
pub fn wait_bounded(child: Child, limit: Duration) -> Output {
    let pid = child.id();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if done_rx.recv_timeout(limit).is_err() {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    });
    let out = child.wait_with_output().expect("wait for child");
    let _ = done_tx.send(());
    let _ = watchdog.join();
    out
}

/// `GET path` over plain HTTP/1.1 from `base` (`http://HOST:PORT/`), with a bearer token if
/// given; returns the status code (0 if there was no answer) and the body. Bounded: a 30 s
/// read timeout.
pub fn http_get(base: &str, path: &str, token: Option<&str>) -> (u16, String) {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://").trim_end_matches('/');
    let Ok(mut s) = std::net::TcpStream::connect(addr) else { return (0, String::new()) };
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    if write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n").is_err() {
        return (0, String::new());
    }
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    let code = resp.split_whitespace().nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (code, body)
}

/// Polls `check` every 20 ms until it holds or `limit` has passed; whether it held. The one
/// bounded wait loop of the tests.
pub fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    loop {
        if check() {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Stdout of a successful command, or a panic showing what went wrong.
pub fn ok_stdout(out: &Output) -> String {
    assert!(out.status.success(), "command failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

enum Node {
    Process(Child),
    /// The coordinator, or the worker of this index, of the cluster's [`LocalCluster`].
    Local(usize),
}

impl Node {
    /// Kills a process; in-process nodes are stopped through their [`LocalCluster`].
    fn stop(&mut self) {
        if let Node::Process(c) = self {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A running cluster.
pub struct TestCluster {
    mode: Mode,
    dir: TempDir,
    url: String,
    coordinator: Node,
    workers: Vec<Node>,
    /// The in-process cluster (dropped first: its nodes stop before their runtime goes).
    local: Option<LocalCluster>,
    runtime: Option<tokio::runtime::Runtime>,
    store: String,
    coordinator_args: Vec<String>,
    /// Given to every start of a coordinator (restarts and standbys too).
    coordinator_faults: Faults,
    coordinator_starts: usize,
    standbys: Vec<Node>,
    worker_coordinator: Option<String>,
    client_args: Vec<String>,
    /// Set for every process the cluster starts (e.g. an S3 server's `AWS_*`).
    env: Vec<(String, String)>,
    /// The library client for `status` and `submit`, with the runtime that drives it, made
    /// at first use for the coordinator address it was made for.
    client: std::sync::Mutex<Option<LibClient>>,
}

/// A library client of one coordinator address, and a runtime to call it from sync tests.
struct LibClient {
    url: String,
    rt: std::sync::Arc<tokio::runtime::Runtime>,
    client: quern_api::submit::Client,
}

impl TestCluster {
    /// Starts a coordinator and `workers` workers.
    pub fn start(mode: Mode, workers: usize) -> Result<Self> {
        Self::start_with(mode, workers, &[])
    }

    /// Starts a coordinator with extra flags (processes only) and `workers` workers.
    pub fn start_with(mode: Mode, workers: usize, coordinator_args: &[&str]) -> Result<Self> {
        Self::start_with_clients(mode, workers, coordinator_args, &[])
    }

    /// Like [`start_with`](Self::start_with), and every worker process and [`cli`](Self::cli)
    /// command also gets `client_args` (e.g. `--tls-ca FILE`, `--token-file FILE`).
    pub fn start_with_clients(
        mode: Mode,
        workers: usize,
        coordinator_args: &[&str],
        client_args: &[&str],
    ) -> Result<Self> {
        Self::start_full(mode, workers, None, coordinator_args, client_args, Vec::new(), Faults::default())
    }

    /// Like [`start_with`](Self::start_with), with a coordinator that has `faults` (at every
    /// start, restarts and standbys included). In-process, only holding reduces applies.
    pub fn start_with_faults(mode: Mode, workers: usize, coordinator_args: &[&str], faults: Faults) -> Result<Self> {
        Self::start_full(mode, workers, None, coordinator_args, &[], Vec::new(), faults)
    }

    /// Processes on another store, `store` (e.g. `s3://bucket/store/`), with `env` set for
    /// every process the cluster starts, CLI commands included.
    pub fn start_on_store(
        workers: usize,
        store: &str,
        coordinator_args: &[&str],
        env: Vec<(String, String)>,
    ) -> Result<Self> {
        Self::start_on_store_with_faults(workers, store, coordinator_args, env, Faults::default())
    }

    /// Like [`start_on_store`](Self::start_on_store), with a coordinator that has `faults`.
    pub fn start_on_store_with_faults(
        workers: usize,
        store: &str,
        coordinator_args: &[&str],
        env: Vec<(String, String)>,
        faults: Faults,
    ) -> Result<Self> {
        Self::start_full(Mode::Processes, workers, Some(store), coordinator_args, &[], env, faults)
    }

    fn start_full(
        mode: Mode,
        workers: usize,
        store: Option<&str>,
        coordinator_args: &[&str],
        client_args: &[&str],
        env: Vec<(String, String)>,
        coordinator_faults: Faults,
    ) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("quern-test-").tempdir()?;
        let store = store.map(str::to_string).unwrap_or_else(|| format!("file://{}/store/", dir.path().display()));
        let (coordinator, url, local, runtime) = match mode {
            Mode::Processes => {
                let env = [env.clone(), coordinator_faults.env()].concat();
                let (child, url) = spawn_coordinator(&store, dir.path(), "127.0.0.1:0", coordinator_args, 0, &env)?;
                (Node::Process(child), url, None, None)
            }
            Mode::InProcess => {
                let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
                if !coordinator_faults.store.is_empty() {
                    bail!("store faults need a coordinator process of its own");
                }
                let hold = coordinator_faults.hold_reduces_while.clone();
                let local = LocalCluster::builder(crate::jobs::registry())
                    .store(quern_api::StoreUrl::parse(&store)?)
                    .workers(0)
                    .host_prefix("host")
                    // Tests here give workers jobs that misbehave on purpose, and check how
                    // the workers fail them: the coordinator takes every spec unbuilt.
                    .coordinator(move |cfg| {
                        cfg.jobs = None;
                        cfg.hold_reduces_while = hold;
                    });
                let local = rt.block_on(local.start())?;
                (Node::Local(0), local.url().to_string(), Some(local), Some(rt))
            }
        };
        let mut cluster = TestCluster {
            mode,
            dir,
            url,
            coordinator,
            workers: Vec::new(),
            local,
            runtime,
            store,
            coordinator_args: coordinator_args.iter().map(|s| s.to_string()).collect(),
            coordinator_faults,
            coordinator_starts: 1,
            standbys: Vec::new(),
            worker_coordinator: None,
            client_args: client_args.iter().map(|s| s.to_string()).collect(),
            env,
            client: std::sync::Mutex::new(None),
        };
        for _ in 0..workers {
            cluster.start_worker()?;
        }
        Ok(cluster)
    }

    /// Starts one more worker; returns its index.
    pub fn start_worker(&mut self) -> Result<usize> {
        self.start_worker_with(&[])
    }

    /// Starts one more in-process worker that runs `registry`'s jobs (such as test jobs that
    /// misbehave on purpose) instead of the built-ins; returns its index.
    pub fn start_worker_with_registry(&mut self, registry: quern_api::Registry) -> Result<usize> {
        if self.mode != Mode::InProcess {
            bail!("a worker with its own registry runs in-process only");
        }
        self.start_worker_running(&[], registry, &Faults::default())
    }

    /// Starts one more worker with extra flags (processes only); returns its index.
    pub fn start_worker_with(&mut self, extra: &[&str]) -> Result<usize> {
        self.start_worker_with_faults(extra, &Faults::default())
    }

    /// Starts one more worker that sleeps `d` before each task (a slow machine, to keep
    /// tasks running while a test acts); returns its index.
    pub fn start_worker_slow(&mut self, d: Duration) -> Result<usize> {
        self.start_worker_with_faults(&[], &Faults::slow(d))
    }

    /// Starts one more worker with extra flags (processes only) and `faults`; returns its
    /// index. Store faults need a worker process of its own; in-process, only the slowdown
    /// applies.
    pub fn start_worker_with_faults(&mut self, extra: &[&str], faults: &Faults) -> Result<usize> {
        self.start_worker_running(extra, jobs::registry(), faults)
    }

    fn start_worker_running(
        &mut self,
        extra: &[&str],
        registry: quern_api::Registry,
        faults: &Faults,
    ) -> Result<usize> {
        let i = self.workers.len();
        let node = match self.mode {
            Mode::Processes => {
                let log = std::fs::File::create(self.dir.path().join(format!("worker-{i}.log")))?;
                let child = Command::new(binary(TEST_BINARY))
                    .envs(faults.env())
                    .args(["worker", "--coordinator", self.worker_coordinator.as_deref().unwrap_or(&self.url)])
                    .args(if extra.contains(&"--host") {
                        Vec::new()
                    } else {
                        vec!["--host".to_string(), format!("host-{i}")]
                    })
                    .args(extra)
                    .args(&self.client_args)
                    .envs(self.env.iter().cloned())
                    .env("RUST_LOG", "info")
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(log)
                    .spawn()
                    .context("spawn worker")?;
                Node::Process(child)
            }
            Mode::InProcess => {
                if !faults.store.is_empty() {
                    bail!("store faults need a worker process of its own");
                }
                let local = self.local.as_mut().ok_or_else(|| anyhow!("the in-process cluster was stopped"))?;
                let slowdown = faults.slowdown;
                Node::Local(local.add_worker_configured(registry, |cfg| cfg.slowdown = slowdown))
            }
        };
        self.workers.push(node);
        Ok(i)
    }

    /// Stops worker `i` (SIGKILL for a process).
    pub fn kill_worker(&mut self, i: usize) {
        match self.workers.get_mut(i) {
            Some(Node::Local(j)) => {
                if let Some(local) = &mut self.local {
                    local.stop_worker(*j);
                }
            }
            Some(w) => w.stop(),
            None => {}
        }
    }

    /// Sends a signal to the (first) coordinator process.
    pub fn signal_coordinator(&self, signal: i32) {
        if let Node::Process(c) = &self.coordinator {
            // SAFETY: kill(2) on the pid of a child we own; no memory is involved.
            unsafe { libc::kill(c.id() as i32, signal) };
        }
    }

    /// The (first) coordinator's process id (processes only), e.g. to read its memory use.
    pub fn coordinator_pid(&self) -> Option<u32> {
        match &self.coordinator {
            Node::Process(c) => Some(c.id()),
            Node::Local(_) => None,
        }
    }

    /// Whether the (first) coordinator process has exited.
    pub fn coordinator_exited(&mut self) -> bool {
        match &mut self.coordinator {
            Node::Process(c) => !matches!(c.try_wait(), Ok(None)),
            Node::Local(_) => self.local.is_none(),
        }
    }

    /// The (first) coordinator process's exit code once it has exited (None while it runs,
    /// or when a signal ended it).
    pub fn coordinator_exit_code(&mut self) -> Option<i32> {
        match &mut self.coordinator {
            Node::Process(c) => c.try_wait().ok().flatten().and_then(|s| s.code()),
            Node::Local(_) => None,
        }
    }

    /// Kills the coordinator with SIGKILL (in-process: stops the whole embedded cluster).
    pub fn kill_coordinator(&mut self) {
        self.coordinator.stop();
        if matches!(self.coordinator, Node::Local(_)) {
            self.local = None;
        }
    }

    /// Starts the coordinator again on the same address and store; returns how long it took
    /// until it listened (it has replayed its journal by then).
    pub fn restart_coordinator(&mut self) -> Result<Duration> {
        self.coordinator.stop();
        let listen = self.url.trim_start_matches("http://").to_string();
        let args: Vec<&str> = self.coordinator_args.iter().map(String::as_str).collect();
        let started = std::time::Instant::now();
        let env = self.coordinator_env();
        let (child, url) =
            spawn_coordinator(&self.store, self.dir.path(), &listen, &args, self.coordinator_starts, &env)?;
        let took = started.elapsed();
        self.coordinator_starts += 1;
        self.coordinator = Node::Process(child);
        self.url = url;
        Ok(took)
    }

    /// Like [`restart_coordinator`](Self::restart_coordinator), with these flags from now on
    /// instead of the ones the cluster started with.
    pub fn restart_coordinator_with(&mut self, coordinator_args: &[&str]) -> Result<Duration> {
        self.coordinator_args = coordinator_args.iter().map(|s| s.to_string()).collect();
        self.restart_coordinator()
    }

    /// Starts a second coordinator on the same store (it waits as a standby while the first
    /// holds the lease); returns its address. Its log is `coordinator_log(n)` for the `n`
    /// it returns second.
    pub fn start_standby(&mut self) -> Result<(String, usize)> {
        let args: Vec<&str> = self.coordinator_args.iter().map(String::as_str).collect();
        let n = self.coordinator_starts;
        let env = self.coordinator_env();
        let (child, url) = spawn_coordinator(&self.store, self.dir.path(), "127.0.0.1:0", &args, n, &env)?;
        self.coordinator_starts += 1;
        self.standbys.push(Node::Process(child));
        Ok((url, n))
    }

    /// The environment of a coordinator process: the cluster's, and its faults.
    fn coordinator_env(&self) -> Vec<(String, String)> {
        [self.env.clone(), self.coordinator_faults.env()].concat()
    }

    /// What workers started from now on get as `--coordinator` (e.g. `A,B`).
    pub fn set_worker_coordinator(&mut self, addrs: &str) {
        self.worker_coordinator = Some(addrs.to_string());
    }

    /// The coordinator's log of its `n`-th start (processes only).
    pub fn coordinator_log(&self, n: usize) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("coordinator-{n}.log"))).unwrap_or_default()
    }

    /// Sends a signal to worker process `i` (SIGSTOP pauses it like a partitioned machine,
    /// SIGCONT brings the zombie back).
    pub fn signal_worker(&self, i: usize, signal: i32) {
        if let Some(Node::Process(c)) = self.workers.get(i) {
            // SAFETY: kill(2) on the pid of a child we own; no memory is involved.
            unsafe { libc::kill(c.id() as i32, signal) };
        }
    }

    /// Whether worker process `i` has exited (crashed).
    pub fn worker_exited(&mut self, i: usize) -> bool {
        match self.workers.get_mut(i) {
            Some(Node::Process(c)) => !matches!(c.try_wait(), Ok(None)),
            _ => false,
        }
    }

    /// Number of workers started so far (live or not).
    pub fn workers_started(&self) -> usize {
        self.workers.len()
    }

    /// Worker `i`'s log (processes only).
    pub fn worker_log(&self, i: usize) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("worker-{i}.log"))).unwrap_or_default()
    }

    /// Polls `status` until the job ends, at most `limit` (bounded: a hung job fails the
    /// test). `each` runs between polls, for tests that inject faults while a job runs.
    pub fn wait_job(
        &mut self,
        job: &str,
        limit: Duration,
        mut each: impl FnMut(&mut Self),
    ) -> Result<serde_json::Value> {
        let start = std::time::Instant::now();
        while start.elapsed() < limit {
            let s = self.status(job)?;
            if matches!(s["state"].as_str(), Some("succeeded" | "failed" | "killed")) {
                return Ok(s);
            }
            each(self);
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("job {job} did not end within {limit:?}")
    }

    /// `quern workers --json` (null if the call fails).
    pub fn workers_json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.cli("workers", &["--json"]).stdout).unwrap_or_default()
    }

    /// The first job of `quern list --json` (null if none or the call fails).
    pub fn first_job(&self) -> serde_json::Value {
        let list: serde_json::Value = serde_json::from_slice(&self.cli("list", &["--json"]).stdout).unwrap_or_default();
        list.get(0).cloned().unwrap_or_default()
    }

    /// Whether the coordinator answers calls (it may be a standby, or replaying).
    pub fn answers(&self) -> bool {
        self.cli("list", &[]).status.success()
    }

    /// `quern tasks --json` of a job.
    pub fn tasks(&self, job: &str) -> Result<Vec<serde_json::Value>> {
        let out = self.cli("tasks", &[job, "--json"]);
        if !out.status.success() {
            bail!("tasks failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout)?)
    }

    /// Submits without waiting; returns the job id. Goes through the library, with the
    /// flags read as `quern submit` reads them; the CLI itself submits when the cluster's
    /// processes need an environment (a store's credentials) this process lacks, and for
    /// `--wait` or flags the CLI refuses (its exact output is then the point).
    pub fn submit(&self, args: &[&str]) -> Result<String> {
        let mut all = vec!["quern", "submit", "--coordinator", &self.url];
        all.extend_from_slice(args);
        all.extend(self.client_args.iter().map(String::as_str));
        let parsed = <quern_cli::args::Cli as clap::Parser>::try_parse_from(&all).ok().map(|c| c.command);
        if let Some(quern_cli::args::Command::Submit(a)) = parsed
            && self.env.is_empty()
            && !a.wait
        {
            let (rt, _) = self.lib_client(false)?;
            let registry = crate::jobs::registry();
            let job = rt.block_on(quern_cli::client_cmds::submit_job(&a, &registry));
            return Ok(job.map_err(|e| anyhow!("submit failed: error: {e:#}"))?.id().to_string());
        }
        let out = self.cli("submit", args);
        if !out.status.success() {
            bail!("submit failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// The status pages' address (`--http`), as the coordinator printed it at its first start.
    pub fn http_url(&self) -> Option<String> {
        self.http_url_of(0)
    }

    /// The status pages' address of the coordinator's `n`-th start (a standby's, say).
    pub fn http_url_of(&self, n: usize) -> Option<String> {
        self.coordinator_log(n).lines().find_map(|l| l.strip_prefix("status pages on ").map(|u| u.trim().to_string()))
    }

    /// The coordinator's address.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A fresh directory for test data.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The store's URL.
    pub fn store_url(&self) -> &str {
        &self.store
    }

    /// What is left of jobs' intermediate data (`STORE/jobs/`, a `file://` store) once the
    /// cleanup that follows a job's end has had up to 30 s: empty when it all went.
    pub fn scratch_left(&self) -> Vec<PathBuf> {
        let jobs = self.store_dir().join("jobs");
        eventually(Duration::from_secs(30), || data::files_under(&jobs).is_empty());
        data::files_under(&jobs)
    }

    /// The store's root directory (of a `file://` store).
    pub fn store_dir(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// Runs `quern-test CMD --coordinator URL ARGS...`.
    pub fn cli(&self, cmd: &str, args: &[&str]) -> Output {
        wait_bounded(self.spawn_cli(cmd, args), Duration::from_secs(300))
    }

    /// Starts `quern-test CMD --coordinator URL ARGS...` (e.g. a `submit --wait` to crash
    /// under).
    pub fn spawn_cli(&self, cmd: &str, args: &[&str]) -> Child {
        let mut all = vec![cmd, "--coordinator", &self.url];
        all.extend_from_slice(args);
        all.extend(self.client_args.iter().map(String::as_str));
        let mut cmd = Command::new(binary(TEST_BINARY));
        cmd.envs(self.env.iter().cloned());
        spawn_command(cmd, &all)
    }

    /// Attempts of every succeeded task of a job, by (kind, index).
    pub fn succeeded_tasks(&self, job: &str) -> Result<std::collections::BTreeMap<(String, u64), u64>> {
        let task = |t: &serde_json::Value| -> Option<((String, u64), u64)> {
            Some(((t["kind"].as_str()?.to_string(), t["index"].as_u64()?), t["attempts"].as_u64()?))
        };
        self.tasks(job)?
            .iter()
            .filter(|t| t["state"] == "succeeded")
            .map(|t| task(t).ok_or_else(|| anyhow!("malformed task {t}")))
            .collect()
    }

    /// A job's status as `quern status --json` prints it, read through the library client.
    pub fn status(&self, job: &str) -> Result<serde_json::Value> {
        let id = quern_api::JobId::parse(job).map_err(|e| anyhow!("status failed: error: {e}"))?;
        let ask = |fresh: bool| -> Result<serde_json::Value> {
            let (rt, client) = self.lib_client(fresh)?;
            let status = rt.block_on(client.handle(id.clone()).status());
            let status = status.map_err(|e| quern_cli::client_cmds::cli_error(e, None));
            Ok(status.map_err(|e| anyhow!("status failed: error: {e:#}"))?.to_json())
        };
        // A connection kept from before a coordinator restarted may fail once; a new one
        // answers as a new `quern status` process would.
        ask(false).or_else(|_| ask(true))
    }

    /// The library client of the coordinator's current address (a new one if `fresh`), with
    /// the connection flags the CLI commands get, read as the CLI reads them.
    fn lib_client(&self, fresh: bool) -> Result<(std::sync::Arc<tokio::runtime::Runtime>, quern_api::submit::Client)> {
        let mut slot = self.client.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(c) = slot.as_ref().filter(|c| !fresh && c.url == self.url) {
            return Ok((c.rt.clone(), c.client.clone()));
        }
        let mut all = vec!["quern", "status", "--coordinator", &self.url, "job_0"];
        all.extend(self.client_args.iter().map(String::as_str));
        let conn = match <quern_cli::args::Cli as clap::Parser>::try_parse_from(&all)?.command {
            quern_cli::args::Command::Status(a) => a.conn,
            _ => bail!("the status command did not parse as one"),
        };
        let client = quern_cli::client_cmds::client(&conn)?;
        let rt = std::sync::Arc::new(tokio::runtime::Builder::new_current_thread().enable_all().build()?);
        *slot = Some(LibClient { url: self.url.clone(), rt: rt.clone(), client: client.clone() });
        Ok((rt, client))
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for w in &mut self.workers {
            w.stop();
        }
        self.coordinator.stop();
        for s in &mut self.standbys {
            s.stop();
        }
        self.local = None;
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

/// Starts `quern-test coordinator` and reads its address from its first stderr line: no sleeps,
/// no polling for a file.
fn spawn_coordinator(
    store: &str,
    dir: &Path,
    listen: &str,
    extra: &[&str],
    n: usize,
    env: &[(String, String)],
) -> Result<(Child, String)> {
    let mut child = Command::new(binary(TEST_BINARY))
        .envs(env.iter().cloned())
        .args(["coordinator", "--listen", listen, "--store", store])
        .args(extra)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("spawn coordinator")?;
    let log = dir.join(format!("coordinator-{n}.log"));
    match listening_url(&mut child, &log) {
        Ok(url) => Ok((child, url)),
        Err(e) => {
            let _ = child.kill();
            Err(e)
        }
    }
}

/// Reads a starting coordinator's address from its stderr (the first line that says where it
/// listens), at most 60 s, copying every line to the file `log` as it goes.
pub fn listening_url(child: &mut Child, log: &Path) -> Result<String> {
    let stderr = child.stderr.take().ok_or_else(|| anyhow!("no stderr"))?;
    let mut file = std::fs::File::create(log)?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("coordinator listening on ")
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(url.trim().to_string());
            }
            let _ = std::io::Write::write_all(&mut file, format!("{line}\n").as_bytes());
        }
    });
    rx.recv_timeout(Duration::from_secs(60)).map_err(|_| anyhow!("coordinator did not start; see {}", log.display()))
}
