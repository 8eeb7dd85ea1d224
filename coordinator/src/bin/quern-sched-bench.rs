//! `quern-sched-bench`: what scheduling costs as the cluster grows. Drives the coordinator's
//! pure core ([`quern_coordinator::sim`]) with a fake clock, no network and no store, at
//! each cluster size in a process of its own (so each size's peak memory is its own), and
//! prints decisions per second, time per poll, heartbeat and tick, and memory.
//!
//! ```text
//! cargo run --release -p quern-coordinator --bin quern-sched-bench
//! cargo run --release -p quern-coordinator --bin quern-sched-bench -- --workers 1000 --jobs 100
//! cargo run --release -p quern-coordinator --bin quern-sched-bench -- --workers 10,1000,10000 --jobs 1000
//! cargo run -p quern-coordinator --bin quern-sched-bench -- --quick
//! ```

use std::process::{Command, ExitCode};
use std::time::Duration;

use clap::Parser;
use quern_coordinator::policy::PolicyKind;
use quern_coordinator::sim::{SimConfig, run};

/// Simulates a cluster against the coordinator's scheduling core.
#[derive(Debug, Parser)]
#[command(name = "quern-sched-bench")]
struct Args {
    /// Cluster sizes to simulate, comma-separated (one process each).
    #[arg(long, value_delimiter = ',', default_value = "10,1000,10000")]
    workers: Vec<usize>,
    /// Slots per worker.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1024))]
    slots: u32,
    /// Jobs, all submitted at the start.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    jobs: u64,
    /// Map tasks per job.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    maps: u64,
    /// Every N-th job has reduce tasks (0: none).
    #[arg(long, default_value_t = 10)]
    reduce_every: usize,
    /// Every N-th job's input lives on random workers' local disks (0: none).
    #[arg(long, default_value_t = 10)]
    local_every: usize,
    /// Which job a free slot serves: fair, fifo, priority or sjf.
    #[arg(long, default_value = "fair")]
    policy: PolicyKind,
    /// Give up after this many simulated steps of 100ms.
    #[arg(long, default_value_t = 10_000_000)]
    max_steps: u64,
    /// A small run (10 workers, 20 jobs of 50 maps) for CI.
    #[arg(long)]
    quick: bool,
    /// Run one size in this process (how the bench runs each size).
    #[arg(long, hide = true)]
    one: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.quick {
        return one(SimConfig::quick(), true);
    }
    if args.one {
        let Some(&w) = args.workers.last() else { return fail("--workers is empty") };
        return one(config(&args, w), false);
    }
    header();
    for &w in &args.workers {
        let Ok(exe) = std::env::current_exe() else { return fail("cannot find this program to run it again") };
        let mut cmd = Command::new(exe);
        cmd.args(std::env::args_os().skip(1)).args(["--one", "--workers", &w.to_string()]);
        match cmd.status() {
            Ok(s) if s.success() => {}
            Ok(s) => return fail(&format!("the run with {w} workers failed ({s})")),
            Err(e) => return fail(&format!("cannot run the size {w}: {e}")),
        }
    }
    ExitCode::SUCCESS
}

fn config(a: &Args, workers: usize) -> SimConfig {
    SimConfig {
        slots: a.slots,
        jobs: a.jobs as usize,
        maps: a.maps as usize,
        reduce_every: a.reduce_every,
        local_every: a.local_every,
        policy: a.policy,
        max_steps: a.max_steps,
        ..SimConfig::at_scale(workers.max(1))
    }
}

fn fail(why: &str) -> ExitCode {
    eprintln!("error: {why}");
    ExitCode::FAILURE
}

fn header() {
    println!(
        "{:>8} {:>6} {:>9} {:>12} {:>10} {:>10} {:>10} {:>10} {:>10} {:>9} {:>9} {:>9} {:>8} {:>8}",
        "workers",
        "slots",
        "tasks",
        "decisions/s",
        "poll p50",
        "poll p99",
        "report p50",
        "hb p50",
        "hb p99",
        "tick p50",
        "tick p99",
        "peak RSS",
        "B/task",
        "wall"
    );
}

/// Runs one size here and prints its line; fails if a task did not finish exactly once.
fn one(cfg: SimConfig, with_header: bool) -> ExitCode {
    let before = memory("VmRSS:");
    let mut submitted = None;
    let r = run(&cfg, || submitted = memory("VmRSS:"));
    let per_task = match (before, submitted) {
        (Some(b), Some(s)) => format!("{}", s.saturating_sub(b) / r.tasks.max(1)),
        _ => "n/a".into(),
    };
    if with_header {
        header();
    }
    let peak = memory("VmHWM:").map_or("n/a".into(), |b| format!("{}MiB", b >> 20));
    println!(
        "{:>8} {:>6} {:>9} {:>12.0} {:>10} {:>10} {:>10} {:>10} {:>10} {:>9} {:>9} {:>9} {:>8} {:>7.1}s",
        cfg.workers,
        cfg.slots,
        r.tasks,
        r.decisions_per_sec(),
        us(r.polls.quantile(0.5)),
        us(r.polls.quantile(0.99)),
        us(r.reports.quantile(0.5)),
        us(r.heartbeats.quantile(0.5)),
        us(r.heartbeats.quantile(0.99)),
        us(r.ticks.quantile(0.5)),
        us(r.ticks.quantile(0.99)),
        peak,
        per_task,
        r.wall.as_secs_f64(),
    );
    eprintln!(
        "  {} polls, {} reports, {} heartbeats, {} ticks; {} decisions; {:.0}s simulated; {} of {} tasks done once",
        r.polls.count(),
        r.reports.count(),
        r.heartbeats.count(),
        r.ticks.count(),
        r.decisions,
        r.simulated.as_secs_f64(),
        r.succeeded,
        r.tasks
    );
    if !r.exactly_once {
        return fail(&format!("{} jobs unfinished; not every task finished exactly once", r.unfinished_jobs));
    }
    ExitCode::SUCCESS
}

fn us(d: Duration) -> String {
    format!("{:.1}us", d.as_secs_f64() * 1e6)
}

/// A `/proc/self/status` field in bytes (Linux only).
fn memory(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: u64 = line.trim_start_matches(field).trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kb * 1024)
}
