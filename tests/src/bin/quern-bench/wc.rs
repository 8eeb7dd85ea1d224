//! `--vs-rayon` and `--vs-expert`: word count in quern against hand-written programs.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use quern_tests::bench::{
    Timed, binary, job_counters, median_ratio, median_secs, peak_mib, rotation, shuffle_line, timed, timed_with,
    zipf_corpus,
};

/// The Zipf corpus of `mib` MiB under `data` (100,000 distinct words, seed 42), made on the
/// first call and reused after.
fn corpus(data: &Path, mib: u64) -> Result<PathBuf> {
    let input = data.join(format!("zipf-{mib}mib"));
    if !input.join("zipf-007.txt").exists() {
        eprintln!("generating {mib} MiB of text into {}", input.display());
        zipf_corpus(&input, mib << 20, 8, 100_000, 42)?;
    }
    Ok(input)
}

/// Runs wc-rayon, (with `expert`) wc-expert and `quern run --job wordcount --workers 2`
/// in rotating order `runs` times, checks after the first round that all outputs agree,
/// and prints every round, the medians, the ratios and the shuffle per input byte.
pub(crate) fn compare(data: &Path, mib: u64, runs: usize, expert: bool) -> Result<()> {
    let input = corpus(data, mib)?;
    let scratch = tempfile::tempdir()?;
    let quern = binary("quern")?;
    let mut programs = vec![("wc-rayon", binary("wc-rayon")?)];
    if expert {
        programs.push(("wc-expert", binary("wc-expert")?));
    }
    let quern_at = programs.len();
    programs.push(("quern run", quern));
    let out_of = |name: &str| scratch.path().join(name.replace(' ', "-"));
    let status = scratch.path().join("status.json");
    let mut times: Vec<Vec<Timed>> = vec![Vec::new(); programs.len()];
    for r in 0..runs.max(1) {
        for which in rotation(r, programs.len()) {
            let (name, bin) = &programs[which];
            let out = out_of(name);
            let t = if which == quern_at {
                let _ = std::fs::remove_dir_all(&out);
                let mut cmd = Command::new(bin);
                cmd.args(["run", "--job", "wordcount", "--workers", "2", "--json", "--input"])
                    .arg(&input)
                    .arg("--output")
                    .arg(&out)
                    .stderr(Stdio::null());
                let file = std::fs::File::create(&status)?;
                timed_with(cmd, file.into())?
            } else {
                // Two threads, as the two single-slot workers quern runs.
                let mut cmd = Command::new(bin);
                cmd.env("RAYON_NUM_THREADS", "2").arg(&input).arg(&out);
                timed(cmd)?
            };
            times[which].push(t);
        }
        if r == 0 {
            check(&programs, &out_of)?;
        }
        let line: Vec<String> = programs
            .iter()
            .zip(&times)
            .map(|((name, _), t)| format!("{name} {:.3}s ({} MiB peak)", t[r].secs, t[r].peak_rss_kib / 1024))
            .collect();
        println!("run {r}: {}", line.join(", "));
    }
    let base = &times[0];
    let q = &times[quern_at];
    println!(
        "wordcount {mib} MiB: quern run / wc-rayon median ratio {:.2} over {} runs (medians {:.3}s / {:.3}s; peak RSS {} / {} MiB)",
        median_ratio(q, base),
        q.len(),
        median_secs(q),
        median_secs(base),
        peak_mib(q),
        peak_mib(base),
    );
    if expert {
        let x = &times[1];
        println!(
            "wordcount {mib} MiB: quern run / wc-expert median ratio {:.2}, wc-rayon / wc-expert {:.2} over {} runs (wc-expert median {:.3}s; peak RSS {} MiB)",
            median_ratio(q, x),
            median_ratio(base, x),
            x.len(),
            median_secs(x),
            peak_mib(x),
        );
    }
    println!("{}", shuffle_line(&format!("wordcount {mib} MiB"), &job_counters(&status)?));
    Ok(())
}

/// The baselines' files are byte-identical; quern's parts hold the same lines.
fn check(programs: &[(&str, PathBuf)], out_of: &dyn Fn(&str) -> PathBuf) -> Result<()> {
    let expected = std::fs::read(out_of("wc-rayon")).context("reading wc-rayon's output")?;
    for (name, _) in programs {
        if *name == "wc-expert" && std::fs::read(out_of(name))? != expected {
            bail!("wc-expert and wc-rayon disagree");
        }
    }
    let mut lines: Vec<Vec<u8>> = Vec::new();
    let mut parts = quern_tests::bench::input_files(&out_of("quern run"))?;
    parts.retain(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("part-")));
    for p in parts {
        lines.extend(std::fs::read(p)?.split_inclusive(|&b| b == b'\n').map(<[u8]>::to_vec));
    }
    lines.sort();
    if lines.concat() != expected {
        let want = expected.iter().filter(|&&b| b == b'\n').count();
        bail!("quern and wc-rayon disagree ({} and {want} lines)", lines.len());
    }
    Ok(())
}
