//! Jobs end to end on real clusters, compared with sequential computations.

use quern_tests::data::{files_under, index, read_output, word_count, word_lengths, write_corpus};
use quern_tests::{Mode, TestCluster, ok_stdout, quern, run_binary};

/// Several files, several splits per file (8 KiB splits of ~40 KB files), R = 5.
fn corpus(c: &TestCluster, seed: u64) -> std::path::PathBuf {
    let dir = c.path("input");
    write_corpus(&dir, 4, 40_000, seed).unwrap();
    dir
}

fn submit_wait(
    c: &TestCluster,
    job: &str,
    input: &std::path::Path,
    output: &std::path::Path,
    extra: &[&str],
) -> serde_json::Value {
    let input = format!("{}/", input.display());
    let output = output.display().to_string();
    let mut args = vec![
        "--job",
        job,
        "--input",
        &input,
        "--output",
        &output,
        "--reducers",
        "5",
        "--split-size",
        "8KiB",
        "--wait",
        "--json",
    ];
    args.extend_from_slice(extra);
    let out = c.cli("submit", &args);
    serde_json::from_str(&ok_stdout(&out)).unwrap()
}

#[test]
fn wordcount_on_three_worker_processes_matches_a_sequential_count() {
    let c = TestCluster::start(Mode::Processes, 3).unwrap();
    let input = corpus(&c, 1);
    let output = c.path("out");
    let status = submit_wait(&c, "wordcount", &input, &output, &[]);
    assert_eq!(status["state"], "succeeded");
    let maps = status["maps"]["total"].as_u64().unwrap();
    assert!(maps >= 4 * 4, "several splits per file, got {maps} map tasks");
    assert_eq!(status["maps"]["done"], maps);
    assert_eq!(status["reduces"]["done"], 5);

    let expected = word_count(&input);
    assert_eq!(read_output(&output, 5, true), expected);

    // Counters of committed attempts, checked against the input.
    let lines: u64 = (0..4)
        .map(|f| {
            std::fs::read(input.join(format!("doc-{f:02}.txt")))
                .unwrap()
                .split(|&b| b == b'\n')
                .filter(|_| true)
                .count() as u64
                - 1
        })
        .sum();
    assert_eq!(status["counters"]["MAP_INPUT_RECORDS"], lines);
    let words: u64 = expected.values().map(|v| v.parse::<u64>().unwrap()).sum();
    assert_eq!(status["counters"]["WORDS"], words);
    // In-mapper combining: a block's pairs are its distinct words.
    let pairs = status["counters"]["MAP_OUTPUT_RECORDS"].as_u64().unwrap();
    assert!(pairs >= expected.len() as u64 && pairs < words, "{pairs} pairs for {words} words");
    assert_eq!(status["counters"]["REDUCE_OUTPUT_RECORDS"], expected.len() as u64);
    assert!(status["counters"]["MALFORMED_INPUT_LINES"].as_u64().unwrap() > 0);
    assert_eq!(
        status["locality"]["remote"].as_u64().unwrap()
            + status["locality"]["node_local"].as_u64().unwrap()
            + status["locality"]["rack_local"].as_u64().unwrap(),
        maps
    );

    // Intermediate data is gone once the job ends.
    assert_eq!(c.scratch_left(), Vec::<std::path::PathBuf>::new());

    // status, list and tasks agree.
    let id = status["id"].as_str().unwrap();
    let list: serde_json::Value = serde_json::from_str(&ok_stdout(&c.cli("list", &["--json"]))).unwrap();
    assert!(list.as_array().unwrap().iter().any(|j| j["id"] == id && j["state"] == "succeeded"));
    let tasks: serde_json::Value = serde_json::from_str(&ok_stdout(&c.cli("tasks", &[id, "--json"]))).unwrap();
    assert_eq!(tasks.as_array().unwrap().len() as u64, maps + 5);
    let workers: serde_json::Value = serde_json::from_str(&ok_stdout(&c.cli("workers", &["--json"]))).unwrap();
    assert_eq!(workers.as_array().unwrap().len(), 3);
}

#[test]
fn indexer_on_three_worker_processes_matches_a_sequential_index() {
    let c = TestCluster::start(Mode::Processes, 3).unwrap();
    let input = corpus(&c, 2);
    let output = c.path("out");
    let status = submit_wait(&c, "indexer", &input, &output, &[]);
    assert_eq!(status["state"], "succeeded");
    assert_eq!(read_output(&output, 5, true), index(&input));
}

#[test]
fn wordcount_in_process_cluster_matches() {
    let c = TestCluster::start(Mode::InProcess, 2).unwrap();
    let input = corpus(&c, 3);
    let output = c.path("out");
    let status = submit_wait(&c, "wordcount", &input, &output, &[]);
    assert_eq!(status["state"], "succeeded");
    assert_eq!(read_output(&output, 5, true), word_count(&input));
}

#[test]
fn quern_run_embedded_matches() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input");
    write_corpus(&input, 3, 30_000, 4).unwrap();
    let output = dir.path().join("out");
    let (i, o) = (format!("{}/", input.display()), output.display().to_string());
    let out = quern(&[
        "run",
        "--job",
        "wordcount",
        "--input",
        &i,
        "--output",
        &o,
        "--reducers",
        "5",
        "--split-size",
        "8KiB",
        "--workers",
        "3",
        "--json",
    ]);
    let status: serde_json::Value = serde_json::from_str(&ok_stdout(&out)).unwrap();
    assert_eq!(status["state"], "succeeded");
    assert_eq!(read_output(&output, 5, true), word_count(&input));

    let output2 = dir.path().join("out2");
    let o2 = output2.display().to_string();
    let out =
        quern(&["run", "--job", "indexer", "--input", &i, "--output", &o2, "--reducers", "5", "--split-size", "8KiB"]);
    ok_stdout(&out);
    assert_eq!(read_output(&output2, 5, true), index(&input));
}

#[test]
fn grep_counts_matches() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input");
    write_corpus(&input, 2, 20_000, 5).unwrap();
    let output = dir.path().join("out");
    let (i, o) = (format!("{}/", input.display()), output.display().to_string());
    ok_stdout(&quern(&[
        "run",
        "--job",
        "grep",
        "--param",
        "pattern=[Dd]ata|fox",
        "--input",
        &i,
        "--output",
        &o,
        "--reducers",
        "2",
    ]));
    let wc = word_count(&input);
    let got = read_output(&output, 2, true);
    let expected: std::collections::BTreeMap<String, String> =
        ["Data", "data", "fox"].iter().filter_map(|w| wc.get(*w).map(|n| (w.to_string(), n.clone()))).collect();
    assert_eq!(got, expected);
}

#[test]
fn a_users_own_binary_runs_its_job_in_process_and_on_a_cluster_of_its_workers() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input");
    write_corpus(&input, 2, 20_000, 6).unwrap();
    let (i, o) = (format!("{}/", input.display()), dir.path().join("local").display().to_string());
    ok_stdout(&run_binary(
        "my-quern",
        &["run", "--job", "wordlengths", "--input", &i, "--output", &o, "--reducers", "3"],
    ));
    let expected = word_lengths(&input);
    assert_eq!(read_output(&dir.path().join("local"), 3, false), expected);

    // The same job on a cluster whose only worker is the user's binary.
    let c = TestCluster::start(Mode::Processes, 0).unwrap();
    let mut worker = std::process::Command::new(quern_tests::binary("my-quern"))
        .args(["worker", "--coordinator", c.url()])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let o = dir.path().join("cluster").display().to_string();
    let out = run_binary(
        "my-quern",
        &[
            "submit",
            "--coordinator",
            c.url(),
            "--job",
            "wordlengths",
            "--input",
            &i,
            "--output",
            &o,
            "--reducers",
            "3",
            "--wait",
        ],
    );
    let _ = worker.kill();
    let _ = worker.wait();
    ok_stdout(&out);
    assert_eq!(read_output(&dir.path().join("cluster"), 3, false), expected);
}

#[test]
fn gzip_and_zstd_inputs_count_like_the_plain_text() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain");
    write_corpus(&plain, 3, 30_000, 7).unwrap();
    let packed = dir.path().join("packed");
    std::fs::create_dir_all(&packed).unwrap();
    let text = |f: usize| std::fs::read(plain.join(format!("doc-{f:02}.txt"))).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&text(0)).unwrap();
    std::fs::write(packed.join("doc-00.txt.gz"), gz.finish().unwrap()).unwrap();
    let mut zst = Vec::new();
    ruzstd::encoding::compress(&text(1)[..], &mut zst, ruzstd::encoding::CompressionLevel::Fastest);
    std::fs::write(packed.join("doc-01.txt.zst"), zst).unwrap();
    std::fs::write(packed.join("doc-02.txt"), text(2)).unwrap();

    let (i, o) = (format!("{}/", packed.display()), dir.path().join("out").display().to_string());
    // Small splits: the plain file is cut, the compressed ones are one split each.
    let out = quern(&[
        "run",
        "--job",
        "wordcount",
        "--input",
        &i,
        "--output",
        &o,
        "--reducers",
        "3",
        "--split-size",
        "4KiB",
        "--json",
    ]);
    let status: serde_json::Value = serde_json::from_str(&ok_stdout(&out)).unwrap();
    assert_eq!(read_output(&dir.path().join("out"), 3, true), word_count(&plain));
    let maps = status["maps"]["total"].as_u64().unwrap();
    let plain = quern_api::split::InputObject { url: "doc-02.txt".into(), size: text(2).len() as u64 };
    let plain_splits = quern_api::split::compute_splits(&[plain], 4096, quern_api::InputFormat::Auto).len() as u64;
    assert!(plain_splits > 1);
    assert_eq!(maps, plain_splits + 2, "the compressed objects are one split each");
}

/// Lines of a file as Hadoop counts them: pieces between newlines, a final piece without one.
fn line_count(bytes: &[u8]) -> u64 {
    let n = bytes.iter().filter(|&&b| b == b'\n').count() as u64;
    n + u64::from(!bytes.is_empty() && !bytes.ends_with(b"\n"))
}

#[test]
fn counters_are_exact_even_when_an_attempt_failed_and_the_combiner_does_not_change_the_output() {
    let c = TestCluster::start(Mode::Processes, 2).unwrap();
    let input = c.path("input");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::write(input.join("a.txt"), "the cat sat\nthe dog\n\nbird bird bird\n").unwrap();
    std::fs::write(input.join("b.txt"), "Cat and dog\nand the end").unwrap();
    std::fs::write(input.join("c.txt"), "x\n".repeat(50)).unwrap();
    let lines: u64 =
        ["a.txt", "b.txt", "c.txt"].iter().map(|f| line_count(&std::fs::read(input.join(f)).unwrap())).sum();
    let expected = word_count(&input);
    let words: u64 = expected.values().map(|v| v.parse::<u64>().unwrap()).sum();
    let i = format!("{}/", input.display());
    let marker = c.path("failed-once").display().to_string();
    let fail_once = format!("fail_once={marker}");

    let run = |job: &str, out: &str, params: &[&str]| -> serde_json::Value {
        let o = c.path(out).display().to_string();
        let mut args = vec!["--job", job, "--input", &i, "--output", &o, "--reducers", "2", "--wait", "--json"];
        for p in params {
            args.extend_from_slice(&["--param", p]);
        }
        let status: serde_json::Value = serde_json::from_str(&ok_stdout(&c.cli("submit", &args))).unwrap();
        assert_eq!(read_output(&c.path(out), 2, true), expected, "{job} {params:?}");
        status
    };
    // crashtest is word count; its first map attempt fails once and is retried.
    let retried = run("crashtest", "out-retried", &[&fail_once]);
    assert!(std::path::Path::new(&marker).exists(), "the forced failure happened");
    let tasks = c.tasks(retried["id"].as_str().unwrap()).unwrap();
    assert_eq!(tasks.iter().filter(|t| t["attempts"] == 2).count(), 1, "exactly one task ran twice");
    let k = &retried["counters"];
    assert_eq!(k["MAP_INPUT_RECORDS"], lines);
    assert_eq!(k["MAP_OUTPUT_RECORDS"], words);
    assert_eq!(k["COMBINE_INPUT_RECORDS"], words);
    assert_eq!(k["REDUCE_INPUT_GROUPS"], expected.len() as u64);
    assert_eq!(k["REDUCE_OUTPUT_RECORDS"], expected.len() as u64);
    assert_eq!(
        k["MAP_INPUT_BYTES"],
        ["a.txt", "b.txt", "c.txt"].iter().map(|f| std::fs::metadata(input.join(f)).unwrap().len()).sum::<u64>()
    );
    assert_eq!(k["REDUCE_INPUT_RECORDS"], k["COMBINE_OUTPUT_RECORDS"]);
    assert_eq!(k["SPILLED_RECORDS"], k["COMBINE_OUTPUT_RECORDS"]);
    assert_eq!(
        k["OUTPUT_BYTES"],
        files_under(&c.path("out-retried")).iter().map(|f| f.metadata().unwrap().len()).sum::<u64>()
    );

    // The combiner changes the shuffle, never the output.
    let with = run("wordcount", "out-with", &[]);
    let without = run("wordcount", "out-without", &["combiner=false"]);
    assert_eq!(without["counters"]["REDUCE_INPUT_RECORDS"], words, "every pair shuffled");
    assert_eq!(without["counters"]["MAP_OUTPUT_RECORDS"], words);
    assert_eq!(without["counters"]["SPILLED_RECORDS"], words);
    assert!(without["counters"].get("COMBINE_INPUT_RECORDS").is_none());
    assert!(with["counters"]["REDUCE_INPUT_RECORDS"].as_u64().unwrap() < words);
}

#[test]
fn topwords_is_a_two_stage_pipeline_tracked_as_one_job() {
    let c = TestCluster::start(Mode::Processes, 3).unwrap();
    let input = corpus(&c, 8);
    let output = c.path("out");
    let status = submit_wait(&c, "topwords", &input, &output, &["--param", "n=7"]);
    assert_eq!(status["state"], "succeeded");
    assert_eq!((status["stage"].as_u64(), status["stages"].as_u64()), (Some(2), Some(2)));
    assert_eq!(status["job"], "topwords");
    // Exactly part-00000 and _SUCCESS, whatever --reducers said for the word count stage.
    let text = std::fs::read_to_string(output.join("part-00000")).unwrap();
    let mut names: Vec<String> =
        std::fs::read_dir(&output).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, ["_SUCCESS", "part-00000"]);
    // Sequentially: counts, by descending count then word bytes, the first 7.
    let mut counts: Vec<(u64, String)> = word_count(&input).into_iter().map(|(w, n)| (n.parse().unwrap(), w)).collect();
    counts.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.as_bytes().cmp(b.1.as_bytes())));
    let expected: String = counts.iter().take(7).map(|(n, w)| format!("{w}\t{n}\n")).collect();
    assert_eq!(text, expected);
    // Both stages' counters, and nothing left in the store.
    let words: u64 = counts.iter().map(|(n, _)| n).sum();
    assert_eq!(status["counters"]["WORDS"].as_u64().unwrap(), words);
    assert_eq!(c.scratch_left(), Vec::<std::path::PathBuf>::new());
    let bad = c.cli("submit", &["--job", "topwords", "--param", "n=0", "--input", "/tmp", "--output", "/tmp/never"]);
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("\"n\""));
}

#[test]
fn wordstats_is_a_dag_of_two_independent_stages_joined_by_a_third() {
    let c = TestCluster::start(Mode::Processes, 2).unwrap();
    let input = corpus(&c, 12);
    let output = c.path("out");
    let status = submit_wait(&c, "wordstats", &input, &output, &[]);
    assert_eq!(status["state"], "succeeded", "{status}");
    assert_eq!((status["stage"].as_u64(), status["stages"].as_u64()), (Some(3), Some(3)));
    assert_eq!(status["stage_job"], "join");
    // Sequentially: word count and inverted index, joined on the word.
    let counts = word_count(&input);
    let docs = index(&input);
    let expected: std::collections::BTreeMap<String, String> =
        counts.iter().map(|(w, n)| (w.clone(), format!("{n}\t{}", docs[w]))).collect();
    assert_eq!(read_output(&output, 5, true), expected);
    // Stage 1 read the job's input, not stage 0's output: it mapped as many lines as stage 0.
    let lines: u64 = (0..4)
        .map(|f| {
            let bytes = std::fs::read(input.join(format!("doc-{f:02}.txt"))).unwrap();
            bytes.iter().filter(|&&b| b == b'\n').count() as u64 + u64::from(!bytes.ends_with(b"\n"))
        })
        .sum();
    assert_eq!(
        status["counters"]["MAP_INPUT_RECORDS"].as_u64().unwrap(),
        2 * lines + 2 * counts.len() as u64,
        "stages 0 and 1 each read the input's {lines} lines, stage 2 both their outputs"
    );
    assert_eq!(c.scratch_left(), Vec::<std::path::PathBuf>::new());
}

#[test]
fn sort_orders_all_lines_globally_across_parts() {
    let c = TestCluster::start(Mode::Processes, 3).unwrap();
    let input = corpus(&c, 9);
    let output = c.path("out");
    let status = submit_wait(&c, "sort", &input, &output, &[]);
    assert_eq!(status["state"], "succeeded");
    // Sequentially: every line of every visible file, lossily decoded, in byte order.
    let mut expected: Vec<String> = Vec::new();
    for f in 0..4 {
        let bytes = std::fs::read(input.join(format!("doc-{f:02}.txt"))).unwrap();
        let mut pieces: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
        if bytes.ends_with(b"\n") {
            pieces.pop();
        }
        expected
            .extend(pieces.iter().map(|l| String::from_utf8_lossy(l.strip_suffix(b"\r").unwrap_or(l)).into_owned()));
    }
    expected.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    let mut got = Vec::new();
    let mut nonempty = 0;
    for p in 0..5 {
        let text = std::fs::read_to_string(output.join(format!("part-{p:05}"))).unwrap();
        nonempty += usize::from(!text.is_empty());
        got.extend(text.lines().map(str::to_string));
    }
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "parts concatenated in name order are globally sorted");
    assert!(nonempty >= 4, "sampled cut points spread the lines ({nonempty} of 5 parts used)");
}

#[test]
fn join_pairs_every_left_row_with_every_right_row_of_its_key() {
    use rand::{Rng, SeedableRng};
    let c = TestCluster::start(Mode::Processes, 2).unwrap();
    let input = c.path("tables");
    std::fs::create_dir_all(&input).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let mut users = String::new();
    let mut orders = String::new();
    for id in 0..300 {
        if rng.random_ratio(4, 5) {
            users.push_str(&format!("u{id}\tname{id}\tcity{}\n", id % 7));
        }
        for k in 0..rng.random_range(0..3) {
            orders.push_str(&format!("{}\tu{id}\titem{k}\n", 1000 + id * 3 + k));
        }
    }
    std::fs::write(input.join("users.tsv"), &users).unwrap();
    std::fs::write(input.join("orders.tsv"), &orders).unwrap();
    // Sequentially: users keyed by column 0, orders by column 1.
    let mut expected = Vec::new();
    for u in users.lines() {
        let uc: Vec<&str> = u.split('\t').collect();
        for o in orders.lines() {
            let oc: Vec<&str> = o.split('\t').collect();
            if uc[0] == oc[1] {
                expected.push(format!("{}\t{}\t{}\t{}\t{}", uc[0], uc[1], uc[2], oc[0], oc[2]));
            }
        }
    }
    expected.sort();
    // Column 1 is the key of orders and column 0 of users: join orders (left) on column 1
    // against users rewritten with the key in column 1 too.
    let users_key1: String = users.lines().map(|l| format!("x\t{l}\n")).collect();
    std::fs::write(input.join("users.tsv"), users_key1).unwrap();
    let (i, o) = (format!("{}/", input.display()), c.path("out").display().to_string());
    ok_stdout(&c.cli(
        "submit",
        &[
            "--job",
            "join",
            "--param",
            "left=users",
            "--param",
            "key=1",
            "--input",
            &i,
            "--output",
            &o,
            "--reducers",
            "3",
            "--wait",
        ],
    ));
    let mut got = Vec::new();
    for p in 0..3 {
        let text = std::fs::read_to_string(c.path("out").join(format!("part-{p:05}"))).unwrap();
        let keys: Vec<&str> = text.lines().map(|l| l.split('\t').next().unwrap()).collect();
        assert!(keys.windows(2).all(|w| w[0].as_bytes() <= w[1].as_bytes()), "part {p} sorted by key");
        // Output rows: key, left rest (x, name, city), right rest (order id, item).
        got.extend(text.lines().map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            format!("{}\t{}\t{}\t{}\t{}", f[0], f[2], f[3], f[4], f[5])
        }));
    }
    got.sort();
    assert!(!expected.is_empty());
    assert_eq!(got, expected);
}

#[test]
fn secondarysort_lists_each_keys_values_in_order() {
    use rand::{Rng, SeedableRng};
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input");
    std::fs::create_dir_all(&input).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut expected: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for f in 0..3 {
        let mut text = String::new();
        for _ in 0..2000 {
            let (k, v) = (format!("k{}", rng.random_range(0..50)), format!("v{}", rng.random_range(0..100_000)));
            text.push_str(&format!("{k}\t{v}\n"));
            expected.entry(k).or_default().push(v);
        }
        std::fs::write(input.join(format!("pairs-{f}.tsv")), text).unwrap();
    }
    let expected: std::collections::BTreeMap<String, String> = expected
        .into_iter()
        .map(|(k, mut vs)| {
            vs.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            (k, vs.join(","))
        })
        .collect();
    let (i, o) = (format!("{}/", input.display()), dir.path().join("out").display().to_string());
    ok_stdout(&quern(&[
        "run",
        "--job",
        "secondarysort",
        "--input",
        &i,
        "--output",
        &o,
        "--reducers",
        "3",
        "--split-size",
        "8KiB",
    ]));
    assert_eq!(read_output(&dir.path().join("out"), 3, false), expected);
}

#[test]
fn side_data_reaches_every_task_and_bad_side_data_is_refused() {
    let c = TestCluster::start(Mode::Processes, 2).unwrap();
    let input = corpus(&c, 12);
    let stop = c.path("stopwords.txt");
    std::fs::write(&stop, "the\nData\n\nfox\n").unwrap();
    let side = format!("stop={}", stop.display());
    let status = submit_wait(&c, "wordcount", &input, &c.path("out"), &["--side", &side, "--param", "stopwords=stop"]);
    assert_eq!(status["state"], "succeeded");
    let mut expected = word_count(&input);
    for w in ["the", "Data", "fox"] {
        assert!(expected.remove(w).is_some(), "the corpus has {w:?}");
    }
    assert_eq!(read_output(&c.path("out"), 5, true), expected);

    let i = format!("{}/", input.display());
    let o = c.path("never").display().to_string();
    let missing = c.cli("submit", &["--job", "wordcount", "--input", &i, "--output", &o, "--param", "stopwords=stop"]);
    assert!(!missing.status.success() && String::from_utf8_lossy(&missing.stderr).contains("no side data named"));
    let gone =
        c.cli("submit", &["--job", "wordcount", "--input", &i, "--output", &o, "--side", "stop=/nonexistent/stop.txt"]);
    assert!(!gone.status.success() && String::from_utf8_lossy(&gone.stderr).contains("side data"));
    assert!(!c.path("never").exists());
}
