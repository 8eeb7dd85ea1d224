//! What the benchmarks share: deterministic corpora, timing a child process with its peak
//! memory, and medians. Figures come from whole processes run side by side (these machines
//! are shared, so only ratios of runs taken together mean anything).

use std::collections::BTreeMap;
use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
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

/// Every file under `dir` (or `dir` itself when it is a file) that quern would read as
/// input: recursively, skipping base names that start with `_` or `.` (as `_SUCCESS`),
/// sorted by path, so the parts of a job's output come in name order.
pub fn input_files(dir: &Path) -> Result<Vec<PathBuf>> {
    if dir.is_file() {
        return Ok(vec![dir.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("listing {}", d.display()))? {
            let path = e.with_context(|| format!("listing {}", d.display()))?.path();
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if name.starts_with('_') || name.starts_with('.') {
                continue;
            }
            if path.is_dir() {
                todo.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The path of a workspace binary built next to the running one, or an error that says how
/// to build it.
pub fn binary(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe().context("finding the running executable")?;
    let here = exe.parent().context("the running executable has no directory")?;
    let file = format!("{name}{}", std::env::consts::EXE_SUFFIX);
    let package = if name == "quern" { "quern-cli" } else { "quern-tests" };
    [here.join(&file), here.parent().map(|p| p.join(&file)).unwrap_or_default()]
        .into_iter()
        .find(|p| p.is_file())
        .with_context(|| {
            format!(
                "{file} is not built next to {}: build it with `cargo build --release -p {package} --bins`",
                exe.display()
            )
        })
}

/// One run of a child process: its wall time and peak resident memory.
#[derive(Clone, Copy, Debug)]
pub struct Timed {
    /// Seconds from spawn to exit.
    pub secs: f64,
    /// Peak resident set of the child (and the children it waited for), in KiB.
    pub peak_rss_kib: u64,
}

/// Runs `cmd` to its end, its output discarded; fails unless it exits 0.
pub fn timed(cmd: Command) -> Result<Timed> {
    timed_with(cmd, std::process::Stdio::null())
}

/// Runs `cmd` to its end with `stdout` as its standard output (a file, to keep what it
/// prints: a pipe could fill up while we wait); fails unless it exits 0.
pub fn timed_with(mut cmd: Command, stdout: std::process::Stdio) -> Result<Timed> {
    let started = Instant::now();
    let child = cmd.stdout(stdout).spawn().with_context(|| format!("spawning {:?}", cmd.get_program()))?;
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

/// The order in which `n` programs run in round `round`: each round starts one later, so
/// none always runs first (finding the page cache colder) or last.
pub fn rotation(round: usize, n: usize) -> impl Iterator<Item = usize> {
    (0..n).map(move |k| (round + k) % n.max(1))
}

/// The median over rounds of `a`'s time divided by `b`'s, run `i` of each taken together.
pub fn median_ratio(a: &[Timed], b: &[Timed]) -> f64 {
    median(a.iter().zip(b).map(|(a, b)| a.secs / b.secs).collect())
}

/// The median time of `runs`, in seconds.
pub fn median_secs(runs: &[Timed]) -> f64 {
    median(runs.iter().map(|t| t.secs).collect())
}

/// The highest peak resident memory of `runs`, in MiB.
pub fn peak_mib(runs: &[Timed]) -> u64 {
    runs.iter().map(|t| t.peak_rss_kib).max().unwrap_or(0) / 1024
}

/// Where two byte streams first differ (an offset), or `None` when they are equal; a
/// stream that ends early differs where it ends.
pub fn first_difference(mut a: impl BufRead, mut b: impl BufRead) -> Result<Option<u64>> {
    let mut at = 0u64;
    loop {
        let (x, y) = (a.fill_buf()?, b.fill_buf()?);
        let n = x.len().min(y.len());
        if n == 0 {
            return Ok((x.len() != y.len()).then_some(at));
        }
        if let Some(i) = x[..n].iter().zip(&y[..n]).position(|(p, q)| p != q) {
            return Ok(Some(at + i as u64));
        }
        a.consume(n);
        b.consume(n);
        at += n as u64;
    }
}

/// The job's output parts (`part-*`, in name order) read back to back.
pub fn parts_reader(dir: &Path) -> Result<impl BufRead> {
    let mut parts: Vec<PathBuf> = input_files(dir)?;
    parts.retain(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("part-")));
    if parts.is_empty() {
        bail!("{} holds no part-* files", dir.display());
    }
    let mut all: Box<dyn Read> = Box::new(std::io::empty());
    for p in parts {
        all = Box::new(all.chain(std::fs::File::open(&p).with_context(|| format!("opening {}", p.display()))?));
    }
    Ok(std::io::BufReader::with_capacity(1 << 20, all))
}

/// The counters of a job from the status `quern run --json` printed into `file`.
pub fn job_counters(file: &Path) -> Result<BTreeMap<String, u64>> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let status: serde_json::Value =
        serde_json::from_str(text.trim()).with_context(|| format!("{} is not one JSON status", file.display()))?;
    let counters = status["counters"].as_object().with_context(|| format!("no counters in {}", file.display()))?;
    Ok(counters.iter().filter_map(|(k, v)| Some((k.clone(), v.as_u64()?))).collect())
}

/// One report line on the shuffle: bytes the map tasks wrote to shuffle objects per byte of
/// their input (`MAP_OUTPUT_BYTES / MAP_INPUT_BYTES`), with what the reducers fetched.
pub fn shuffle_line(job: &str, counters: &BTreeMap<String, u64>) -> String {
    let get = |k: &str| counters.get(k).copied().unwrap_or(0);
    let (out, input) = (get("MAP_OUTPUT_BYTES"), get("MAP_INPUT_BYTES"));
    format!(
        "{job} shuffle: MAP_OUTPUT_BYTES {out} / MAP_INPUT_BYTES {input} = {:.4} shuffle bytes per input byte (REDUCE_SHUFFLE_BYTES {}, SPILLED_RECORDS {})",
        out as f64 / input.max(1) as f64,
        get("REDUCE_SHUFFLE_BYTES"),
        get("SPILLED_RECORDS"),
    )
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

    #[test]
    fn first_difference_finds_the_offset_or_a_short_stream() {
        let diff = |a: &[u8], b: &[u8]| first_difference(a, b).unwrap();
        assert_eq!(diff(b"abcdef", b"abcdef"), None);
        assert_eq!(diff(b"abcdef", b"abcXef"), Some(3));
        assert_eq!(diff(b"abc", b"abcdef"), Some(3));
        assert_eq!(diff(b"", b""), None);
    }

    #[test]
    fn every_program_leads_one_round_in_turn() {
        let firsts: Vec<usize> = (0..6).map(|r| rotation(r, 3).next().unwrap()).collect();
        assert_eq!(firsts, [0, 1, 2, 0, 1, 2]);
        let mut round: Vec<usize> = rotation(4, 3).collect();
        round.sort();
        assert_eq!(round, [0, 1, 2]);
    }
}
