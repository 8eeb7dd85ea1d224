//! Expert baseline for the word count benchmark: what a careful hand-tuned program does, to
//! show how far the framework and the plain `HashMap` program (`wc-rayon`) are from the
//! machine. Same output as `wc-rayon` and `quern run --job wordcount`, byte for byte.
//!
//! - Input: every visible file under INPUT (base names starting with `_` or `.` are skipped,
//!   as quern does), cut into 1 MiB pieces that threads claim in turn and read with `pread`
//!   into one reused buffer each, so memory stays small whatever the input size. A piece is
//!   moved to start and end just after a "cut" byte (ASCII, not a letter): no word and no
//!   UTF-8 sequence spans a cut, so pieces count independently.
//! - Tokenizer: ASCII text is scanned 64 bytes at a time into a bit mask of letters (SSE2 on
//!   x86_64, word-at-a-time arithmetic elsewhere); word starts and ends are the mask's edges.
//!   This is `quern_api::words`, the scan the built-in `wordcount` uses too, so the two
//!   programs differ by the framework, not by the kernel.
//!   A line holding other bytes takes the exact path: its valid UTF-8 runs split with
//!   `char::is_alphabetic`, invalid bytes separating words (as U+FFFD would).
//! - Counting: an open-addressing table per thread, linear probing, 32-byte slots with keys
//!   of up to 16 bytes inline (compared as one `u128`), longer keys in an arena, hashed with
//!   a folded multiply. The tables are merged at the end, sorted and written in one write.
//!
//! ```text
//! wc-expert INPUT_DIR OUTPUT_FILE
//! ```
//! Threads: as many as rayon would use (`RAYON_NUM_THREADS`, else one per core), like
//! `wc-rayon`.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result};
use quern_api::words::for_each_ascii_word;

/// Bytes per piece: small enough to stay in cache between the ASCII check and the scan, and
/// to balance the threads; large enough that claiming and reading cost nothing.
const PIECE: u64 = 1 << 20;
/// Read step when a piece's end has to move forward to the next cut byte.
const STEP: u64 = 64 << 10;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output] = &args[..] else {
        eprintln!("usage: wc-expert INPUT_DIR OUTPUT_FILE");
        return ExitCode::from(2);
    };
    match run(Path::new(input), Path::new(output)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wc-expert: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(input: &Path, output: &Path) -> Result<()> {
    let files = quern_tests::bench::input_files(input)?;
    let table = count_files(&files, PIECE, rayon::current_num_threads())?;
    let out = table.render();
    std::fs::write(output, out).with_context(|| format!("writing {}", output.display()))
}

/// The word counts of `files`, read in pieces of `piece` bytes by `threads` threads.
fn count_files(files: &[PathBuf], piece: u64, threads: usize) -> Result<Table> {
    let mut opened = Vec::with_capacity(files.len());
    let mut pieces = Vec::new();
    for (i, path) in files.iter().enumerate() {
        let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let len = f.metadata().with_context(|| format!("reading {}", path.display()))?.len();
        pieces.extend((0..len.div_ceil(piece)).map(|k| (i, k * piece, ((k + 1) * piece).min(len))));
        opened.push((f, len, path));
    }
    let next = AtomicUsize::new(0);
    let tables: Vec<Result<Table>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads.max(1))
            .map(|_| {
                s.spawn(|| {
                    let (mut table, mut buf) = (Table::new(), Vec::new());
                    while let Some(&(i, start, end)) = pieces.get(next.fetch_add(1, Ordering::Relaxed)) {
                        let (f, len, path) = &opened[i];
                        let seg = read_piece(f, *len, start, end, &mut buf)
                            .with_context(|| format!("reading {}", path.display()))?;
                        count_segment(&buf[seg], &mut table);
                    }
                    Ok(table)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|_| Err(anyhow::anyhow!("a counting thread panicked"))))
            .collect()
    });
    let mut tables = tables.into_iter().collect::<Result<Vec<_>>>()?;
    tables.sort_by_key(|t| std::cmp::Reverse(t.len));
    let mut tables = tables.into_iter();
    let mut all = tables.next().unwrap_or_else(Table::new);
    for t in tables {
        all.merge(&t);
    }
    Ok(all)
}

/// A non-letter ASCII byte: words and UTF-8 sequences never span one.
fn is_cut(b: u8) -> bool {
    b < 0x80 && !b.is_ascii_alphabetic()
}

/// Reads the piece `start..end` of a file of `len` bytes into `buf`, moved to begin after
/// the first cut byte at or after `start - 1` and to end after the first at or after
/// `end - 1` (or at the file's end), so consecutive pieces tile the file. Returns the
/// range of `buf` to count (empty when the piece lies inside one long word).
fn read_piece(f: &File, len: u64, start: u64, end: u64, buf: &mut Vec<u8>) -> Result<std::ops::Range<usize>> {
    buf.clear();
    let from = start.saturating_sub(1);
    append_at(f, from, end - from, buf)?;
    let begin = if start == 0 {
        0
    } else {
        match buf.iter().position(|&b| is_cut(b)) {
            Some(p) => p + 1,
            None => return Ok(0..0),
        }
    };
    let mut pos = end;
    while pos < len && !buf.last().is_some_and(|&b| is_cut(b)) {
        let old = buf.len();
        let n = STEP.min(len - pos);
        append_at(f, pos, n, buf)?;
        if let Some(p) = buf[old..].iter().position(|&b| is_cut(b)) {
            buf.truncate(old + p + 1);
            break;
        }
        pos += n;
    }
    Ok(begin..buf.len())
}

fn append_at(f: &File, offset: u64, n: u64, buf: &mut Vec<u8>) -> Result<()> {
    let old = buf.len();
    buf.resize(old + usize::try_from(n)?, 0);
    f.read_exact_at(&mut buf[old..], offset)?;
    Ok(())
}

/// Counts the words of text that starts and ends at a cut (or at a file's ends).
fn count_segment(seg: &[u8], table: &mut Table) {
    if seg.is_ascii() {
        return ascii_words(seg, table);
    }
    for line in seg.split_inclusive(|&b| b == b'\n') {
        if line.is_ascii() {
            ascii_words(line, table);
        } else {
            unicode_words(line, table);
        }
    }
}

/// The exact path: `char::is_alphabetic` over the valid UTF-8 runs; an invalid run is a
/// separator, as the U+FFFD that lossy decoding puts there is not alphabetic.
fn unicode_words(line: &[u8], table: &mut Table) {
    let mut at = 0;
    for chunk in line.utf8_chunks() {
        let valid = chunk.valid();
        let mut start = None;
        for (i, c) in valid.char_indices() {
            match (c.is_alphabetic(), start) {
                (true, None) => start = Some(i),
                (false, Some(s)) => {
                    table.add(&line[at + s..at + i], 1);
                    start = None;
                }
                _ => {}
            }
        }
        if let Some(s) = start {
            table.add(&line[at + s..at + valid.len()], 1);
        }
        at += valid.len() + chunk.invalid().len();
    }
}

/// Counts the words of ASCII `text` (found 64 bytes at a time by letter masks).
fn ascii_words(text: &[u8], table: &mut Table) {
    for_each_ascii_word(text, |r| table.add_at(text, r.start, r.end));
}

/// One slot of [`Table`]: a key of at most [`INLINE`] bytes lives in `key` (zero-padded);
/// a longer one in the arena, its offset in `key[..8]`. `len == 0` marks an empty slot
/// (words are never empty).
#[derive(Clone, Copy, Default)]
struct Slot {
    key: [u8; 16],
    hash: u32,
    len: u32,
    count: u64,
}

const INLINE: usize = 16;
const K0: u64 = 0x243f_6a88_85a3_08d3;
const K1: u64 = 0x1319_8a2e_0370_7344;
const K2: u64 = 0xa409_3822_299f_31d0;

/// The high and low halves of a 64x64 product, xored: a cheap, well-mixing step.
fn fold(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

fn hash_inline(k: u128) -> u64 {
    fold((k as u64) ^ K0, ((k >> 64) as u64) ^ K1)
}

fn hash_long(w: &[u8]) -> u64 {
    let mut h = K2;
    let mut chunks = w.chunks_exact(8);
    for c in &mut chunks {
        h = fold(h ^ u64::from_le_bytes(c.try_into().unwrap_or([0; 8])), K1);
    }
    let mut tail = [0u8; 8];
    tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    fold(h ^ u64::from_le_bytes(tail) ^ (w.len() as u64), K0)
}

/// Word -> count, open addressing with linear probing, at most half full.
struct Table {
    slots: Vec<Slot>,
    /// log2 of the slot count.
    bits: u32,
    len: usize,
    arena: Vec<u8>,
}

impl Table {
    fn new() -> Self {
        Table { slots: vec![Slot::default(); 1 << 12], bits: 12, len: 0, arena: Vec::new() }
    }

    /// Adds one occurrence of `text[s..e]`; reads up to 16 bytes from `s` when `text` has
    /// them, to load a short key in one go.
    #[inline]
    fn add_at(&mut self, text: &[u8], s: usize, e: usize) {
        let len = e - s;
        if len > INLINE || s + INLINE > text.len() {
            return self.add(&text[s..e], 1);
        }
        let raw = u128::from_le_bytes(text[s..s + INLINE].try_into().unwrap_or([0; 16]));
        let k = if len == INLINE { raw } else { raw & ((1u128 << (8 * len)) - 1) };
        self.add_inline(k, len as u32, 1);
    }

    /// Adds `count` occurrences of `w`.
    fn add(&mut self, w: &[u8], count: u64) {
        if w.len() <= INLINE {
            let mut key = [0u8; 16];
            key[..w.len()].copy_from_slice(w);
            return self.add_inline(u128::from_le_bytes(key), w.len() as u32, count);
        }
        let h = (hash_long(w) >> 32) as u32;
        let mask = self.slots.len() - 1;
        let mut i = (h >> (32 - self.bits)) as usize;
        loop {
            let slot = &mut self.slots[i];
            if slot.len == 0 {
                let at = self.arena.len() as u64;
                self.arena.extend_from_slice(w);
                let mut key = [0u8; 16];
                key[..8].copy_from_slice(&at.to_le_bytes());
                *slot = Slot { key, hash: h, len: w.len() as u32, count };
                return self.grown();
            }
            if slot.hash == h && slot.len as usize == w.len() {
                let at = u64::from_le_bytes(slot.key[..8].try_into().unwrap_or([0; 8])) as usize;
                if &self.arena[at..at + w.len()] == w {
                    slot.count += count;
                    return;
                }
            }
            i = (i + 1) & mask;
        }
    }

    #[inline]
    fn add_inline(&mut self, k: u128, len: u32, count: u64) {
        let h = (hash_inline(k) >> 32) as u32;
        let mask = self.slots.len() - 1;
        let mut i = (h >> (32 - self.bits)) as usize;
        loop {
            let slot = &mut self.slots[i];
            if slot.hash == h && slot.len == len && u128::from_le_bytes(slot.key) == k {
                slot.count += count;
                return;
            }
            if slot.len == 0 {
                *slot = Slot { key: k.to_le_bytes(), hash: h, len, count };
                return self.grown();
            }
            i = (i + 1) & mask;
        }
    }

    /// Counts a new key; doubles the slots past half full. The index is the top bits of the
    /// stored hash, so growing needs no key.
    fn grown(&mut self) {
        self.len += 1;
        if self.len * 2 <= self.slots.len() {
            return;
        }
        self.bits += 1;
        let old = std::mem::replace(&mut self.slots, vec![Slot::default(); 1 << self.bits]);
        let mask = self.slots.len() - 1;
        for s in old.into_iter().filter(|s| s.len != 0) {
            let mut i = (s.hash >> (32 - self.bits)) as usize;
            while self.slots[i].len != 0 {
                i = (i + 1) & mask;
            }
            self.slots[i] = s;
        }
    }

    fn word<'a>(&'a self, s: &'a Slot) -> &'a [u8] {
        let len = s.len as usize;
        if len <= INLINE {
            return &s.key[..len];
        }
        let at = u64::from_le_bytes(s.key[..8].try_into().unwrap_or([0; 8])) as usize;
        &self.arena[at..at + len]
    }

    fn entries(&self) -> impl Iterator<Item = (&[u8], u64)> {
        self.slots.iter().filter(|s| s.len != 0).map(|s| (self.word(s), s.count))
    }

    fn merge(&mut self, other: &Table) {
        for (w, n) in other.entries() {
            self.add(w, n);
        }
    }

    /// `WORD<TAB>COUNT` lines sorted by word bytes.
    fn render(&self) -> Vec<u8> {
        let mut sorted: Vec<(&[u8], u64)> = self.entries().collect();
        sorted.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut out = Vec::with_capacity(sorted.iter().map(|(w, _)| w.len() + 8).sum());
        for (w, n) in sorted {
            out.extend_from_slice(w);
            out.push(b'\t');
            out.extend_from_slice(n.to_string().as_bytes());
            out.push(b'\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::collections::BTreeMap;

    use rand::{Rng, SeedableRng};

    use super::*;

    fn counted(t: &Table) -> BTreeMap<String, String> {
        String::from_utf8(t.render())
            .unwrap()
            .lines()
            .map(|l| l.split_once('\t').map(|(k, v)| (k.to_string(), v.to_string())).unwrap())
            .collect()
    }

    /// Pieces of every size (down to a few bytes, so pieces fall inside words and UTF-8
    /// sequences) and thread counts give the sequential reference's counts, on text with
    /// Unicode, CRLF, digits and invalid bytes, hidden files skipped.
    #[test]
    fn counts_match_the_sequential_reference_for_any_piece_size() {
        let dir = tempfile::tempdir().unwrap();
        quern_tests::data::write_corpus(dir.path(), 3, 20_000, 11).unwrap();
        let expected = quern_tests::data::word_count(dir.path());
        assert!(expected.len() > 20);
        let files = quern_tests::bench::input_files(dir.path()).unwrap();
        assert_eq!(files.len(), 3);
        for (piece, threads) in [(1, 1), (3, 2), (7, 2), (64, 3), (1000, 2), (1 << 20, 2)] {
            let got = counted(&count_files(&files, piece, threads).unwrap());
            assert_eq!(got, expected, "piece {piece}, {threads} threads");
        }
    }

    /// ASCII words of every length around the inline limit and the 64-byte block edges,
    /// enough distinct ones to grow the table several times.
    #[test]
    fn ascii_scan_matches_a_plain_split() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let mut text = Vec::new();
        for _ in 0..40_000 {
            let len = rng.random_range(1..=40);
            text.extend((0..len).map(|_| if rng.random_ratio(1, 2) { b'a' } else { b'A' + rng.random_range(0..26) }));
            text.extend(std::iter::repeat_n(b" ,.\n9@[`{"[rng.random_range(0..9)], rng.random_range(1..3)));
        }
        for cut in [text.len(), text.len() - 1, 63, 64, 65, 17] {
            let t = &text[..cut];
            let mut expected: BTreeMap<String, u64> = BTreeMap::new();
            for w in t.split(|b| !b.is_ascii_alphabetic()).filter(|w| !w.is_empty()) {
                *expected.entry(String::from_utf8(w.to_vec()).unwrap()).or_default() += 1;
            }
            let mut table = Table::new();
            ascii_words(t, &mut table);
            let expected: BTreeMap<String, String> = expected.into_iter().map(|(k, v)| (k, v.to_string())).collect();
            assert_eq!(counted(&table), expected, "first {cut} bytes");
        }
    }
}
