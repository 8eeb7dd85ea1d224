//! Load: 50 word-count jobs submitted at once by 5 concurrent clients to a 3-worker
//! multi-process cluster. Every job's output must be exact; the coordinator's peak memory
//! is printed so runs can be compared.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use quern_tests::data::{read_output, word_count, write_corpus};
use quern_tests::{Mode, TestCluster, quern};

const CLIENTS: usize = 5;
const JOBS_PER_CLIENT: usize = 10;

/// A process's peak resident memory (`VmHWM`), in KiB, if the system says.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn fifty_concurrent_word_counts_from_five_clients_are_all_exact() {
    let c = TestCluster::start(Mode::Processes, 3).unwrap();
    let input = c.path("input");
    write_corpus(&input, 3, 12_000, 50).unwrap();
    let expected = word_count(&input);
    let input_url = format!("file://{}/", input.display());
    let url = c.url().to_string();
    let outputs: Vec<Vec<std::path::PathBuf>> =
        (0..CLIENTS).map(|k| (0..JOBS_PER_CLIENT).map(|j| c.path(&format!("out-{k}-{j}"))).collect()).collect();

    // Five clients, each submitting its ten jobs one after the other, all at once.
    let ids: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = outputs
            .iter()
            .map(|outs| {
                let (url, input_url) = (&url, &input_url);
                s.spawn(move || {
                    outs.iter()
                        .map(|out| {
                            let o = out.display().to_string();
                            let r = quern(&[
                                "submit",
                                "--coordinator",
                                url,
                                "--job",
                                "wordcount",
                                "--input",
                                input_url,
                                "--output",
                                &o,
                                "--reducers",
                                "2",
                                "--split-size",
                                "6KiB",
                            ]);
                            assert!(r.status.success(), "submit: {}", String::from_utf8_lossy(&r.stderr));
                            String::from_utf8_lossy(&r.stdout).trim().to_string()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), CLIENTS * JOBS_PER_CLIENT, "distinct job ids");

    // One `list` per poll sees every job; bounded in time.
    let started = Instant::now();
    let mut states: BTreeMap<String, String> = BTreeMap::new();
    while started.elapsed() < Duration::from_secs(600) {
        let out = quern(&["list", "--coordinator", &url, "--json"]);
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        states = list
            .as_array()
            .map(|jobs| {
                jobs.iter()
                    .map(|j| {
                        (j["id"].as_str().unwrap_or("").to_string(), j["state"].as_str().unwrap_or("").to_string())
                    })
                    .collect()
            })
            .unwrap_or_default();
        if ids.iter().all(|id| matches!(states.get(id).map(String::as_str), Some("succeeded" | "failed" | "killed"))) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let took = started.elapsed();
    for id in &ids {
        assert_eq!(states.get(id).map(String::as_str), Some("succeeded"), "job {id}: {:?}", c.status(id).ok());
    }
    for out in outputs.iter().flatten() {
        assert_eq!(read_output(out, 2, true), expected, "{}", out.display());
    }
    let pid = c.coordinator_pid().unwrap();
    match peak_rss_kib(pid) {
        Some(kib) => eprintln!(
            "load: {} jobs done in {:.1}s; coordinator peak RSS (VmHWM) {kib} KiB",
            ids.len(),
            took.as_secs_f64()
        ),
        None => {
            eprintln!("load: {} jobs done in {:.1}s; no /proc to read peak RSS from", ids.len(), took.as_secs_f64())
        }
    }
}
