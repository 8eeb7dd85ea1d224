//! Memory bounded by `--task-memory`, not by input: word count and TeraSort on workers with
//! a tiny budget, so that maps spill many sorted runs to local disk, merges go in passes and
//! reducers fetch to disk, checked against sequential computations done here, and the
//! workers' spill directories left empty.

use std::path::Path;

use quern_tests::data::{read_output, word_count};
use quern_tests::{Mode, TestCluster, ok_stdout};

use crate::terasort::{concat_parts, reference_records};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const BUDGET: &str = "64KiB";

/// A cluster of `workers` worker processes with the tiny budget, spilling under `spill`.
fn cluster(workers: usize) -> (TestCluster, std::path::PathBuf) {
    let mut c = TestCluster::start(Mode::Processes, 0).unwrap();
    let spill = c.path("spill");
    std::fs::create_dir_all(&spill).unwrap();
    let dir = spill.display().to_string();
    for _ in 0..workers {
        c.start_worker_with(&["--task-memory", BUDGET, "--spill-dir", &dir]).unwrap();
    }
    (c, spill)
}

fn submit(c: &TestCluster, args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.extend(["--wait", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&ok_stdout(&c.cli("submit", &all))).unwrap();
    assert_eq!(status["state"], "succeeded", "{status}");
    status
}

fn counter(status: &serde_json::Value, name: &str) -> u64 {
    status["counters"][name].as_u64().unwrap_or(0)
}

/// Text files of words drawn from a large vocabulary (so that a key's values land in many
/// spills and must be combined across them), with some words in non-Latin scripts.
fn write_words(dir: &Path, files: usize, words: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let mut rng = StdRng::seed_from_u64(7);
    let vocabulary: Vec<String> = (0..3000)
        .map(|i| {
            let len = rng.random_range(2..9);
            let mut w: String = (0..len).map(|_| char::from(b'a' + rng.random_range(0..26u8))).collect();
            if i % 50 == 0 {
                w.push('é');
            }
            w
        })
        .collect();
    for f in 0..files {
        let mut text = String::new();
        for i in 0..words {
            text.push_str(&vocabulary[rng.random_range(0..vocabulary.len())]);
            text.push_str(if i % 12 == 11 { "\n" } else { " 1 " });
        }
        std::fs::write(dir.join(format!("words-{f}.txt")), text).unwrap();
    }
}

fn assert_spill_dirs_empty(spill: &Path) {
    let left: Vec<_> = std::fs::read_dir(spill).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(left.is_empty(), "attempts leave no local files behind: {left:?}");
}

#[test]
fn word_count_with_a_tiny_task_memory_spills_many_runs_and_counts_right() {
    let (c, spill) = cluster(2);
    let input = c.path("input");
    write_words(&input, 3, 12_000);
    let expected = word_count(&input);
    assert!(expected.len() > 2000, "a large vocabulary: {}", expected.len());
    let i = format!("{}/", input.display());
    for (name, combiner) in [("combined", "combiner=true"), ("plain", "combiner=false")] {
        let out = c.path(name);
        let o = out.display().to_string();
        let s =
            submit(&c, &["--job", "wordcount", "--input", &i, "--output", &o, "--reducers", "3", "--param", combiner]);
        assert_eq!(read_output(&out, 3, true), expected, "{name}");
        let spills = counter(&s, "MAP_SPILLS");
        assert!(spills >= 50, "{name}: many spills, not {spills}: {s}");
        assert!(counter(&s, "MERGE_PASSES") > 0, "{name}: merges in passes: {s}");
        assert!(counter(&s, "REDUCE_SHUFFLE_DISK_BYTES") > 0, "{name}: segments fetched to disk: {s}");
        // Hadoop's count: spilled records are written more than once.
        assert!(counter(&s, "SPILLED_RECORDS") > counter(&s, "REDUCE_INPUT_RECORDS"), "{name}: {s}");
        assert_eq!(counter(&s, "REDUCE_INPUT_GROUPS"), expected.len() as u64, "{name}");
    }
    assert_spill_dirs_empty(&spill);
}

#[test]
fn terasort_with_a_tiny_task_memory_sorts_through_spills() {
    const ROWS: u64 = 20_000;
    let (c, spill) = cluster(2);
    let gen_dir = c.path("gen");
    let g = gen_dir.display().to_string();
    submit(&c, &["--job", "teragen", "--output", &g, "--param", &format!("rows={ROWS}"), "--maps", "3"]);
    let (input, _) = concat_parts(&gen_dir);
    assert!(input == reference_records(ROWS), "teragen writes Hadoop's records");

    let sorted = c.path("sorted");
    let o = sorted.display().to_string();
    let i = format!("{g}/");
    let s =
        submit(&c, &["--job", "terasort", "--input", &i, "--output", &o, "--reducers", "4", "--split-size", "512KiB"]);
    let (out, parts) = concat_parts(&sorted);
    assert_eq!(parts, 4);
    let mut expected: Vec<&[u8]> = input.chunks(100).collect();
    expected.sort_by(|a, b| a[..10].cmp(&b[..10]).then(a.cmp(b)));
    assert!(out.chunks(100).eq(expected.iter().copied()), "terasort output is the sorted input");
    let spills = counter(&s, "MAP_SPILLS");
    assert!(spills >= 100, "many spills, not {spills}: {s}");
    assert!(counter(&s, "MERGE_PASSES") > 0, "{s}");
    assert!(counter(&s, "REDUCE_SHUFFLE_DISK_BYTES") > 0, "{s}");
    assert_eq!(counter(&s, "REDUCE_OUTPUT_RECORDS"), ROWS);
    // The output goes up from local files: parts far beyond the memory budget.
    let biggest = (0..4).map(|p| std::fs::metadata(sorted.join(format!("part-{p:05}"))).unwrap().len()).max();
    assert!(biggest.unwrap() > 4 * 64 * 1024, "{biggest:?}");
    assert_spill_dirs_empty(&spill);
}
