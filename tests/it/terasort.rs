//! TeraGen, TeraSort and TeraValidate on a multi-process cluster, checked against records
//! generated here sequentially (plain LCG steps, hex by `format!`), a sort done here, and
//! CRC-32 sums computed here.

use std::path::Path;

use quern_tests::{Mode, TestCluster, ok_stdout};

const ROWS: u64 = 20_000;

/// Runs `name` over everything under `inputs` (none for a generator) into `output`, to
/// success; returns its final status.
fn job(c: &TestCluster, name: &str, inputs: &[&Path], output: &Path, extra: &[&str]) -> serde_json::Value {
    let output = output.display().to_string();
    let mut all = vec!["--job", name, "--output", &output, "--wait", "--json"];
    let inputs = inputs.iter().map(|i| format!("{}/", i.display())).collect::<Vec<_>>().join(",");
    if !inputs.is_empty() {
        all.extend(["--input", &inputs]);
    }
    all.extend_from_slice(extra);
    let status: serde_json::Value = serde_json::from_str(&ok_stdout(&c.cli("submit", &all))).unwrap();
    assert_eq!(status["state"], "succeeded", "{status}");
    status
}

/// Hadoop's records 0..n, generated the slow, obvious way.
pub(crate) fn reference_records(n: u64) -> Vec<u8> {
    let a: u128 = 0x2360ed051fc65da44385df649fccf645;
    let c: u128 = 0x4a696d47726179524950202020202001;
    let mut x: u128 = 0;
    let mut out = Vec::new();
    for row in 0..n {
        x = a.wrapping_mul(x).wrapping_add(c);
        let hex = format!("{x:032X}");
        out.extend_from_slice(&x.to_be_bytes()[..10]);
        out.extend_from_slice(&[0x00, 0x11]);
        out.extend_from_slice(format!("{row:032X}").as_bytes());
        out.extend_from_slice(&[0x88, 0x99, 0xAA, 0xBB]);
        for ch in hex[20..32].bytes() {
            out.extend_from_slice(&[ch; 4]);
        }
        out.extend_from_slice(&[0xCC, 0xDD, 0xEE, 0xFF]);
    }
    out
}

/// The parts of `dir` concatenated in name order (checking `_SUCCESS` is there).
pub(crate) fn concat_parts(dir: &Path) -> (Vec<u8>, usize) {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names[0], "_SUCCESS");
    let parts = &names[1..];
    (parts.iter().flat_map(|n| std::fs::read(dir.join(n)).unwrap()).collect(), parts.len())
}

fn checksum(data: &[u8]) -> String {
    let sum = data.chunks(100).fold(0u128, |acc, r| acc.wrapping_add(u128::from(crc32fast::hash(r))));
    format!("{sum:x}")
}

/// teravalidate's output: (checksum, error lines). Small splits, so that several map tasks
/// read each part and their summaries must be joined.
fn validate(c: &TestCluster, inputs: &[&Path], name: &str) -> (String, Vec<String>) {
    let out = c.path(name);
    let s = job(c, "teravalidate", inputs, &out, &["--split-size", "64KiB"]);
    assert!(s["maps"]["total"].as_u64().unwrap() > 4, "several splits per part: {s}");
    let text = std::fs::read_to_string(out.join("part-00000")).unwrap();
    let mut sum = None;
    let mut errors = Vec::new();
    for line in text.lines() {
        match line.split_once('\t') {
            Some(("checksum", v)) => sum = Some(v.to_string()),
            Some(("error", e)) => errors.push(e.to_string()),
            _ => panic!("unexpected line {line:?}"),
        }
    }
    (sum.unwrap(), errors)
}

#[test]
fn teragen_terasort_teravalidate_match_hadoop_and_a_sequential_sort() {
    let c = TestCluster::start(Mode::Processes, 3).unwrap();
    let rows = format!("rows={ROWS}");

    // TeraGen: identical with 1 and with 7 map tasks, and equal to the reference records.
    let g1 = c.path("gen-1");
    let g7 = c.path("gen-7");
    let s1 = job(&c, "teragen", &[], &g1, &["--param", &rows, "--maps", "1"]);
    let s7 = job(&c, "teragen", &[], &g7, &["--param", &rows, "--maps", "7"]);
    assert_eq!((s1["maps"]["total"].as_u64(), s7["maps"]["total"].as_u64()), (Some(1), Some(7)));
    assert_eq!(
        (&s7["generate_rows"], &s7["output_format"]),
        (&serde_json::json!(ROWS), &serde_json::json!("fixed:100"))
    );
    let (one, n1) = concat_parts(&g1);
    let (seven, n7) = concat_parts(&g7);
    assert_eq!((n1, n7), (1, 7), "a map-only job writes a part per map task");
    assert_eq!(&one[..10], b"JimGrayRIP");
    assert!(one == seven, "teragen output does not depend on the number of map tasks");
    assert!(one == reference_records(ROWS), "teragen writes Hadoop's records");
    assert_eq!(s7["counters"]["MAP_INPUT_RECORDS"], ROWS);

    // Binary records through Parquet and back: the same bytes.
    let pq = c.path("gen-parquet");
    let back = c.path("gen-back");
    job(&c, "teragen", &[], &pq, &["--param", &rows, "--maps", "3", "--output-format", "parquet"]);
    job(&c, "identity", &[&pq], &back, &["--input-format", "parquet", "--output-format", "fixed:100"]);
    assert!(concat_parts(&back).0 == one, "teragen records survive a trip through Parquet");

    // TeraSort: 4 parts that, concatenated, are the input's records sorted by key.
    let sorted = c.path("sorted");
    let s = job(&c, "terasort", &[&g7], &sorted, &["--reducers", "4", "--split-size", "64KiB"]);
    assert!(s["maps"]["total"].as_u64().unwrap() >= 14, "splits at record boundaries: {s}");
    let (out, parts) = concat_parts(&sorted);
    assert_eq!(parts, 4);
    let mut expected: Vec<&[u8]> = one.chunks(100).collect();
    expected.sort_by(|a, b| a[..10].cmp(&b[..10]).then(a.cmp(b)));
    assert!(out.chunks(100).eq(expected.iter().copied()), "terasort output is the sorted input");
    // Sampling spread the keys: no part is empty.
    for i in 0..4 {
        assert!(std::fs::metadata(sorted.join(format!("part-{i:05}"))).unwrap().len() > 0, "part {i} empty");
    }

    // TeraValidate: no errors on the sorted output, the same checksum as the input's.
    let (sum_sorted, errors) = validate(&c, &[&sorted], "valid-sorted");
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(sum_sorted, checksum(&one));
    let (sum_input, errors) = validate(&c, &[&g7], "valid-input");
    assert_eq!(sum_input, sum_sorted, "checksums of input and sorted output match");
    assert!(errors.len() > 1000, "unsorted input is full of misorders: {}", errors.len());

    // Parts in the wrong order: an error between them.
    let swapped = c.path("swapped");
    std::fs::create_dir_all(&swapped).unwrap();
    std::fs::copy(sorted.join("part-00000"), swapped.join("part-00001")).unwrap();
    std::fs::copy(sorted.join("part-00001"), swapped.join("part-00000")).unwrap();
    let (_, errors) = validate(&c, &[&swapped], "valid-swapped");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("between"), "{errors:?}");

    // Two directories whose parts have the same names: runs are told apart by URL, and the
    // order is the URLs' (a/part-00000, a/part-00001, b/part-00000, b/part-00001).
    let (a, b) = (c.path("halves/a"), c.path("halves/b"));
    for (dir, parts) in [(&a, [0, 1]), (&b, [2, 3])] {
        std::fs::create_dir_all(dir).unwrap();
        for (i, p) in parts.iter().enumerate() {
            std::fs::copy(sorted.join(format!("part-{p:05}")), dir.join(format!("part-{i:05}"))).unwrap();
        }
    }
    let (sum, errors) = validate(&c, &[&a, &b], "valid-halves");
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(sum, sum_sorted);
    let (_, errors) = validate(&c, &[&b, &a], "valid-halves-reversed");
    assert!(errors.is_empty(), "inputs are read in URL order, whatever order they are given in: {errors:?}");
}

/// Workers compressing their shuffle differently (lz4, zstd) read each other's segments:
/// the sort is exact, and the shuffle is smaller than the records it carries (uncompressed,
/// it is larger: Arrow's offsets come on top of every record).
#[test]
fn terasort_is_exact_over_a_compressed_shuffle() {
    let mut c = TestCluster::start(Mode::Processes, 0).unwrap();
    c.start_worker_with(&["--shuffle-compression", "lz4"]).unwrap();
    c.start_worker_with(&["--shuffle-compression", "zstd"]).unwrap();
    let generated = c.path("gen");
    job(&c, "teragen", &[], &generated, &["--param", &format!("rows={ROWS}"), "--maps", "3"]);
    let sorted = c.path("sorted");
    let s = job(&c, "terasort", &[&generated], &sorted, &["--reducers", "3", "--split-size", "128KiB"]);
    let mut expected: Vec<&[u8]> = Vec::new();
    let (input, _) = concat_parts(&generated);
    expected.extend(input.chunks(100));
    expected.sort_by(|a, b| a[..10].cmp(&b[..10]).then(a.cmp(b)));
    let (out, parts) = concat_parts(&sorted);
    assert_eq!(parts, 3);
    assert!(out.chunks(100).eq(expected.iter().copied()), "terasort output is the sorted input");
    let (shuffled, read) = (s["counters"]["MAP_OUTPUT_BYTES"].as_u64(), s["counters"]["MAP_INPUT_BYTES"].as_u64());
    assert!(shuffled.unwrap() < read.unwrap() * 3 / 4, "{shuffled:?} shuffle bytes for {read:?} input bytes");
    assert!(s["maps"]["total"].as_u64().unwrap() > 3, "{s}");

    let bad = quern_tests::quern(&["worker", "--coordinator", c.url(), "--shuffle-compression", "gzip"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("none, lz4 or zstd"), "{bad:?}");
}
