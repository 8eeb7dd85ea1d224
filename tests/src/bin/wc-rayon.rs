//! Baseline for the word count benchmark: a good hand-written parallel program, no framework.
//! Reads every file under INPUT whole, cuts the bytes into chunks at line ends, counts each
//! chunk's words into its own `HashMap<&[u8], u64>` (FxHash) on rayon's threads, merges the
//! maps, and writes `WORD<TAB>COUNT` lines sorted by word to OUTPUT: the same output as
//! `quern run --job wordcount` (a word is a maximal run of `char::is_alphabetic` characters;
//! invalid UTF-8 counts as U+FFFD), so the benchmark can check the two agree.
//!
//! ```text
//! wc-rayon INPUT_DIR OUTPUT_FILE
//! ```

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::io::Write;

use anyhow::{Context, Result, bail};
use rayon::prelude::*;
use rustc_hash::FxHasher;

type Counts<'a> = HashMap<&'a [u8], u64, BuildHasherDefault<FxHasher>>;

/// Bytes per chunk: enough to amortise a map per chunk, small enough to balance the threads.
const CHUNK: usize = 8 << 20;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output] = &args[..] else { bail!("usage: wc-rayon INPUT_DIR OUTPUT_FILE") };
    let files = quern_tests::data::files_under(std::path::Path::new(input));
    let data: Vec<Vec<u8>> = files
        .par_iter()
        .map(|f| std::fs::read(f).with_context(|| format!("{}", f.display())))
        .collect::<Result<_>>()?;
    let chunks: Vec<&[u8]> = data.iter().flat_map(|d| chunks(d)).collect();
    let counts = chunks
        .par_iter()
        .map(|c| count(c))
        .reduce(Counts::default, |a, b| if a.len() >= b.len() { merge(a, b) } else { merge(b, a) });
    let mut sorted: Vec<(&[u8], u64)> = counts.into_iter().collect();
    sorted.par_sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(output)?);
    for (w, n) in sorted {
        out.write_all(w)?;
        writeln!(out, "\t{n}")?;
    }
    out.flush()?;
    Ok(())
}

/// Adds the smaller map's counts into the bigger one.
fn merge<'a>(mut big: Counts<'a>, small: Counts<'a>) -> Counts<'a> {
    for (w, n) in small {
        *big.entry(w).or_insert(0) += n;
    }
    big
}

/// `data` cut after a `\n` about every [`CHUNK`] bytes.
fn chunks(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while rest.len() > CHUNK {
        let cut = rest[CHUNK..].iter().position(|&b| b == b'\n').map_or(rest.len(), |i| CHUNK + i + 1);
        let (head, tail) = rest.split_at(cut);
        out.push(head);
        rest = tail;
    }
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

/// The words of one chunk: a byte scan when it is ASCII, else by characters (a chunk with
/// other text borrows nothing and leaks its decoded copy, which lives to the end anyway).
fn count(chunk: &[u8]) -> Counts<'_> {
    let mut counts = Counts::default();
    if chunk.is_ascii() {
        for w in chunk.split(|b| !b.is_ascii_alphabetic()).filter(|w| !w.is_empty()) {
            *counts.entry(w).or_insert(0) += 1;
        }
        return counts;
    }
    let text: &'static str = String::from_utf8_lossy(chunk).into_owned().leak();
    for w in text.split(|c: char| !c.is_alphabetic()).filter(|w| !w.is_empty()) {
        *counts.entry(w.as_bytes()).or_insert(0) += 1;
    }
    counts
}
