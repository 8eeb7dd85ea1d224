//! Baseline for the TeraSort benchmark: a good hand-written parallel sort, no framework.
//! Reads every visible file under INPUT (100-byte TeraGen records; base names starting
//! with `_` or `.` skipped, as quern does) whole into one buffer, builds an index of
//! (10-byte key, record number) packed into one `u128` each, sorts it with rayon's
//! `par_sort_unstable`, puts records with equal keys in the order of their remaining bytes
//! (as `quern run --job terasort` does, so the output does not depend on input order), and
//! gathers the records in order into OUTPUT_FILE, a few MiB per write. The output equals
//! the concatenation of terasort's parts in name order, byte for byte.
//!
//! ```text
//! sort-rayon INPUT_DIR OUTPUT_FILE
//! ```
//! Threads: rayon's (`RAYON_NUM_THREADS`, else one per core).

use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use rayon::prelude::*;

/// Bytes in a record and in its key (Hadoop TeraSort's layout).
const RECORD: usize = 100;
const KEY: usize = 10;
/// Records gathered per write: 6.4 MB, large writes from a buffer that stays small.
const BATCH: usize = 64 << 10;
/// The record number takes the index entry's low 48 bits (the key the high 80).
const MAX_RECORDS: usize = 1 << 48;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output] = &args[..] else {
        eprintln!("usage: sort-rayon INPUT_DIR OUTPUT_FILE");
        return ExitCode::from(2);
    };
    match run(Path::new(input), Path::new(output)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sort-rayon: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(input: &Path, output: &Path) -> Result<()> {
    let data = read_all(input)?;
    let order = sorted_index(&data);
    let file = std::fs::File::create(output).with_context(|| format!("creating {}", output.display()))?;
    write_in_order(&data, &order, file).with_context(|| format!("writing {}", output.display()))
}

/// Every input file in one buffer, read in parallel with one large read per file.
fn read_all(input: &Path) -> Result<Vec<u8>> {
    let files = quern_tests::bench::input_files(input)?;
    let mut sizes = Vec::with_capacity(files.len());
    for f in &files {
        let len = std::fs::metadata(f).with_context(|| format!("reading {}", f.display()))?.len();
        if len % RECORD as u64 != 0 {
            bail!("{}: {len} bytes is not a whole number of {RECORD}-byte records", f.display());
        }
        sizes.push(usize::try_from(len)?);
    }
    let total: usize = sizes.iter().sum();
    if total / RECORD >= MAX_RECORDS {
        bail!("{} records are more than this program indexes ({MAX_RECORDS})", total / RECORD);
    }
    let mut data = vec![0u8; total];
    let mut parts = Vec::with_capacity(files.len());
    let mut rest = &mut data[..];
    for (f, &len) in files.iter().zip(&sizes) {
        let (head, tail) = rest.split_at_mut(len);
        parts.push((f, head));
        rest = tail;
    }
    parts.into_par_iter().try_for_each(|(f, buf)| {
        std::fs::File::open(f)
            .and_then(|mut file| file.read_exact(buf))
            .with_context(|| format!("reading {}", f.display()))
    })?;
    Ok(data)
}

/// The key of the record at `i`, in the top 80 bits, and `i` in the low 48: sorting the
/// integers sorts by key.
fn entry(data: &[u8], i: usize) -> u128 {
    let mut k = [0u8; 16];
    k[..KEY].copy_from_slice(&data[i * RECORD..i * RECORD + KEY]);
    u128::from_be_bytes(k) | i as u128
}

fn record(data: &[u8], e: u128) -> &[u8] {
    let i = (e & (MAX_RECORDS as u128 - 1)) as usize;
    &data[i * RECORD..(i + 1) * RECORD]
}

/// The records' order: by key, records with equal keys by their whole bytes.
fn sorted_index(data: &[u8]) -> Vec<u128> {
    let mut index: Vec<u128> = (0..data.len() / RECORD).into_par_iter().map(|i| entry(data, i)).collect();
    index.par_sort_unstable();
    // Equal keys are rare (80 random bits each): find their runs and order them by the rest.
    let key = |e: &u128| e >> 48;
    let mut i = 0;
    while i < index.len() {
        let mut j = i + 1;
        while j < index.len() && key(&index[j]) == key(&index[i]) {
            j += 1;
        }
        if j - i > 1 {
            index[i..j].sort_by(|a, b| record(data, *a).cmp(record(data, *b)));
        }
        i = j;
    }
    index
}

/// Copies the records in `order` into `out`, [`BATCH`] records at a time, each batch
/// gathered by rayon's threads (random reads) and written in one call.
fn write_in_order(data: &[u8], order: &[u128], mut out: impl Write) -> Result<()> {
    let mut buf = vec![0u8; BATCH.min(order.len().max(1)) * RECORD];
    for batch in order.chunks(BATCH) {
        let buf = &mut buf[..batch.len() * RECORD];
        buf.par_chunks_mut(RECORD).zip(batch).for_each(|(dst, &e)| dst.copy_from_slice(record(data, e)));
        out.write_all(buf)?;
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// TeraGen records plus duplicated keys with different rest bytes, in two files and a
    /// hidden one: the output is the records sorted as whole byte strings (the order
    /// terasort writes: key first, then the rest).
    #[test]
    fn output_is_the_records_sorted_by_key_then_rest() {
        let dir = tempfile::tempdir().unwrap();
        let mut records: Vec<Vec<u8>> = (0..5000).map(|i| quern_examples::tera::record(i).to_vec()).collect();
        for i in 0..50 {
            let mut dup = records[i * 7].clone();
            dup[99] ^= 0x5a;
            records.push(dup);
            records.push(records[i * 3].clone());
        }
        let (a, b) = records.split_at(2600);
        std::fs::write(dir.path().join("part-00000"), a.concat()).unwrap();
        std::fs::write(dir.path().join("part-00001"), b.concat()).unwrap();
        std::fs::write(dir.path().join("_SUCCESS"), b"").unwrap();
        std::fs::write(dir.path().join(".hidden"), [0u8; 100]).unwrap();
        let out = dir.path().join("sorted");
        run(dir.path(), &out).unwrap();
        records.sort();
        assert_eq!(std::fs::read(&out).unwrap(), records.concat());
    }

    #[test]
    fn a_partial_record_is_one_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("odd"), [1u8; 150]).unwrap();
        let err = format!("{:#}", run(dir.path(), &dir.path().join("out")).unwrap_err());
        assert!(err.contains("not a whole number of 100-byte records"), "{err}");
    }
}
