//! Compressed inputs streamed, not read whole: `.gz` (several members) and `.zst` (several
//! frames) objects mapped by worker processes with a tiny `--task-memory`, so that each object
//! is decompressed in many small blocks and maps spill many runs. Word count (with and
//! without its combiner) and a map-only copy are checked against sequential computations
//! done here; broken objects fail their job with a clear error.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use quern_tests::data::{read_output, word_count};
use quern_tests::faults::Faults;
use quern_tests::faulty::Rule;
use quern_tests::{Mode, TestCluster, ok_stdout};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Text of `lines` lines of words from a vocabulary of 2,000, some not ASCII.
fn words(seed: u64, lines: usize) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut text = String::new();
    for _ in 0..lines {
        for i in 0..rng.random_range(0..14) {
            if i > 0 {
                text.push(' ');
            }
            // Words are letters only: the number in base 26.
            let w = rng.random_range(0..2000u32);
            let (mut n, mut word) = (w, String::new());
            while n > 0 || word.is_empty() {
                word.push(char::from(b'a' + (n % 26) as u8));
                n /= 26;
            }
            text.push_str(&word);
            if w % 97 == 0 {
                text.push('é');
            }
        }
        text.push('\n');
    }
    text.into_bytes()
}

/// `text` as gzip members of about `member` bytes each.
fn gzip_members(text: &[u8], member: usize) -> Vec<u8> {
    text.chunks(member)
        .flat_map(|piece| {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(piece).unwrap();
            gz.finish().unwrap()
        })
        .collect()
}

/// `text` as zstd frames of about `frame` bytes each.
fn zstd_frames(text: &[u8], frame: usize) -> Vec<u8> {
    text.chunks(frame)
        .flat_map(|piece| {
            let mut out = Vec::new();
            ruzstd::encoding::compress(piece, &mut out, ruzstd::encoding::CompressionLevel::Fastest);
            out
        })
        .collect()
}

/// The texts, plain in `plain/` and compressed in `packed/` (one `.gz`, one `.zst`); returns
/// the texts and the compressed bytes in all.
fn write_inputs(root: &Path) -> (Vec<Vec<u8>>, u64) {
    let (plain, packed) = (root.join("plain"), root.join("packed"));
    std::fs::create_dir_all(&plain).unwrap();
    std::fs::create_dir_all(&packed).unwrap();
    let texts = vec![words(1, 9000), words(2, 7000)];
    std::fs::write(plain.join("a.txt"), &texts[0]).unwrap();
    std::fs::write(plain.join("b.txt"), &texts[1]).unwrap();
    let gz = gzip_members(&texts[0], 100_000);
    let zst = zstd_frames(&texts[1], 70_000);
    std::fs::write(packed.join("a.txt.gz"), &gz).unwrap();
    std::fs::write(packed.join("b.txt.zst"), &zst).unwrap();
    (texts, (gz.len() + zst.len()) as u64)
}

fn counter(status: &serde_json::Value, name: &str) -> u64 {
    status["counters"][name].as_u64().unwrap_or(0)
}

fn submit(c: &TestCluster, args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.extend(["--wait", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&ok_stdout(&c.cli("submit", &all))).unwrap();
    assert_eq!(status["state"], "succeeded", "{status}");
    status
}

#[test]
fn gzip_and_zstd_objects_stream_through_a_tiny_task_memory_and_give_the_sequential_results() {
    let mut c = TestCluster::start(Mode::Processes, 0).unwrap();
    let spill = c.path("spill");
    std::fs::create_dir_all(&spill).unwrap();
    let dir = spill.display().to_string();
    for _ in 0..2 {
        c.start_worker_with(&["--task-memory", "64KiB", "--spill-dir", &dir]).unwrap();
    }
    let root = c.path("data");
    let (texts, compressed) = write_inputs(&root);
    let plain_bytes: u64 = texts.iter().map(|t| t.len() as u64).sum();
    let lines: u64 = texts.iter().map(|t| t.iter().filter(|&&b| b == b'\n').count() as u64).sum();
    // Blocks of a quarter of 64 KiB: the objects are several times larger than that.
    assert!(texts.iter().all(|t| t.len() > 10 * (16 << 10)));
    let expected = word_count(&root.join("plain"));
    let i = format!("{}/", root.join("packed").display());
    for (name, combiner) in [("combined", "combiner=true"), ("plain", "combiner=false")] {
        let out = c.path(name);
        let o = out.display().to_string();
        let s =
            submit(&c, &["--job", "wordcount", "--input", &i, "--output", &o, "--reducers", "3", "--param", combiner]);
        assert_eq!(read_output(&out, 3, true), expected, "{name}");
        assert_eq!(s["maps"]["total"], 2, "one split per compressed object: {s}");
        // Counted as the whole object would be: every decompressed byte and line once, and
        // the compressed bytes as read.
        assert_eq!(counter(&s, "MAP_INPUT_BYTES"), plain_bytes, "{name}: {s}");
        assert_eq!(counter(&s, "MAP_INPUT_RECORDS"), lines, "{name}: {s}");
        let read = ["REMOTE_BYTES_READ", "LOCAL_BYTES_READ", "CACHE_BYTES_READ"].map(|n| counter(&s, n));
        assert_eq!(read.iter().sum::<u64>(), compressed, "{name}: {s}");
        let spills = counter(&s, "MAP_SPILLS");
        assert!(spills >= 20, "{name}: many spills, not {spills}: {s}");
    }

    // Map-only: each object's part is its text, line for line, in order.
    let copy = c.path("copy");
    let o = copy.display().to_string();
    let s = submit(&c, &["--job", "identity", "--input", &i, "--output", &o]);
    assert_eq!(counter(&s, "MAP_INPUT_BYTES"), plain_bytes, "{s}");
    let mut parts: Vec<Vec<u8>> = (0..2).map(|p| std::fs::read(copy.join(format!("part-{p:05}"))).unwrap()).collect();
    parts.sort();
    let mut want = texts.clone();
    want.sort();
    assert!(parts == want, "the map-only parts are the decompressed objects");
    let left: Vec<_> = std::fs::read_dir(&spill).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(left.is_empty(), "attempts leave no local files behind: {left:?}");
}

#[test]
fn a_truncated_or_corrupt_compressed_object_fails_its_job_with_a_clear_error() {
    let mut c = TestCluster::start(Mode::InProcess, 1).unwrap();
    let text = words(3, 5000);
    let gz = gzip_members(&text, 1 << 20);
    let mut zst = zstd_frames(&text, 1 << 20);
    let mid = zst.len() / 2;
    zst[mid..mid + 64].iter_mut().for_each(|b| *b ^= 0xa5);
    for (name, bytes, what) in [("cut.txt.gz", &gz[..gz.len() / 2], "gzip"), ("bad.txt.zst", &zst[..], "")] {
        let input = c.path(&format!("in-{name}"));
        std::fs::create_dir_all(&input).unwrap();
        std::fs::write(input.join(name), bytes).unwrap();
        let i = format!("file://{}/", input.display());
        let o = c.path(&format!("out-{name}")).display().to_string();
        let id = c.submit(&["--job", "wordcount", "--input", &i, "--output", &o]).unwrap();
        let s = c.wait_job(&id, Duration::from_secs(120), |_| {}).unwrap();
        assert_eq!(s["state"], "failed", "{s}");
        let error = s["error"].as_str().unwrap_or_default();
        assert!(error.contains(name) && error.contains(what), "{error}");
    }
}

#[test]
fn a_compressed_object_corrupted_in_transit_fails_one_attempt_the_next_counts_and_caches_it() {
    let mut c = TestCluster::start_with(Mode::Processes, 0, &["--speculation", "off"]).unwrap();
    // The worker's first read of the object comes back with a byte flipped mid-stream.
    let corrupt = Faults::store(vec![Rule::corrupt().containing(".txt.gz").times(1)]);
    let cache = c.path("cache").display().to_string();
    c.start_worker_with_faults(&["--task-memory", "64KiB", "--cache-dir", &cache], &corrupt).unwrap();
    let root = c.path("data");
    write_inputs(&root);
    std::fs::remove_file(root.join("packed/b.txt.zst")).unwrap();
    std::fs::remove_file(root.join("plain/b.txt")).unwrap();
    let (i, out) = (format!("{}/", root.join("packed").display()), c.path("out"));
    let o = out.display().to_string();
    let s = submit(&c, &["--job", "wordcount", "--input", &i, "--output", &o, "--reducers", "1"]);
    assert_eq!(read_output(&out, 1, false), word_count(&root.join("plain")));
    let log = c.worker_log(0);
    assert!(log.contains("fault injected") && log.contains("gzip"), "the attempt saw broken data: {log}");
    let tasks = c.tasks(s["id"].as_str().unwrap()).unwrap();
    assert!(tasks.iter().any(|t| t["kind"] == "map" && t["attempts"].as_u64() == Some(2)), "{tasks:?}");
    assert_eq!(counter(&s, "CACHE_BYTES_READ"), 0, "{s}");
    // The attempt that read it all kept a copy: the same job again reads it from the cache.
    let size = std::fs::metadata(root.join("packed/a.txt.gz")).unwrap().len();
    let again = c.path("again");
    let o = again.display().to_string();
    let s = submit(&c, &["--job", "wordcount", "--input", &i, "--output", &o, "--reducers", "1"]);
    assert_eq!(read_output(&again, 1, false), word_count(&root.join("plain")));
    assert_eq!(counter(&s, "CACHE_BYTES_READ"), size, "{s}");
}
