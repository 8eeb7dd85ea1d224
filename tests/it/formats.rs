//! Input and output formats, map-only jobs, on a multi-process cluster: every format
//! round-trips, and Parquet, Arrow IPC and whole-file input give the same word count as text.
//! Parts written as Parquet and Arrow are read here with the `parquet` and `arrow` crates,
//! not with Quern's own readers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use arrow_array::{Array, BinaryArray, RecordBatch, StringArray};
use quern_tests::data::{read_output, word_count, write_corpus};
use quern_tests::faults::Faults;
use quern_tests::{Mode, TestCluster, ok_stdout};

/// Runs `name` over everything under `input` into `output` (8 KiB splits) to success.
fn job(c: &TestCluster, name: &str, input: &Path, output: &Path, extra: &[&str]) -> serde_json::Value {
    job_split(c, name, input, output, "8KiB", extra)
}

/// [`job`] with splits of `split_size`.
fn job_split(
    c: &TestCluster,
    name: &str,
    input: &Path,
    output: &Path,
    split_size: &str,
    extra: &[&str],
) -> serde_json::Value {
    let (input, output) = (dir_arg(input), output.display().to_string());
    let base = ["--job", name, "--input", &input, "--output", &output, "--split-size", split_size, "--wait", "--json"];
    let status: serde_json::Value =
        serde_json::from_str(&ok_stdout(&c.cli("submit", &[&base[..], extra].concat()))).unwrap();
    assert_eq!(status["state"], "succeeded", "{status}");
    status
}

fn dir_arg(p: &Path) -> String {
    format!("{}/", p.display())
}

/// The parts of an output directory, in name order, checking that only parts and `_SUCCESS`
/// are there.
fn parts(dir: &Path) -> Vec<PathBuf> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names.first().map(String::as_str), Some("_SUCCESS"), "{names:?}");
    let parts: Vec<PathBuf> = names[1..].iter().map(|n| dir.join(n)).collect();
    for (i, p) in parts.iter().enumerate() {
        assert_eq!(p.file_name().unwrap().to_string_lossy(), format!("part-{i:05}"));
    }
    parts
}

/// The input's lines as read: `\r\n` ends stripped, bytes as they are (not always UTF-8).
fn expected_lines(dir: &Path) -> Vec<Vec<u8>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with(['_', '.']))
        .collect();
    files.sort();
    let mut lines = Vec::new();
    for f in files {
        let bytes = std::fs::read(f).unwrap();
        let mut file_lines: Vec<Vec<u8>> =
            bytes.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l).to_vec()).collect();
        if bytes.ends_with(b"\n") {
            file_lines.pop();
        }
        lines.extend(file_lines);
    }
    lines
}

/// The input lines, each with its newline, back to back.
fn joined(lines: &[Vec<u8>]) -> Vec<u8> {
    lines.iter().flat_map(|l| l.iter().copied().chain([b'\n'])).collect()
}

/// A row of Quern's Arrow and Parquet output: `key`, `value` (Utf8) and `record` (Binary).
type Row = (Option<String>, Option<String>, Option<Vec<u8>>);

fn rows_of(batches: Vec<RecordBatch>) -> Vec<Row> {
    let mut rows = Vec::new();
    for b in batches {
        let names: Vec<String> = b.schema().fields().iter().map(|f| f.name().clone()).collect();
        assert_eq!(names, ["key", "value", "record"], "every part has the same schema");
        let k = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
        let v = b.column(1).as_any().downcast_ref::<StringArray>().unwrap();
        let r = b.column(2).as_any().downcast_ref::<BinaryArray>().unwrap();
        for i in 0..b.num_rows() {
            rows.push((
                (!k.is_null(i)).then(|| k.value(i).to_string()),
                (!v.is_null(i)).then(|| v.value(i).to_string()),
                (!r.is_null(i)).then(|| r.value(i).to_vec()),
            ));
        }
    }
    rows
}

fn read_parquet(path: &Path) -> Vec<Row> {
    let file = std::fs::File::open(path).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap();
    rows_of(reader.map(Result::unwrap).collect())
}

fn read_arrow(path: &Path) -> Vec<Row> {
    let file = std::fs::File::open(path).unwrap();
    let reader = arrow_ipc::reader::FileReader::try_new(file, None).unwrap();
    rows_of(reader.map(Result::unwrap).collect())
}

#[test]
fn parquet_and_arrow_round_trip_and_count_the_same_words_as_text() {
    let c = TestCluster::start(Mode::Processes, 2).unwrap();
    let input = c.path("input");
    write_corpus(&input, 3, 30_000, 5).unwrap();
    let lines = expected_lines(&input);
    let words = word_count(&input);
    for (format, read) in [("parquet", read_parquet as fn(&Path) -> Vec<Row>), ("arrow", read_arrow)] {
        // Text to the format: identity is map-only, so the parts hold the lines in order.
        let converted = c.path(&format!("as-{format}"));
        let s = job(&c, "identity", &input, &converted, &["--output-format", format]);
        let converted_parts = parts(&converted);
        assert_eq!(converted_parts.len() as u64, s["maps"]["total"].as_u64().unwrap(), "one part per map task");
        assert_eq!(s["reduces"]["total"], 0);
        let rows: Vec<Row> = converted_parts.iter().flat_map(|p| read(p)).collect();
        assert_eq!(rows.len(), lines.len());
        for (row, line) in rows.iter().zip(&lines) {
            match std::str::from_utf8(line) {
                // A UTF-8 line is a key without a value...
                Ok(text) => assert_eq!(row, &(Some(text.to_string()), None, None), "{format}"),
                // ... other bytes a binary record (with its newline), kept as they are.
                Err(_) => assert_eq!(row, &(None, None, Some([line.as_slice(), b"\n"].concat())), "{format}"),
            }
        }
        assert!(lines.iter().any(|l| std::str::from_utf8(l).is_err()), "the corpus has lines that are not UTF-8");

        // ... and back to text.
        let back = c.path(&format!("back-from-{format}"));
        job(&c, "identity", &converted, &back, &["--input-format", format]);
        assert!(parts_bytes(&back) == joined(&lines), "{format} back to text, byte for byte");

        // Word count over the format equals word count over the text.
        let counted = c.path(&format!("wc-{format}"));
        job(&c, "wordcount", &converted, &counted, &["--input-format", format, "--reducers", "3"]);
        assert_eq!(read_output(&counted, 3, true), words, "wordcount over {format}");

        // A reduce job writing the format: (word, count) rows.
        let out = c.path(&format!("wc-out-{format}"));
        job(&c, "wordcount", &input, &out, &["--output-format", format, "--reducers", "2"]);
        let got: BTreeMap<String, String> =
            parts(&out).iter().flat_map(|p| read(p)).map(|(k, v, _)| (k.unwrap(), v.unwrap())).collect();
        assert_eq!(got, words, "wordcount written as {format}");
    }
}

fn parts_bytes(dir: &Path) -> Vec<u8> {
    parts(dir).iter().flat_map(|p| std::fs::read(p).unwrap()).collect()
}

#[test]
fn fixed_whole_and_text_round_trip_and_map_only_jobs_write_one_part_per_map() {
    let c = TestCluster::start(Mode::Processes, 2).unwrap();

    // Fixed-length binary records: 16 bytes each, cut into splits at record boundaries.
    let bin = c.path("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let data: Vec<u8> = (0..5_000u32 * 16).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(bin.join("records.bin"), &data).unwrap();
    let out = c.path("bin-out");
    let s = job(&c, "identity", &bin, &out, &["--input-format", "fixed:16", "--output-format", "fixed:16"]);
    assert!(s["maps"]["total"].as_u64().unwrap() >= 9, "80,000 bytes in 8 KiB splits: {s}");
    assert!(parts_bytes(&out) == data, "fixed:16 records round-trip byte for byte");
    assert_eq!(s["counters"]["MAP_INPUT_RECORDS"], 5_000);

    // Text lines through a map-only job come back as the same lines, in order.
    let input = c.path("input");
    write_corpus(&input, 3, 20_000, 11).unwrap();
    let text_out = c.path("text-out");
    let s = job(&c, "identity", &input, &text_out, &[]);
    let lines = expected_lines(&input);
    assert!(parts_bytes(&text_out) == joined(&lines), "text lines round-trip byte for byte");
    assert_eq!(s["counters"]["MAP_INPUT_RECORDS"], lines.len());

    // Whole files: one record (and one map task) per file, the same words as text.
    let whole = c.path("whole-out");
    let s = job(&c, "identity", &input, &whole, &["--input-format", "whole"]);
    assert_eq!(s["maps"]["total"], 3);
    assert_eq!(s["counters"]["MAP_INPUT_RECORDS"], 3);
    let originals: Vec<u8> =
        (0..3).flat_map(|f| std::fs::read(input.join(format!("doc-{f:02}.txt"))).unwrap()).collect();
    assert!(parts_bytes(&whole) == originals, "whole objects round-trip byte for byte");
    let wc_whole = c.path("wc-whole");
    job(&c, "wordcount", &input, &wc_whole, &["--input-format", "whole", "--reducers", "2"]);
    let words = word_count(&input);
    assert_eq!(read_output(&wc_whole, 2, true), words);

    // Any job runs map-only with --reducers 0: every pair through reduce on its own, one
    // part per map task, nothing combined (and word count's own counting off).
    let map_only = c.path("map-only");
    let s = job(&c, "wordcount", &input, &map_only, &["--reducers", "0", "--param", "combiner=false"]);
    assert_eq!(s["reduces"]["total"], 0);
    let map_only_parts = parts(&map_only);
    assert_eq!(map_only_parts.len() as u64, s["maps"]["total"].as_u64().unwrap());
    let mut summed: BTreeMap<String, u64> = BTreeMap::new();
    for p in &map_only_parts {
        for line in std::fs::read_to_string(p).unwrap().lines() {
            let (w, n) = line.split_once('\t').unwrap();
            assert_eq!(n, "1", "no combining in a map-only job");
            *summed.entry(w.to_string()).or_default() += 1;
        }
    }
    let summed: BTreeMap<String, String> = summed.into_iter().map(|(k, v)| (k, v.to_string())).collect();
    assert_eq!(summed, words);
}

/// Writes `lines` as a Parquet file with one text column, `per_group` rows in each row group;
/// returns how many row groups the file has, as the parquet crate reads them back.
fn write_parquet_lines(path: &Path, lines: &[String], per_group: usize) -> usize {
    use std::sync::Arc;
    let column: arrow_array::ArrayRef = Arc::new(StringArray::from_iter_values(lines));
    let batch = RecordBatch::try_from_iter([("line", column)]).unwrap();
    let props =
        parquet::file::properties::WriterProperties::builder().set_max_row_group_row_count(Some(per_group)).build();
    let file = std::fs::File::create(path).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let file = std::fs::File::open(path).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    reader.metadata().num_row_groups()
}

#[test]
fn parquet_input_is_split_by_row_group() {
    let c = TestCluster::start(Mode::Processes, 2).unwrap();
    let text = c.path("text");
    write_corpus(&text, 1, 60_000, 23).unwrap();
    // The corpus's lines as Parquet strings (valid UTF-8), and the same lines as text for the
    // sequential count.
    let lines: Vec<String> = expected_lines(&text).iter().map(|l| String::from_utf8_lossy(l).into_owned()).collect();
    let expect = c.path("expect");
    std::fs::create_dir_all(&expect).unwrap();
    std::fs::write(expect.join("lines.txt"), lines.join("\n")).unwrap();
    let words = word_count(&expect);

    let input = c.path("pq");
    std::fs::create_dir_all(&input).unwrap();
    let groups = write_parquet_lines(&input.join("lines.parquet"), &lines, lines.len().div_ceil(7));
    assert_eq!(groups, 7);

    // A split size far below a row group's size: one map task per row group.
    let out = c.path("wc-by-group");
    let s = job_split(&c, "wordcount", &input, &out, "1", &["--reducers", "3"]);
    assert_eq!(s["maps"]["total"], groups as u64, "one map task per row group: {s}");
    assert_eq!(s["counters"]["MAP_INPUT_RECORDS"], lines.len() as u64, "every row read once");
    assert_eq!(read_output(&out, 3, true), words, "wordcount over row-group splits");

    // A map-only job keeps the rows in file order across the splits.
    let back = c.path("back");
    let s = job_split(&c, "identity", &input, &back, "1", &[]);
    assert_eq!(s["maps"]["total"], groups as u64);
    assert_eq!(parts(&back).len(), groups);
    let joined_lines: Vec<u8> = lines.iter().flat_map(|l| l.bytes().chain([b'\n'])).collect();
    assert!(parts_bytes(&back) == joined_lines, "rows back as lines, in order");

    // A large split size keeps the file one map task.
    let whole = c.path("wc-whole-file");
    let s = job_split(&c, "wordcount", &input, &whole, "64MiB", &["--reducers", "2"]);
    assert_eq!(s["maps"]["total"], 1);
    assert_eq!(read_output(&whole, 2, true), words);

    // A file that only looks like Parquet is refused at submission, in one line.
    let bad = c.path("bad");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(bad.join("broken.parquet"), b"PAR1 this is not really parquet at all").unwrap();
    let (bad_arg, bad_out) = (dir_arg(&bad), c.path("bad-out").display().to_string());
    let out = c.cli("submit", &["--job", "wordcount", "--input", &bad_arg, "--output", &bad_out, "--wait"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("broken.parquet") && stderr.contains("arquet"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
}

/// Writes `lines` as an Arrow IPC file (or, with `stream`, an IPC stream) with one text
/// column, `batches` record batches of about equal size.
fn write_arrow_lines(path: &Path, lines: &[String], batches: usize, stream: bool) {
    use std::sync::Arc;
    let batches: Vec<RecordBatch> = lines
        .chunks(lines.len().div_ceil(batches))
        .map(|chunk| {
            let column: arrow_array::ArrayRef = Arc::new(StringArray::from_iter_values(chunk));
            RecordBatch::try_from_iter([("line", column)]).unwrap()
        })
        .collect();
    let (file, schema) = (std::fs::File::create(path).unwrap(), batches[0].schema());
    if stream {
        let mut w = arrow_ipc::writer::StreamWriter::try_new(file, &schema).unwrap();
        batches.iter().for_each(|b| w.write(b).unwrap());
        w.finish().unwrap();
    } else {
        let mut w = arrow_ipc::writer::FileWriter::try_new(file, &schema).unwrap();
        batches.iter().for_each(|b| w.write(b).unwrap());
        w.finish().unwrap();
    }
}

#[test]
fn arrow_files_are_split_by_record_batch() {
    let c = TestCluster::start(Mode::Processes, 2).unwrap();
    let text = c.path("text");
    write_corpus(&text, 1, 60_000, 29).unwrap();
    // The corpus's lines as Arrow strings (valid UTF-8), and the same lines as text for the
    // sequential count.
    let lines: Vec<String> = expected_lines(&text).iter().map(|l| String::from_utf8_lossy(l).into_owned()).collect();
    let expect = c.path("expect");
    std::fs::create_dir_all(&expect).unwrap();
    std::fs::write(expect.join("lines.txt"), lines.join("\n")).unwrap();
    let words = word_count(&expect);
    let batches = 9;

    let input = c.path("ipc");
    std::fs::create_dir_all(&input).unwrap();
    write_arrow_lines(&input.join("lines.arrow"), &lines, batches, false);
    let file = std::fs::File::open(input.join("lines.arrow")).unwrap();
    assert_eq!(arrow_ipc::reader::FileReader::try_new(file, None).unwrap().num_batches(), batches);

    // A split size far below a batch's size: one map task per batch.
    let out = c.path("wc-by-batch");
    let s = job_split(&c, "wordcount", &input, &out, "1", &["--reducers", "3"]);
    assert_eq!(s["maps"]["total"], batches as u64, "one map task per record batch: {s}");
    assert_eq!(s["counters"]["MAP_INPUT_RECORDS"], lines.len() as u64, "every row read once");
    assert_eq!(read_output(&out, 3, true), words, "wordcount over batch splits");

    // A split size that holds any three consecutive batches but never four: three batches
    // per map task. Where the batches lie, from the file's footer as arrow reads it.
    let data = std::fs::read(input.join("lines.arrow")).unwrap();
    let n = data.len();
    let len = arrow_ipc::reader::read_footer_length(data[n - 10..].try_into().unwrap()).unwrap();
    let footer = arrow_ipc::root_as_footer(&data[n - 10 - len..n - 10]).unwrap();
    let spans: Vec<(i64, i64)> = footer
        .recordBatches()
        .unwrap()
        .iter()
        .map(|b| (b.offset(), b.offset() + i64::from(b.metaDataLength()) + b.bodyLength()))
        .collect();
    let span = |k: usize| spans.windows(k).map(move |w| w[k - 1].1 - w[0].0);
    let three = span(3).max().unwrap();
    assert!(span(4).min().unwrap() > three, "batches of about equal size: {spans:?}");
    let three = three.to_string();
    let grouped = c.path("wc-by-three");
    let s = job_split(&c, "wordcount", &input, &grouped, &three, &["--reducers", "2"]);
    assert_eq!(s["maps"]["total"], 3, "batches gathered up to the split size: {s}");
    assert_eq!(read_output(&grouped, 2, true), words);

    // A map-only job keeps the rows in file order across the splits.
    let back = c.path("back");
    let s = job_split(&c, "identity", &input, &back, "1", &[]);
    assert_eq!(s["maps"]["total"], batches as u64);
    let joined_lines: Vec<u8> = lines.iter().flat_map(|l| l.bytes().chain([b'\n'])).collect();
    assert!(parts_bytes(&back) == joined_lines, "rows back as lines, in order");

    // A large split size keeps the file one map task, read whole as before.
    let whole = c.path("wc-whole-file");
    let s = job_split(&c, "wordcount", &input, &whole, "64MiB", &["--reducers", "2"]);
    assert_eq!(s["maps"]["total"], 1);
    assert_eq!(read_output(&whole, 2, true), words);

    // A stream has no footer to cut by: one map task, whatever the split size.
    let streamed = c.path("stream");
    std::fs::create_dir_all(&streamed).unwrap();
    write_arrow_lines(&streamed.join("lines.arrows"), &lines, batches, true);
    let out = c.path("wc-stream");
    let s = job_split(&c, "wordcount", &streamed, &out, "1", &["--reducers", "2"]);
    assert_eq!(s["maps"]["total"], 1, "a stream is one split: {s}");
    assert_eq!(read_output(&out, 2, true), words);

    // A file whose footer is broken is refused at submission, in one line.
    let bad = c.path("bad");
    std::fs::create_dir_all(&bad).unwrap();
    let broken = [&b"ARROW1\0\0"[..], &[0xab; 200], b"\x40\0\0\0ARROW1"].concat();
    std::fs::write(bad.join("broken.arrow"), broken).unwrap();
    let (bad_arg, bad_out) = (dir_arg(&bad), c.path("bad-out").display().to_string());
    let args = ["--job", "wordcount", "--input", &bad_arg, "--output", &bad_out, "--split-size", "1", "--wait"];
    let out = c.cli("submit", &args);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("broken.arrow") && stderr.contains("not a valid arrow file"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
}

#[test]
fn arrow_splits_are_read_back_from_the_workers_caches() {
    let mut c = TestCluster::start_with(Mode::Processes, 0, &[]).unwrap();
    for w in 0..2 {
        let cache = c.path(&format!("cache-{w}")).display().to_string();
        c.start_worker_with_faults(&["--cache-dir", &cache], &Faults::slow(Duration::from_millis(30))).unwrap();
    }
    let text = c.path("text");
    // Batches larger than the first read of a footer, which would otherwise cache them all.
    write_corpus(&text, 1, 1_200_000, 31).unwrap();
    let lines: Vec<String> = expected_lines(&text).iter().map(|l| String::from_utf8_lossy(l).into_owned()).collect();
    let expect = c.path("expect");
    std::fs::create_dir_all(&expect).unwrap();
    std::fs::write(expect.join("lines.txt"), lines.join("\n")).unwrap();
    let words = word_count(&expect);
    let input = c.path("ipc");
    std::fs::create_dir_all(&input).unwrap();
    write_arrow_lines(&input.join("lines.arrow"), &lines, 6, false);

    let first = c.path("first");
    let s = job_split(&c, "wordcount", &input, &first, "64KiB", &["--reducers", "2"]);
    assert_eq!(s["maps"]["total"], 6);
    assert_eq!(s["counters"]["CACHE_BYTES_READ"].as_u64().unwrap_or(0), 0, "nothing cached yet");
    // Bounded wait until the workers' heartbeats have reported the splits they cached.
    let reported = quern_tests::eventually(Duration::from_secs(10), || {
        let ws = c.workers_json();
        let ranges: u64 =
            ws.as_array().map(|a| a.iter().map(|w| w["cached_ranges"].as_u64().unwrap_or(0)).sum()).unwrap_or(0);
        ranges >= 6
    });
    assert!(reported, "{}", c.workers_json());
    let second = c.path("second");
    let s = job_split(&c, "wordcount", &input, &second, "64KiB", &["--reducers", "2"]);
    // Every split is cached whole (as its own byte range) somewhere, so the first task a
    // worker gets is one it caches.
    assert!(s["counters"]["CACHE_BYTES_READ"].as_u64().unwrap_or(0) > 0, "{s}");
    assert_eq!(s["counters"]["MAP_INPUT_RECORDS"], lines.len() as u64);
    assert_eq!(read_output(&second, 2, true), words);
}
