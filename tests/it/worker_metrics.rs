//! `quern worker --http`: a worker process serves `/healthz` and Prometheus `/metrics`
//! (behind the cluster's token), and after a word count the metrics moved as the job did:
//! attempts at least the tasks the worker ran, bytes and records read and written, store
//! requests at least the job's `STORE_*` counters. The endpoint ends with the worker.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use quern_tests::data::{read_output, word_count, write_corpus};
use quern_tests::{Mode, TestCluster, eventually};

/// `GET path` over plain HTTP/1.1: the status code and the body.
fn http_get(base: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let addr = base.trim().trim_start_matches("http://").trim_end_matches('/');
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n").unwrap();
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    let code = resp.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (code, body)
}

/// Every sample of a Prometheus text page, keyed `name{label="value",...}` with the labels
/// sorted (none: the name alone).
fn scrape(body: &str) -> HashMap<String, f64> {
    let lines = body.lines().map(|l| Ok(l.to_string()));
    let parsed = prometheus_parse::Scrape::parse(lines).expect("metrics parse as Prometheus text");
    parsed
        .samples
        .into_iter()
        .filter_map(|s| {
            let value = match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => return None,
            };
            let mut labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
            labels.sort();
            let key = if labels.is_empty() { s.metric } else { format!("{}{{{}}}", s.metric, labels.join(",")) };
            Some((key, value))
        })
        .collect()
}

fn get(m: &HashMap<String, f64>, key: &str) -> f64 {
    *m.get(key).unwrap_or_else(|| panic!("no sample {key} in {m:?}"))
}

#[test]
fn a_workers_metrics_follow_a_word_count_and_healthz_answers() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "metrics-token\n").unwrap();
    let tf = token_file.display().to_string();
    let mut c =
        TestCluster::start_with_clients(Mode::Processes, 0, &["--token-file", &tf], &["--token-file", &tf]).unwrap();
    let addr_file = c.path("worker-http");
    let af = addr_file.display().to_string();
    let w = c.start_worker_with(&["--slots", "2", "--http", "127.0.0.1:0", "--http-addr-file", &af]).unwrap();
    assert!(
        eventually(Duration::from_secs(60), || std::fs::read_to_string(&addr_file).is_ok_and(|s| s.ends_with('\n'))),
        "no address file; worker log: {}",
        c.worker_log(w)
    );
    let base = std::fs::read_to_string(&addr_file).unwrap();
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");

    assert_eq!(http_get(&base, "/healthz", None).0, 200);
    assert_eq!(http_get(&base, "/metrics", None).0, 401, "the worker has a token: /metrics needs it");
    let (code, body) = http_get(&base, "/metrics", Some("metrics-token"));
    assert_eq!(code, 200);
    let before = scrape(&body);
    assert_eq!(get(&before, "quern_worker_slots"), 2.0);
    assert_eq!(get(&before, "quern_worker_running_attempts"), 0.0);

    let input = c.path("input");
    write_corpus(&input, 4, 30_000, 5).unwrap();
    let output = c.path("out");
    let job = c
        .submit(&[
            "--job",
            "wordcount",
            "--input",
            &format!("{}/", input.display()),
            "--output",
            &output.display().to_string(),
            "--reducers",
            "3",
        ])
        .unwrap();
    let status = c.wait_job(&job, Duration::from_secs(300), |_| {}).unwrap();
    assert_eq!(status["state"], "succeeded", "{status}");
    assert_eq!(read_output(&output, 3, true), word_count(&input));

    let (code, body) = http_get(&base, "/metrics", Some("metrics-token"));
    assert_eq!(code, 200);
    let after = scrape(&body);
    let counter = |name: &str| status["counters"][name].as_f64().unwrap_or_else(|| panic!("no {name}: {status}"));
    let ended = |kind: &str, outcome: &str| {
        after
            .get(&format!("quern_worker_attempts_ended_total{{kind=\"{kind}\",outcome=\"{outcome}\"}}"))
            .copied()
            .unwrap_or(0.0)
    };
    // The only worker ran every task: at least one succeeded attempt each.
    let maps = status["maps"]["total"].as_f64().unwrap();
    let reduces = status["reduces"]["total"].as_f64().unwrap();
    assert_eq!((maps, reduces), (4.0, 3.0));
    assert!(ended("map", "succeeded") >= maps, "{after:?}");
    assert!(ended("reduce", "succeeded") >= reduces, "{after:?}");
    assert!(get(&after, "quern_worker_attempt_duration_seconds_count{kind=\"map\"}") >= maps);
    // Records and bytes: at least what the committed attempts reported (backups add to them).
    assert!(get(&after, "quern_worker_records_in_total{kind=\"map\"}") >= counter("MAP_INPUT_RECORDS"));
    assert!(get(&after, "quern_worker_records_out_total{kind=\"reduce\"}") >= counter("REDUCE_OUTPUT_RECORDS"));
    assert!(counter("REDUCE_OUTPUT_RECORDS") > 0.0);
    assert!(get(&after, "quern_worker_shuffle_written_bytes_total") >= counter("MAP_OUTPUT_BYTES"));
    assert!(get(&after, "quern_worker_shuffle_read_bytes_total") >= counter("REDUCE_SHUFFLE_BYTES"));
    assert!(counter("REDUCE_SHUFFLE_BYTES") > 0.0);
    // The process's store requests include the job's (and the store check at registration).
    for (op, name) in [("get", "STORE_GET"), ("put", "STORE_PUT")] {
        let key = format!("quern_worker_store_requests_total{{op=\"{op}\"}}");
        assert!(get(&after, &key) >= counter(name), "{key}: {after:?}");
        assert!(get(&after, &key) > get(&before, &key), "{key} did not move");
    }
    assert!(get(&after, "quern_worker_store_read_bytes_total") >= counter("STORE_BYTES_READ"));
    assert!(get(&after, "quern_worker_store_written_bytes_total") >= counter("STORE_BYTES_WRITTEN"));
    assert!(counter("STORE_BYTES_WRITTEN") > 0.0);

    // The endpoint stops with the worker.
    c.signal_worker(w, libc::SIGTERM);
    assert!(eventually(Duration::from_secs(60), || c.worker_exited(w)), "worker did not stop");
    let addr = base.trim().trim_start_matches("http://").to_string();
    assert!(TcpStream::connect(addr).is_err(), "the endpoint outlived its worker");
}
