//! `--terasort`: TeraSort in quern against `sort-rayon` and GNU sort.
//!
//! TeraGen records are 100 bytes with no line structure: the 10-byte key is random and may
//! hold `\n` (or any byte), so GNU sort cannot read them as they are. It sorts a line copy
//! made once beside the data: each record as its key in 20 uppercase hex digits, the other
//! 90 bytes as they are (TeraGen never puts `\n` there; checked) and `\n`. Hex keeps byte
//! order under `LC_ALL=C`, and a line compares as its record does (key, then the rest), so
//! GNU sort's output, decoded, must equal the other two byte for byte; that is checked.

use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use quern_tests::bench::{
    Timed, binary, first_difference, input_files, job_counters, median_ratio, median_secs, parts_reader, peak_mib,
    rotation, shuffle_line, timed, timed_with,
};

const RECORD: usize = 100;
const KEY: usize = 10;
const LINE: usize = 2 * KEY + (RECORD - KEY) + 1;

/// The three programs, in the order of `times`.
const NAMES: [&str; 3] = ["quern run", "sort-rayon", "gnu sort"];

/// Generates the input once (TeraGen with `records` rows, and its line copy), then runs the
/// three sorts in rotating order `runs` times, checks the outputs after the first round and
/// prints every round, the medians, the ratios, peak memory and the shuffle per input byte.
pub(crate) fn compare(data: &Path, records: u64, runs: usize) -> Result<()> {
    let quern = binary("quern")?;
    let sort_rayon = binary("sort-rayon")?;
    let input = teragen(&quern, data, records)?;
    let lines = data.join(format!("teragen-{records}.lines"));
    if !lines.exists() {
        eprintln!("writing the line copy for GNU sort to {}", lines.display());
        line_copy(&input, &lines)?;
    }
    let scratch = tempfile::tempdir()?;
    let (quern_out, base_out, gnu_out) =
        (scratch.path().join("quern"), scratch.path().join("sort-rayon.bin"), scratch.path().join("gnu.txt"));
    let status = scratch.path().join("status.json");
    let mut times: Vec<Vec<Timed>> = vec![Vec::new(); NAMES.len()];
    for r in 0..runs.max(1) {
        for which in rotation(r, NAMES.len()) {
            let t = match which {
                0 => {
                    let _ = std::fs::remove_dir_all(&quern_out);
                    let mut cmd = Command::new(&quern);
                    cmd.args(["run", "--job", "terasort", "--workers", "2", "--json", "--input"])
                        .arg(&input)
                        .arg("--output")
                        .arg(&quern_out)
                        .stderr(Stdio::null());
                    timed_with(cmd, std::fs::File::create(&status)?.into())?
                }
                1 => {
                    let mut cmd = Command::new(&sort_rayon);
                    cmd.env("RAYON_NUM_THREADS", "2").arg(&input).arg(&base_out);
                    timed(cmd)?
                }
                _ => {
                    let mut cmd = Command::new("sort");
                    cmd.env("LC_ALL", "C")
                        .args(["--parallel=2", "-S", "4G", "-T"])
                        .arg(scratch.path())
                        .arg("-o")
                        .arg(&gnu_out)
                        .arg(&lines);
                    timed(cmd).context("running GNU sort (is coreutils' `sort` on PATH?)")?
                }
            };
            times[which].push(t);
        }
        if r == 0 {
            check(&quern_out, &base_out, &gnu_out, records)?;
            println!(
                "checked: quern's parts concatenated == sort-rayon's file == GNU sort's lines decoded, {records} records, byte for byte"
            );
        }
        let line: Vec<String> = NAMES
            .iter()
            .zip(&times)
            .map(|(name, t)| format!("{name} {:.3}s ({} MiB peak)", t[r].secs, t[r].peak_rss_kib / 1024))
            .collect();
        println!("run {r}: {}", line.join(", "));
    }
    let (q, b, g) = (&times[0], &times[1], &times[2]);
    println!(
        "terasort {records} records: quern run / sort-rayon median ratio {:.2}, gnu sort / quern run {:.2} over {} runs (medians {:.3}s / {:.3}s / {:.3}s; peak RSS {} / {} / {} MiB)",
        median_ratio(q, b),
        median_ratio(g, q),
        q.len(),
        median_secs(q),
        median_secs(b),
        median_secs(g),
        peak_mib(q),
        peak_mib(b),
        peak_mib(g),
    );
    println!("{}", shuffle_line(&format!("terasort {records} records"), &job_counters(&status)?));
    Ok(())
}

/// TeraGen's output for `records` rows under `data`, made by `quern run --job teragen` on
/// the first call (into a temporary name, renamed when complete) and reused after.
fn teragen(quern: &Path, data: &Path, records: u64) -> Result<PathBuf> {
    let dir = data.join(format!("teragen-{records}"));
    if dir.join("_SUCCESS").exists() {
        return Ok(dir);
    }
    let tmp = data.join(format!(".teragen-{records}.partial"));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(data)?;
    eprintln!("generating {records} TeraGen records into {}", dir.display());
    let out = Command::new(quern)
        .args(["run", "--job", "teragen", "--workers", "2", "--param", &format!("rows={records}"), "--output"])
        .arg(&tmp)
        .stdout(Stdio::null())
        .output()
        .context("running quern teragen")?;
    if !out.status.success() {
        bail!("quern teragen failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    std::fs::rename(&tmp, &dir)?;
    Ok(dir)
}

/// Writes the line copy of the records under `input` for GNU sort (see the module docs).
fn line_copy(input: &Path, lines: &Path) -> Result<()> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let tmp = lines.with_extension("partial");
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp)?);
    let mut line = [0u8; LINE];
    line[LINE - 1] = b'\n';
    let mut n = 0u64;
    for f in input_files(input)? {
        let mut r = BufReader::with_capacity(1 << 20, std::fs::File::open(&f)?);
        let mut rec = [0u8; RECORD];
        while fill(&mut r, &mut rec).with_context(|| format!("reading {}", f.display()))? {
            for (i, b) in rec[..KEY].iter().enumerate() {
                line[2 * i] = HEX[usize::from(b >> 4)];
                line[2 * i + 1] = HEX[usize::from(b & 15)];
            }
            if rec[KEY..].contains(&b'\n') {
                bail!("record {n} holds a newline after its key: it cannot be one line for GNU sort");
            }
            line[2 * KEY..LINE - 1].copy_from_slice(&rec[KEY..]);
            out.write_all(&line)?;
            n += 1;
        }
    }
    out.flush()?;
    drop(out);
    std::fs::rename(&tmp, lines)?;
    Ok(())
}

/// Reads one whole record: false at a clean end, an error on a partial record.
fn fill(r: &mut impl Read, rec: &mut [u8; RECORD]) -> Result<bool> {
    let mut got = 0;
    while got < RECORD {
        match r.read(&mut rec[got..])? {
            0 if got == 0 => return Ok(false),
            0 => bail!("a partial record of {got} bytes at the end"),
            n => got += n,
        }
    }
    Ok(true)
}

/// quern's parts concatenated equal sort-rayon's file, and GNU sort's lines decoded back
/// into records equal it too.
fn check(quern_out: &Path, base_out: &Path, gnu_out: &Path, records: u64) -> Result<()> {
    let base = || -> Result<_> { Ok(BufReader::with_capacity(1 << 20, std::fs::File::open(base_out)?)) };
    let len = std::fs::metadata(base_out)?.len();
    if len != records * RECORD as u64 {
        bail!("sort-rayon wrote {len} bytes for {records} records");
    }
    if let Some(at) = first_difference(parts_reader(quern_out)?, base()?)? {
        bail!("quern terasort and sort-rayon differ at byte {at} (record {})", at / RECORD as u64);
    }
    let mut gnu = BufReader::with_capacity(1 << 20, std::fs::File::open(gnu_out)?);
    let mut base = base()?;
    let (mut line, mut want, mut got) = ([0u8; LINE], [0u8; RECORD], [0u8; RECORD]);
    for n in 0..records {
        gnu.read_exact(&mut line).with_context(|| format!("GNU sort's output ends at line {n}"))?;
        base.read_exact(&mut want)?;
        for (i, pair) in line[..2 * KEY].chunks_exact(2).enumerate() {
            got[i] = (hex(pair[0])? << 4) | hex(pair[1])?;
        }
        got[KEY..].copy_from_slice(&line[2 * KEY..LINE - 1]);
        if got != want || line[LINE - 1] != b'\n' {
            bail!("GNU sort and sort-rayon differ at record {n}");
        }
    }
    if !gnu.fill_buf()?.is_empty() {
        bail!("GNU sort wrote more than {records} lines");
    }
    Ok(())
}

fn hex(d: u8) -> Result<u8> {
    match d {
        b'0'..=b'9' => Ok(d - b'0'),
        b'A'..=b'F' => Ok(d - b'A' + 10),
        _ => bail!("{d:#x} is not an uppercase hex digit"),
    }
}
