//! Benchmark: times `quern run --job wordcount` end to end on a given input, or on a corpus it
//! generates, and prints one line of figures. Build everything with `--release` first:
//!
//! ```text
//! cargo build --release --workspace
//! target/release/quern-bench [--input DIR_OR_FILE | --generate-mib N] [--workers W] [--runs K]
//! ```
#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Instant;

use anyhow::{Context, Result, bail};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
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

fn du(p: &std::path::Path) -> u64 {
    if p.is_file() {
        return p.metadata().map(|m| m.len()).unwrap_or(0);
    }
    quern_tests::data::files_under(p).iter().filter_map(|f| f.metadata().ok()).map(|m| m.len()).sum()
}
