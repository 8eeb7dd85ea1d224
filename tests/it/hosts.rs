//! A cluster of separate hosts: the coordinator and three workers each in its own network
//! namespace (`quern_tests::netns`), with its own address in 192.0.2.0/24, temporary and
//! working directories, sharing nothing but an S3 server in the root namespace. Input,
//! output and store are all on `s3://`; outputs are compared with sequential computations.
//! One worker's host is killed mid-job (every process in it, then the namespace) and the
//! job still finishes exactly.
//!
//! Needs root, and fails without it. The tests run one at a time (each starts five
//! processes) and print their jobs' wall times: `cargo test -p quern-tests --test hosts --
//! --nocapture`.

use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use quern_tests::data::{read_output, word_count, write_corpus};
use quern_tests::faults::Faults;
use quern_tests::netns::{Host, Network, Proc};
use quern_tests::s3::S3Server;
use quern_tests::{binary, eventually, ok_stdout, spawn_command, wait_bounded};

/// One test at a time: each runs a whole cluster, and the wall times it reports should be
/// its own.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The S3 server, a coordinator host and three worker hosts. Field order is drop order:
/// processes, then the network (which kills anything left in its namespaces), then S3.
struct Cluster {
    _coordinator: Proc,
    workers: Vec<(Host, Proc)>,
    url: String,
    net: Network,
    s3: S3Server,
}

impl Cluster {
    /// Starts everything on block `block` of TEST-NET-1; `coordinator_args` are extra
    /// flags, and every worker has `worker_faults`.
    fn start(tag: char, block: u8, coordinator_args: &[&str], worker_faults: &Faults) -> Cluster {
        let mut net = Network::new(tag, block).unwrap_or_else(|e| panic!("{e:#}"));
        let s3 = S3Server::start_on(&net.gateway().to_string()).unwrap();
        let quern = binary("quern-test");
        let host = net.host("coordinator").unwrap();
        let listen = format!("{}:0", host.addr);
        let mut args = vec!["coordinator", "--listen", &listen, "--store", "s3://quern/store/"];
        args.extend_from_slice(coordinator_args);
        let mut cmd = host.command(&quern, &args, &process_env(&s3));
        let mut child = cmd.stderr(Stdio::piped()).spawn().unwrap();
        let url = listening_url(&mut child, &net.dir().join("coordinator.log"));
        let coordinator = Proc(child);
        let mut workers = Vec::new();
        for i in 0..3 {
            let host = net.host(&format!("worker-{i}")).unwrap();
            let args = ["worker", "--coordinator", &url, "--host", &host.name];
            let log = net.dir().join(format!("worker-{i}.log"));
            let env = [process_env(&s3), worker_faults.env()].concat();
            let proc = host.spawn(&quern, &args, &env, &log).unwrap();
            workers.push((host, proc));
        }
        let c = Cluster { _coordinator: coordinator, workers, url, net, s3 };
        let registered =
            eventually(Duration::from_secs(60), || c.workers_json().as_array().is_some_and(|w| w.len() == 3));
        assert!(registered, "three workers register: {}", c.workers_json());
        c
    }

    /// `quern CMD --coordinator URL ARGS` from the root namespace (a client on yet another
    /// machine), with the S3 settings it needs to sample input.
    fn cli(&self, cmd: &str, args: &[&str]) -> Output {
        let mut all = vec![cmd, "--coordinator", &self.url];
        all.extend_from_slice(args);
        let mut command = Command::new(binary("quern"));
        command.envs(process_env(&self.s3));
        wait_bounded(spawn_command(command, &all), Duration::from_secs(300))
    }

    fn workers_json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.cli("workers", &["--json"]).stdout).unwrap_or_default()
    }

    fn status(&self, job: &str) -> serde_json::Value {
        serde_json::from_str(&ok_stdout(&self.cli("status", &[job, "--json"]))).unwrap()
    }

    /// Runs a job to its end with `submit --wait`; returns its status and wall time.
    fn run(&self, args: &[&str]) -> (serde_json::Value, Duration) {
        let mut all = args.to_vec();
        all.extend(["--wait", "--json"]);
        let started = Instant::now();
        let out = self.cli("submit", &all);
        let took = started.elapsed();
        let status: serde_json::Value = serde_json::from_str(&ok_stdout(&out)).unwrap();
        assert_eq!(status["state"], "succeeded", "{status}");
        eprintln!("{:>6.2}s  quern submit {}", took.as_secs_f64(), all.join(" "));
        (status, took)
    }

    /// How many workers completed at least one task.
    fn busy_workers(&self) -> usize {
        let workers = self.workers_json();
        workers.as_array().unwrap().iter().filter(|w| w["completed"].as_u64() > Some(0)).count()
    }
}

/// What every Quern process of the cluster gets: the S3 settings and nothing else.
fn process_env(s3: &S3Server) -> Vec<(String, String)> {
    let mut env = s3.env();
    env.push(("RUST_LOG".into(), "info".into()));
    env
}

/// Reads the coordinator's address from its stderr, copying every line to `log`.
fn listening_url(child: &mut std::process::Child, path: &std::path::Path) -> String {
    quern_tests::listening_url(child, path).unwrap_or_else(|e| panic!("{e}: {}", read(path)))
}

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The 100-byte records of every part under `prefix`, concatenated in name order.
fn records(s3: &S3Server, prefix: &str) -> Vec<u8> {
    let objects = s3.download(prefix).unwrap();
    let names: Vec<&str> = objects.iter().map(|(k, _)| k.as_str()).collect();
    assert!(names.iter().any(|n| n.ends_with("/_SUCCESS")), "{names:?}");
    objects.iter().filter(|(k, _)| k.contains("/part-")).flat_map(|(_, b)| b.iter().copied()).collect()
}

/// TeraValidate's checksum, computed here: the sum of the records' CRC-32s.
fn checksum(data: &[u8]) -> String {
    let sum = data.chunks(100).fold(0u128, |acc, r| acc.wrapping_add(u128::from(crc32fast::hash(r))));
    format!("{sum:x}")
}

#[test]
fn wordcount_and_terasort_on_separate_hosts_sharing_only_s3_are_exact() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let c = Cluster::start('a', 14, &[], &Faults::default());

    // Word count.
    let local = c.net.dir().join("corpus");
    write_corpus(&local, 8, 250_000, 11).unwrap();
    let input = c.s3.upload_dir(&local, "wc-in").unwrap();
    let output = c.s3.url("wc-out");
    let wc = ["--job", "wordcount", "--input", &input, "--output", &output, "--reducers", "3"];
    let (status, _) = c.run(&[&wc[..], &["--split-size", "64KiB"]].concat());
    assert!(status["maps"]["total"].as_u64() >= Some(30), "{status}");
    let got = c.net.dir().join("wc-got");
    c.s3.download_dir("wc-out", &got).unwrap();
    assert_eq!(read_output(&got, 3, true), word_count(&local));
    assert!(c.busy_workers() >= 2, "tasks ran on several hosts: {}", c.workers_json());

    // TeraGen, TeraSort, TeraValidate.
    let (gen_url, sorted_url, check_url) = (c.s3.url("tera-in"), c.s3.url("tera-out"), c.s3.url("tera-check"));
    c.run(&["--job", "teragen", "--param", "rows=200000", "--maps", "3", "--output", &gen_url]);
    let sort = ["--job", "terasort", "--input", &format!("{gen_url}/"), "--output", &sorted_url];
    c.run(&[&sort[..], &["--reducers", "3", "--split-size", "1MiB"]].concat());
    let validate = ["--job", "teravalidate", "--input", &format!("{sorted_url}/"), "--output", &check_url];
    c.run(&validate);

    let generated = records(&c.s3, "tera-in");
    assert_eq!(generated.len(), 200_000 * 100);
    assert_eq!(&generated[..10], b"JimGrayRIP");
    let mut expected: Vec<&[u8]> = generated.chunks(100).collect();
    expected.sort_by(|a, b| a[..10].cmp(&b[..10]).then(a.cmp(b)));
    let sorted = records(&c.s3, "tera-out");
    assert!(sorted.chunks(100).eq(expected.iter().copied()), "terasort's parts are the sorted records");
    let check = c.s3.download("tera-check").unwrap();
    let part = check.iter().find(|(k, _)| k.ends_with("/part-00000")).unwrap();
    let report = String::from_utf8(part.1.clone()).unwrap();
    assert_eq!(report.trim_end(), format!("checksum\t{}", checksum(&generated)), "and no errors");
}

#[test]
fn a_worker_host_that_dies_mid_job_changes_nothing() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // Slow tasks keep the job running while the test picks its victim.
    let slow = Faults::slow(Duration::from_millis(300));
    let mut c = Cluster::start('b', 13, &["--heartbeat-timeout", "3s"], &slow);
    let local = c.net.dir().join("corpus");
    write_corpus(&local, 6, 40_000, 5).unwrap();
    let input = c.s3.upload_dir(&local, "in").unwrap();
    let output = c.s3.url("out");
    let args =
        ["--job", "wordcount", "--input", &input, "--output", &output, "--reducers", "3", "--split-size", "8KiB"];
    let started = Instant::now();
    let job = String::from_utf8(c.cli("submit", &args).stdout).unwrap().trim().to_string();
    assert!(!job.is_empty(), "submitted");

    // A worker that is running a task while some maps are done and others are not.
    let mut victim = None;
    let found = eventually(Duration::from_secs(120), || {
        let s = c.status(&job);
        let (done, total) = (s["maps"]["done"].as_u64().unwrap(), s["maps"]["total"].as_u64().unwrap());
        if s["state"] != "running" || done == 0 || done + 3 >= total {
            return false;
        }
        let workers = c.workers_json();
        victim = workers.as_array().unwrap().iter().find(|w| w["running"].as_u64() > Some(0)).cloned();
        victim.is_some()
    });
    assert!(found, "a worker runs a map mid-job: {}", c.status(&job));
    let victim = victim.unwrap();
    let i = c.workers.iter().position(|(h, _)| victim["host"] == h.name.as_str()).unwrap();
    let (host, _proc) = c.workers.remove(i);
    c.net.kill_host(&host).unwrap();
    eprintln!("killed {} ({}) at {:.2}s", host.name, host.ns, started.elapsed().as_secs_f64());

    let mut status = c.status(&job);
    let ended = eventually(Duration::from_secs(300), || {
        status = c.status(&job);
        status["state"] != "running"
    });
    assert!(ended, "the job ends: {status}");
    assert_eq!(status["state"], "succeeded", "{status}");
    eprintln!(
        "{:>6.2}s  quern submit {} (a worker host killed mid-job)",
        started.elapsed().as_secs_f64(),
        args.join(" ")
    );
    let got = c.net.dir().join("got");
    c.s3.download_dir("out", &got).unwrap();
    assert_eq!(read_output(&got, 3, true), word_count(&local));
    let gone = eventually(Duration::from_secs(60), || {
        c.workers_json().as_array().is_some_and(|w| w.len() == 2 && w.iter().all(|w| w["host"] != victim["host"]))
    });
    assert!(gone, "the dead host's worker is dropped: {}", c.workers_json());
}
