//! Test corpora and independent, sequential reference computations.
//!
//! The references here deliberately share no code with the framework or the example jobs:
//! they read whole files, decode them in one go and count with plain maps.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const WORDS: &[&str] = &[
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "lazy",
    "dog",
    "Quern",
    "map",
    "reduce",
    "shuffle",
    "straße",
    "café",
    "naïve",
    "Ελλάδα",
    "мир",
    "日本語",
    "data",
    "Data",
    "DATA",
    "a",
    "I",
    "x",
    "zebra",
    "apple",
    "Zürich",
    "œuvre",
];
const SEPARATORS: &[&str] = &[" ", "  ", ", ", ". ", "-", "'", "42", " 7 ", "\t", "_", "!? "];

/// Writes `files` text files of about `bytes` each into `dir`, seeded: words from a mixed
/// vocabulary (Unicode included), separators with digits and punctuation, some CRLF line
/// ends, empty lines, and now and then a byte that is not valid UTF-8.
pub fn write_corpus(dir: &Path, files: usize, bytes: usize, seed: u64) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut rng = StdRng::seed_from_u64(seed);
    for f in 0..files {
        let mut text: Vec<u8> = Vec::with_capacity(bytes + 100);
        while text.len() < bytes {
            let words = rng.random_range(0..14);
            for _ in 0..words {
                text.extend_from_slice(WORDS[rng.random_range(0..WORDS.len())].as_bytes());
                text.extend_from_slice(SEPARATORS[rng.random_range(0..SEPARATORS.len())].as_bytes());
                if rng.random_ratio(1, 500) {
                    text.push(0xff);
                }
            }
            text.extend_from_slice(if rng.random_ratio(1, 10) { b"\r\n" } else { b"\n" });
        }
        std::fs::write(dir.join(format!("doc-{f:02}.txt")), text)?;
    }
    // Hidden objects must never be read as input.
    std::fs::write(dir.join("_SUCCESS"), b"hidden hidden hidden\n")?;
    std::fs::write(dir.join(".hidden.txt"), b"hidden hidden hidden\n")?;
    Ok(())
}

fn visible_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("read corpus dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            p.is_file() && !name.starts_with('_') && !name.starts_with('.')
        })
        .collect();
    files.sort();
    files
}

/// Splits text into maximal runs of alphabetic characters.
fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for c in text.chars() {
        if c.is_alphabetic() {
            cur.push(c);
        } else if !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Sequential word count of every visible file in `dir`.
pub fn word_count(dir: &Path) -> BTreeMap<String, String> {
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for f in visible_files(dir) {
        let text = String::from_utf8_lossy(&std::fs::read(f).expect("read")).into_owned();
        for w in words(&text) {
            *counts.entry(w).or_default() += 1;
        }
    }
    counts.into_iter().map(|(k, v)| (k, v.to_string())).collect()
}

/// How many (file, partition) pairs of word count over the visible files of `dir` hold at
/// least one word with `reducers` reducers: the map output segments a reducer has to fetch
/// when each file is one map task.
pub fn word_count_segments(dir: &Path, reducers: u64) -> usize {
    visible_files(dir)
        .into_iter()
        .map(|f| {
            let text = String::from_utf8_lossy(&std::fs::read(f).expect("read")).into_owned();
            words(&text).iter().map(|w| fnv(w.as_bytes()) % reducers).collect::<BTreeSet<u64>>().len()
        })
        .sum()
}

/// Sequential inverted index of every visible file in `dir`.
pub fn index(dir: &Path) -> BTreeMap<String, String> {
    let mut docs: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in visible_files(dir) {
        let name = f.file_name().and_then(|n| n.to_str()).expect("name").to_string();
        let text = String::from_utf8_lossy(&std::fs::read(&f).expect("read")).into_owned();
        for w in words(&text) {
            docs.entry(w).or_default().insert(name.clone());
        }
    }
    docs.into_iter()
        .map(|(k, v)| {
            let names: Vec<String> = v.into_iter().collect();
            (k, format!("{} {}", names.len(), names.join(",")))
        })
        .collect()
}

/// Sequential count of words by length, for the custom-job example.
pub fn word_lengths(dir: &Path) -> BTreeMap<String, String> {
    let mut counts: BTreeMap<u64, u64> = BTreeMap::new();
    for f in visible_files(dir) {
        let text = String::from_utf8_lossy(&std::fs::read(f).expect("read")).into_owned();
        for w in words(&text) {
            *counts.entry(w.chars().count() as u64).or_default() += 1;
        }
    }
    counts.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// FNV-1a 64, written out again here so the test checks the contract, not the code.
fn fnv(bytes: &[u8]) -> u64 {
    let mut h = 0xcbf29ce484222325u64;
    for b in bytes {
        h = (h ^ u64::from(*b)).wrapping_mul(0x100000001b3);
    }
    h
}

/// Reads a finished job's output directory and checks its shape per CONTRACT.md: exactly
/// `part-00000..part-{R-1}` and `_SUCCESS`, every part sorted by key bytes, and (when
/// `check_partitioning`) every key in the part its FNV-1a hash names. Returns all pairs.
pub fn read_output(dir: &Path, reducers: usize, check_partitioning: bool) -> BTreeMap<String, String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read output {}: {e}", dir.display()))
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut expected: Vec<String> = (0..reducers).map(|i| format!("part-{i:05}")).collect();
    expected.insert(0, "_SUCCESS".into());
    expected.sort();
    assert_eq!(names, expected, "output directory holds exactly the parts and _SUCCESS");
    assert_eq!(std::fs::metadata(dir.join("_SUCCESS")).expect("_SUCCESS").len(), 0);
    let mut all = BTreeMap::new();
    for i in 0..reducers {
        let text = std::fs::read_to_string(dir.join(format!("part-{i:05}"))).expect("part is UTF-8");
        let mut prev: Option<String> = None;
        for line in text.lines() {
            let (k, v) = line.split_once('\t').unwrap_or_else(|| panic!("no tab in {line:?}"));
            if let Some(p) = &prev {
                assert!(p.as_bytes() < k.as_bytes(), "part {i} not sorted: {p:?} then {k:?}");
            }
            if check_partitioning {
                assert_eq!(fnv(k.as_bytes()) % reducers as u64, i as u64, "key {k:?} in the wrong part");
            }
            assert!(all.insert(k.to_string(), v.to_string()).is_none(), "key {k:?} in two parts");
            prev = Some(k.to_string());
        }
    }
    all
}

/// Every file under `dir`, recursively (for checking that scratch data was cleaned up).
pub fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.map_while(Result::ok) {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}
