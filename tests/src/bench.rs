//! What the benchmarks share: deterministic corpora, timing a child process with its peak
//! memory, and medians. Figures come from whole processes run side by side (these machines
//! are shared, so only ratios of runs taken together mean anything).

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use rand::{Rng, SeedableRng};

/// Writes about `bytes` of text in `files` files under `dir`: lines of 4 to 16 words drawn
/// from `distinct` words with Zipf's law (exponent 1), from `seed`, so the same arguments
/// always give the same bytes. Words are 2 to 12 lowercase ASCII letters.
pub fn zipf_corpus(dir: &Path, bytes: u64, files: usize, distinct: usize, seed: u64) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let words: Vec<String> = (0..distinct.max(1))
        .map(|_| {
            let len = rng.random_range(2..=12);
            (0..len).map(|_| char::from(b'a' + rng.random_range(0..26u8))).collect()
        })
        .collect();
    // Cumulative weights 1/k; a draw is a binary search in them.
    let mut cumulative = Vec::with_capacity(words.len());
    let mut total = 0.0f64;
    for k in 1..=words.len() {
        total += 1.0 / k as f64;
        cumulative.push(total);
    }
    let per_file = bytes / files.max(1) as u64;
    for f in 0..files.max(1) {
        let file = std::fs::File::create(dir.join(format!("zipf-{f:03}.txt")))?;
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
        let mut written = 0u64;
        while written < per_file {
            let n = rng.random_range(4..=16);
            for i in 0..n {
                let x = rng.random::<f64>() * total;
                let w = &words[cumulative.partition_point(|&c| c < x).min(words.len() - 1)];
                if i > 0 {
                    out.write_all(b" ")?;
                }
                out.write_all(w.as_bytes())?;
                written += w.len() as u64 + 1;
            }
            out.write_all(b"\n")?;
        }
        out.flush()?;
    }
    Ok(())
}

/// One run of a child process: its wall time and peak resident memory.
#[derive(Clone, Copy, Debug)]
pub struct Timed {
    /// Seconds from spawn to exit.
    pub secs: f64,
    /// Peak resident set of the child (and the children it waited for), in KiB.
    pub peak_rss_kib: u64,
}

/// Runs `cmd` to its end; fails unless it exits 0.
pub fn timed(mut cmd: Command) -> Result<Timed> {
    let started = Instant::now();
    let child = cmd.stdout(std::process::Stdio::null()).spawn().context("spawning the benchmark")?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data that wait4 fills in; the pid is our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child and writes only into the two out-parameters.
    let got = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let secs = started.elapsed().as_secs_f64();
    if got != pid || !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        bail!("{cmd:?} failed (status {status})");
    }
    Ok(Timed { secs, peak_rss_kib: usage.ru_maxrss as u64 })
}

/// The median of `xs` (the upper one of an even count).
pub fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs.get(xs.len() / 2).copied().unwrap_or(f64::NAN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_corpus() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        zipf_corpus(a.path(), 20_000, 2, 500, 7).unwrap();
        zipf_corpus(b.path(), 20_000, 2, 500, 7).unwrap();
        for f in ["zipf-000.txt", "zipf-001.txt"] {
            let x = std::fs::read(a.path().join(f)).unwrap();
            assert_eq!(x, std::fs::read(b.path().join(f)).unwrap());
            assert!(x.len() >= 10_000 && x.ends_with(b"\n"));
        }
    }
}
