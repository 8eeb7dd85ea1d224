//! Benchmark: times `quern run --job wordcount` end to end on a given input, or on a corpus it
//! generates, and prints one line of figures. Build everything with `--release` first:
//!
//! ```text
//! cargo build --release --workspace
//! target/release/quern-bench [--input DIR_OR_FILE | --generate-mib N] [--workers W] [--runs K]
//! target/release/quern-bench --generate-mib N --chaos KILLS [--seed S]
//! target/release/quern-bench --locality
//! target/release/quern-bench --vs-rayon [--size-mib 1024] [--runs 5] [--data DIR]
//! target/release/quern-bench --vs-expert [--size-mib 1024] [--runs 5] [--data DIR]
//! target/release/quern-bench --terasort [--records 10000000] [--runs 5] [--data DIR]
//! ```
//!
//! With `--vs-rayon`, it generates (once, into `--data`, default `target/bench-data`) a Zipf
//! corpus (100,000 distinct words, seed 42), then runs the hand-written baseline `wc-rayon`
//! and `quern run --job wordcount --workers 2` alternately `--runs` times each, checks that
//! their outputs agree, and prints every run, the median of the per-pair time ratios, the
//! peak memory of each and the shuffle bytes per input byte (from the job's counters).
//! `--vs-expert` adds the hand-tuned kernel `wc-expert` to the rotation (its output must
//! equal wc-rayon's byte for byte) and prints its ratios too. The baselines run with
//! `RAYON_NUM_THREADS=2`, as many threads as quern's two workers.
//!
//! With `--terasort`, it generates `--records` TeraGen records once (`quern run --job
//! teragen`, into the data directory, with a line copy for GNU sort beside them), then runs
//! `quern run --job terasort --workers 2`, `sort-rayon` and `LC_ALL=C sort --parallel=2
//! -S 4G` in rotating order, checks that all three outputs hold the same bytes in the same
//! order, and prints the medians, the ratios quern/sort-rayon and gnu-sort/quern, peak
//! memory and the shuffle bytes per input byte. See `quern-bench/tera.rs` for what GNU sort
//! is given (TeraGen records are not lines).
//!
//! With `--chaos`, it instead runs word count on a multi-process cluster of 3 workers
//! (heartbeat timeout 2 s) once without faults and once while `kill -9`-ing a random worker
//! KILLS times on a seeded schedule (starting a replacement each time), and reports both
//! times and the attempts against the tasks.
//!
//! With `--locality`, it runs word count on the layout of [`quern_tests::locality`] with
//! skewed data (hosts a, b, c hold 6, 4 and 2 of 12 files; 50 ms injected per task), with
//! delay scheduling (`--locality-wait 1s`) and without it (`0s`), and prints the node-local
//! share and the time of each: without waiting, c steals a's splits once its own are done.
#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Instant;

use anyhow::{Context, Result, bail};

// A bin's root looks for modules beside it; these live in a directory of their own, which
// Cargo does not take for another binary (it holds no main.rs).
#[path = "quern-bench/tera.rs"]
mod tera;
#[path = "quern-bench/wc.rs"]
mod wc;

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line: what failed and why.
            eprintln!("quern-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--locality") {
        return locality();
    }
    let flag = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let expert = args.iter().any(|a| a == "--vs-expert");
    if expert || args.iter().any(|a| a == "--vs-rayon") {
        let mib: u64 = flag("--size-mib").unwrap_or_else(|| "1024".into()).parse().context("--size-mib")?;
        let runs: usize = flag("--runs").unwrap_or_else(|| "5".into()).parse().context("--runs")?;
        let data = flag("--data").unwrap_or_else(|| "target/bench-data".into());
        return wc::compare(std::path::Path::new(&data), mib, runs, expert);
    }
    if args.iter().any(|a| a == "--terasort") {
        let records: u64 = flag("--records").unwrap_or_else(|| "10000000".into()).parse().context("--records")?;
        let runs: usize = flag("--runs").unwrap_or_else(|| "5".into()).parse().context("--runs")?;
        let data = flag("--data").unwrap_or_else(|| "target/bench-data".into());
        if records == 0 {
            bail!("--records must be at least 1");
        }
        return tera::compare(std::path::Path::new(&data), records, runs);
    }
    let workers = flag("--workers").unwrap_or_else(|| "2".into());
    let runs: usize = flag("--runs").unwrap_or_else(|| "3".into()).parse().context("--runs")?;
    let scratch = tempfile::tempdir()?;
    let input = match (flag("--input"), flag("--generate-mib")) {
        (Some(i), _) => i,
        (None, Some(mib)) => {
            let mib: usize = mib.parse().context("--generate-mib")?;
            let dir = scratch.path().join("input");
            quern_tests::data::write_corpus(&dir, 8, mib * 1024 * 1024 / 8, 42)?;
            format!("{}/", dir.display())
        }
        (None, None) => bail!("give --input PATH or --generate-mib N"),
    };
    let bytes = du(std::path::Path::new(&input));
    if let Some(kills) = flag("--chaos") {
        let kills: u32 = kills.parse().context("--chaos")?;
        let seed: u64 = flag("--seed").unwrap_or_else(|| "1".into()).parse().context("--seed")?;
        let (clean, _, _) = chaos_run(&input, 0, seed)?;
        let (faulty, maps, attempts) = chaos_run(&input, kills, seed)?;
        println!(
            "chaos wordcount input={input} bytes={bytes} clean={clean:.2}s with_{kills}_kills={faulty:.2}s slowdown={:.2}x map_tasks={maps} map_attempts={attempts}",
            faulty / clean
        );
        return Ok(());
    }
    let mut times = Vec::new();
    for r in 0..runs {
        let out = scratch.path().join(format!("out-{r}"));
        let started = Instant::now();
        let o = quern_tests::run_binary(
            "quern",
            &[
                "run",
                "--job",
                "wordcount",
                "--input",
                &input,
                "--output",
                &out.display().to_string(),
                "--workers",
                &workers,
            ],
        );
        let secs = started.elapsed().as_secs_f64();
        if !o.status.success() {
            bail!("run failed: {}", String::from_utf8_lossy(&o.stderr));
        }
        times.push(secs);
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    println!(
        "wordcount input={input} bytes={bytes} workers={workers} runs={runs} median={median:.3}s min={:.3}s throughput={:.1} MB/s",
        times[0],
        bytes as f64 / median / 1e6
    );
    Ok(())
}

/// One word count on a 3-worker process cluster, killing `kills` workers on a seeded schedule.
/// Returns (seconds, map tasks, map attempts).
fn chaos_run(input: &str, kills: u32, seed: u64) -> Result<(f64, u64, u64)> {
    use quern_tests::{Mode, TestCluster};
    use rand::{Rng, SeedableRng};
    let mut c = TestCluster::start_with(
        Mode::Processes,
        3,
        &["--heartbeat-timeout", "2s", "--heartbeat-interval", "250ms", "--speculation", "off"],
    )?;
    let out = c.path("out").display().to_string();
    let started = Instant::now();
    let id = c.submit(&[
        "--job",
        "wordcount",
        "--input",
        input,
        "--output",
        &out,
        "--reducers",
        "6",
        "--split-size",
        "4MiB",
    ])?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut live: Vec<usize> = (0..3).collect();
    let mut done = 0;
    let mut next = Instant::now() + std::time::Duration::from_millis(rng.random_range(300..900));
    let status = c.wait_job(&id, std::time::Duration::from_secs(1800), |c| {
        if done < kills && Instant::now() >= next {
            let victim = live.remove(rng.random_range(0..live.len()));
            c.kill_worker(victim);
            live.push(c.start_worker().expect("start a replacement worker"));
            done += 1;
            next = Instant::now() + std::time::Duration::from_millis(rng.random_range(300..900));
        }
    })?;
    let secs = started.elapsed().as_secs_f64();
    if status["state"] != "succeeded" {
        bail!("job ended {}", status["state"]);
    }
    let tasks = c.tasks(&id)?;
    let maps: Vec<_> = tasks.iter().filter(|t| t["kind"] == "map").collect();
    let attempts = maps.iter().map(|t| t["attempts"].as_u64().unwrap_or(0)).sum();
    Ok((secs, maps.len() as u64, attempts))
}

/// Skewed data with and without delay scheduling: one line each.
fn locality() -> Result<()> {
    use quern_tests::locality::{Locality, locality_run};
    for wait in ["1s", "0s"] {
        let (status, _) = locality_run(&["--locality-wait", wait], [6, 4, 2])?;
        let l = Locality::of(&status)?;
        l.counted_once(&status)?;
        let ms =
            status["finished_ms"].as_u64().unwrap_or(0).saturating_sub(status["submitted_ms"].as_u64().unwrap_or(0));
        println!(
            "locality skewed=6,4,2 locality_wait={wait} node_local_share={:.3} node_local={} rack_local={} remote={} job_ms={ms}",
            l.node_local_share(),
            l.node_local,
            l.rack_local,
            l.remote
        );
    }
    Ok(())
}

fn du(p: &std::path::Path) -> u64 {
    if p.is_file() {
        return p.metadata().map(|m| m.len()).unwrap_or(0);
    }
    quern_tests::data::files_under(p).iter().filter_map(|f| f.metadata().ok()).map(|m| m.len()).sum()
}
