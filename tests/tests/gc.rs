//! Cleaning up after jobs: `quern run` waits for its job's cleanup, a coordinator that takes
//! over sweeps what crashed jobs left in the store, and `quern gc` lists (dry run) or deletes
//! leftovers without touching the data of running jobs.
#![allow(clippy::unwrap_used, missing_docs)]

use quern_tests::data::{files_under, read_output, word_count, write_corpus};
use quern_tests::{ok_stdout, quern};

#[test]
fn quern_run_returns_after_its_cleanup_and_leaves_nothing_under_jobs() {
    // Three runs: before `run` waited for the cleanup, most runs (not all) left map outputs.
    for seed in 41..44 {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("input");
        write_corpus(&input, 3, 20_000, seed).unwrap();
        let (store, out) = (dir.path().join("store"), dir.path().join("out"));
        let (i, s, o) = (format!("{}/", input.display()), store.display().to_string(), out.display().to_string());
        let started = std::time::Instant::now();
        let args = ["--input", &i, "--output", &o, "--store", &s, "--reducers", "3", "--split-size", "2KiB"];
        ok_stdout(&quern(&[&["run", "--job", "wordcount"][..], &args].concat()));
        eprintln!("quern run took {:?}", started.elapsed());
        assert_eq!(read_output(&out, 3, true), word_count(&input));
        // The store keeps its journal and lease, and nothing of the job.
        let left = files_under(&store.join("jobs"));
        assert!(left.is_empty(), "left under jobs/: {left:?}");
    }
}
