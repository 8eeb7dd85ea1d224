//! The coordinator over HTTP (`--http`) on real clusters: the pages, the REST API against
//! the CLI's `--json`, Prometheus metrics moving as a job runs, user strings escaped on every
//! page, the probes on a leader and a standby, and one job page rendered by headless Chromium.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use quern_tests::data::{read_output, word_count, write_corpus};
use quern_tests::{Mode, TestCluster, http_get, wait_bounded};
use serde_json::Value;

const HTTP: [&str; 2] = ["--http", "127.0.0.1:0"];

/// `GET path`, which must answer 200; the body.
fn get_ok(base: &str, path: &str) -> String {
    let (code, body) = http_get(base, path, None);
    assert_eq!(code, 200, "GET {path}: {body}");
    body
}

fn get_json(base: &str, path: &str) -> Value {
    let body = get_ok(base, path);
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
}

/// `/metrics`, parsed as Prometheus text: (name, sorted labels) -> value.
fn metrics(base: &str) -> BTreeMap<(String, String), f64> {
    use prometheus_parse::{Scrape, Value as V};
    let body = get_ok(base, "/metrics");
    let scrape = Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).expect("Prometheus text");
    let mut out = BTreeMap::new();
    for s in scrape.samples {
        let v = match s.value {
            V::Counter(v) | V::Gauge(v) | V::Untyped(v) => v,
            V::Histogram(h) => h.last().map_or(0.0, |b| b.count),
            V::Summary(_) => continue,
        };
        let labels: BTreeMap<_, _> = s.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        out.insert((s.metric, format!("{labels:?}")), v);
    }
    out
}

/// The sum of metric `name` over the series whose labels contain every `want` pair.
fn sum(m: &BTreeMap<(String, String), f64>, name: &str, want: &[(&str, &str)]) -> f64 {
    m.iter()
        .filter(|((n, l), _)| n == name && want.iter().all(|(k, v)| l.contains(&format!("{k:?}: {v:?}"))))
        .map(|(_, v)| v)
        .sum()
}

/// A word count over a small generated corpus on `c`: its id once it succeeded, checked
/// against a sequential count.
fn word_count_job(c: &mut TestCluster, reducers: usize) -> String {
    let input = c.path("input");
    write_corpus(&input, 3, 30_000, 7).unwrap();
    let output = c.path("output");
    let (i, o, r) = (format!("{}/", input.display()), output.display().to_string(), reducers.to_string());
    let id = c.submit(&["--job", "wordcount", "--input", &i, "--output", &o, "--reducers", &r]).unwrap();
    let s = c.wait_job(&id, Duration::from_secs(120), |_| {}).unwrap();
    assert_eq!(s["state"], "succeeded", "{s}");
    assert_eq!(read_output(&output, reducers, true), word_count(&input));
    id
}

fn cli_json(c: &TestCluster, cmd: &str, args: &[&str]) -> Value {
    let out = c.cli(cmd, args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Drops what changes between two reads of a worker.
fn steady(mut w: Value) -> Value {
    if let Some(o) = w.as_object_mut() {
        o.remove("last_heartbeat_ms_ago");
    }
    w
}

#[test]
fn pages_rest_and_metrics_show_a_word_count() {
    let mut c = TestCluster::start_with(Mode::Processes, 2, &HTTP).unwrap();
    let http = c.http_url().unwrap();
    let before = metrics(&http);
    let id = word_count_job(&mut c, 3);

    // REST = the CLI's --json (old paths too).
    let status = cli_json(&c, "status", &[&id, "--json"]);
    assert_eq!(get_json(&http, &format!("/api/v1/jobs/{id}")), status);
    assert_eq!(get_json(&http, &format!("/api/jobs/{id}")), status);
    let tasks = cli_json(&c, "tasks", &[&id, "--json"]);
    assert_eq!(get_json(&http, &format!("/api/v1/jobs/{id}/tasks")), tasks);
    assert_eq!(get_json(&http, "/api/v1/jobs"), cli_json(&c, "list", &["--json"]));
    let workers = cli_json(&c, "workers", &["--json"]);
    let rest_workers = get_json(&http, "/api/v1/workers");
    let steady_all = |v: &Value| v.as_array().unwrap().iter().cloned().map(steady).collect::<Vec<_>>();
    assert_eq!(steady_all(&rest_workers), steady_all(&workers));
    assert_eq!(workers.as_array().unwrap().len(), 2);

    // Every attempt has a row in the table and a rect in the timeline.
    let attempts: usize = tasks.as_array().unwrap().iter().map(|t| t["attempt_list"].as_array().unwrap().len()).sum();
    let (maps, reduces) = (status["maps"]["total"].as_u64().unwrap(), status["reduces"]["total"].as_u64().unwrap());
    assert!(attempts as u64 >= maps + reduces, "{tasks}");
    let page = get_ok(&http, &format!("/jobs/{id}"));
    assert!(page.contains(&format!("Job {id}")));
    assert_eq!(page.matches("<tr class=\"attempt\">").count(), attempts, "{page}");
    assert_eq!(page.matches("<rect class=\"attempt\"").count(), attempts, "{page}");
    let records = status["counters"]["MAP_INPUT_RECORDS"].as_i64().unwrap();
    assert!(page.contains(&format!("<td>MAP_INPUT_RECORDS</td><td class=\"num\">{records}</td>")), "{page}");
    assert!(!page.contains("http-equiv=\"refresh\""), "a finished job's page does not refresh");
    let longest = get_ok(&http, &format!("/jobs/{id}?sort=duration"));
    assert_eq!(longest.matches("<tr class=\"attempt\">").count(), attempts);

    let overview = get_ok(&http, "/");
    assert!(overview.contains(&format!("href=\"/jobs/{id}\"")), "{overview}");
    for w in workers.as_array().unwrap() {
        let wid = w["id"].as_str().unwrap();
        assert!(overview.contains(&format!("href=\"/workers/{wid}\"")));
        assert_eq!(steady(get_json(&http, &format!("/api/v1/workers/{wid}"))), steady(w.clone()));
        let page = get_ok(&http, &format!("/workers/{wid}"));
        let ran = tasks
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|t| t["attempt_list"].as_array().unwrap())
            .filter(|a| a["worker"] == wid)
            .count();
        assert_eq!(page.matches("<tr class=\"attempt\">").count(), ran, "{page}");
    }

    // Counters moved by this job, exactly.
    let after = metrics(&http);
    let moved = |name: &str, want: &[(&str, &str)]| sum(&after, name, want) - sum(&before, name, want);
    assert_eq!(moved("quern_jobs_submitted_total", &[]), 1.0);
    assert_eq!(moved("quern_attempts_ended_total", &[("outcome", "succeeded")]), (maps + reduces) as f64);
    assert_eq!(moved("quern_attempts_started_total", &[]), attempts as f64);
    assert_eq!(
        moved("quern_attempt_duration_seconds_count", &[("kind", "map"), ("outcome", "succeeded")]),
        maps as f64
    );
    let read = status["counters"]["MAP_INPUT_BYTES"].as_f64().unwrap();
    assert_eq!(moved("quern_bytes_read_total", &[]), read);
    assert_eq!(sum(&after, "quern_jobs", &[("state", "succeeded")]), 1.0);
    assert_eq!(sum(&after, "quern_workers", &[]), 2.0);
    assert_eq!(sum(&after, "quern_leader", &[]), 1.0);
    assert!(moved("quern_store_requests_total", &[("kind", "put")]) >= 1.0, "_SUCCESS at least");

    // Unknown and malformed ids: 404, and the coordinator still answers.
    for path in [
        "/jobs/job_1_9999",
        "/jobs/..%2f..%2fetc",
        "/workers/nobody",
        "/api/v1/jobs/job_1_9999",
        "/api/v1/workers/x",
        "/nowhere",
    ] {
        assert_eq!(http_get(&http, path, None).0, 404, "{path}");
    }
    assert_eq!(http_get(&http, &format!("/workers/{}", "w".repeat(5000)), None).0, 404);
    assert_eq!(get_ok(&http, "/healthz"), "ok\n");
    assert_eq!(get_ok(&http, "/readyz"), "ok\n");
}

#[test]
fn user_strings_come_back_escaped_on_every_page() {
    let evil = "<script>alert(1)</script>";
    let mut c = TestCluster::start_with(Mode::Processes, 0, &HTTP).unwrap();
    c.start_worker_with(&["--host", evil, "--rack", evil]).unwrap();
    let http = c.http_url().unwrap();
    let input = c.path("input");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::write(input.join("a.txt"), format!("one {evil} two\n")).unwrap();
    let (i, o) = (format!("{}/", input.display()), c.path("out").display().to_string());
    let word = format!("panic_word={evil}");
    let id = c.submit(&["--job", "crashtest", "--param", &word, "--input", &i, "--output", &o]).unwrap();
    let s = c.wait_job(&id, Duration::from_secs(120), |_| {}).unwrap();
    assert_eq!(s["state"], "failed", "{s}");
    let worker = c.workers_json()[0]["id"].as_str().unwrap().to_string();
    for path in
        ["/".to_string(), format!("/jobs/{id}"), format!("/jobs/{id}?sort=duration"), format!("/workers/{worker}")]
    {
        let page = get_ok(&http, &path);
        assert!(!page.contains("<script"), "{path}: {page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{path}: {page}");
    }
    // The failed attempts are listed with their worker and message.
    let page = get_ok(&http, &format!("/jobs/{id}"));
    assert!(page.contains("<table id=\"failures\">") && page.contains("bad record"), "{page}");
}

#[test]
fn readyz_is_ok_on_the_leader_and_503_on_a_standby() {
    let mut c = TestCluster::start_with(Mode::Processes, 0, &HTTP).unwrap();
    let (_, n) = c.start_standby().unwrap();
    let leader = c.http_url().unwrap();
    let ok = quern_tests::eventually(Duration::from_secs(30), || c.http_url_of(n).is_some());
    assert!(ok, "{}", c.coordinator_log(n));
    let standby = c.http_url_of(n).unwrap();
    assert_eq!(http_get(&leader, "/readyz", None), (200, "ok\n".to_string()));
    assert_eq!(http_get(&standby, "/healthz", None), (200, "ok\n".to_string()));
    let (code, why) = http_get(&standby, "/readyz", None);
    assert_eq!(code, 503);
    assert!(why.starts_with("standby") && why.lines().count() == 1, "{why}");
    // It has no state to show: not an empty list that looks like the truth.
    assert_eq!(http_get(&standby, "/api/v1/jobs", None).0, 503);
    assert_eq!(http_get(&standby, "/", None).0, 503);
    let m = metrics(&standby);
    assert_eq!(sum(&m, "quern_leader", &[]), 0.0);
}

#[test]
fn probes_skip_the_token_and_everything_else_needs_it() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "t0ken\n").unwrap();
    let tf = token_file.display().to_string();
    let args = ["--token-file", &tf, "--http", "127.0.0.1:0"];
    let c = TestCluster::start_with_clients(Mode::Processes, 0, &args, &["--token-file", &tf]).unwrap();
    let http = c.http_url().unwrap();
    assert_eq!(http_get(&http, "/healthz", None).0, 200);
    assert_eq!(http_get(&http, "/readyz", None).0, 200);
    for path in ["/metrics", "/", "/api/v1/jobs", "/api/v1/workers", "/jobs/job_1_0001"] {
        assert_eq!(http_get(&http, path, None).0, 401, "{path}");
    }
    assert_eq!(http_get(&http, "/metrics", Some("t0ken")).0, 200);
}

/// Headless Chromium renders a finished job's page: its attempt rows and timeline rects are
/// in the DOM, and a screenshot is kept under the target directory
/// (`target/tmp/web/job-page.png`, printed with `--nocapture`).
#[test]
fn a_browser_renders_a_finished_job_page() {
    let chromium = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|b| Command::new(b).arg("--version").output().is_ok_and(|o| o.status.success()))
        .expect("headless Chromium is needed: install Debian's `chromium` package (apt-get install -y chromium)");
    let mut c = TestCluster::start_with(Mode::Processes, 3, &HTTP).unwrap();
    let http = c.http_url().unwrap();
    let id = word_count_job(&mut c, 4);
    let tasks = cli_json(&c, "tasks", &[&id, "--json"]);
    let attempts: usize = tasks.as_array().unwrap().iter().map(|t| t["attempt_list"].as_array().unwrap().len()).sum();
    let url = format!("{}jobs/{id}", http);
    let profile = tempfile::tempdir().unwrap();
    let browse = |extra: &[&str]| {
        let mut cmd = Command::new(chromium);
        cmd.args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg(&url);
        wait_bounded(quern_tests::spawn_command(cmd, &[]), Duration::from_secs(120))
    };
    let dom = browse(&["--dump-dom"]);
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert_eq!(dom.matches("<tr class=\"attempt\">").count(), attempts, "{dom}");
    assert_eq!(dom.matches("<rect class=\"attempt\"").count(), attempts, "{dom}");
    assert!(dom.contains(&format!("Job {id}")));

    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("web");
    std::fs::create_dir_all(&shots).unwrap();
    let shot = shots.join("job-page.png");
    let _ = std::fs::remove_file(&shot);
    let out = browse(&[&format!("--screenshot={}", shot.display()), "--window-size=1280,1800"]);
    let png = std::fs::read(&shot).unwrap_or_default();
    assert!(png.starts_with(b"\x89PNG"), "no screenshot: {}", String::from_utf8_lossy(&out.stderr));
    eprintln!("screenshot of the job page: {}", shot.display());
}
