//! Property tests (bounded fuzzing) of the record readers: whatever the bytes, the format and
//! the split offsets, decoding gives records or an input error, never a panic, and never
//! holds more than the limits allow; well-formed input (text, gzip, zstd, fixed-length
//! records, Arrow IPC, Parquet) decodes to exactly what was written, or to the limit's error
//! when it is over one; corrupted well-formed input fails cleanly.
#![allow(clippy::unwrap_used, missing_docs)]

use std::io::Write;
use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use bytes::Bytes;
use proptest::prelude::*;
use quern_api::Counters;
use quern_api::format::ObjectFormat;
use quern_api::input::InputError;
use quern_api::input::{Input, InputLimits};
use quern_api::split::Compression;

/// Small limits, so that random cases reach them.
const SMALL: InputLimits = InputLimits { max_line_bytes: 64, max_decompressed_bytes: 4096, max_read_bytes: 1 << 16 };

/// Every record of `input`: (offset, bytes, line), through every chunk, as a map task reads them.
fn records(input: &Input, pieces: usize) -> Vec<(u64, Vec<u8>, String)> {
    let mut out = Vec::new();
    for chunk in input.chunks(pieces) {
        input.with_records(chunk, "x", "file:///x", &mut Counters::new(), |recs| {
            out.extend(recs.map(|r| (r.offset, r.bytes.to_vec(), r.line.to_string())));
        });
    }
    out
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

fn zstd(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    ruzstd::encoding::compress(data, &mut out, ruzstd::encoding::CompressionLevel::Fastest);
    out
}

fn compress(c: Option<Compression>, data: &[u8]) -> Vec<u8> {
    match c {
        None => data.to_vec(),
        Some(Compression::Gzip) => gzip(data),
        Some(Compression::Zstd) => zstd(data),
    }
}

fn compression() -> impl Strategy<Value = Option<Compression>> {
    prop_oneof![Just(None), Just(Some(Compression::Gzip)), Just(Some(Compression::Zstd))]
}

fn format() -> impl Strategy<Value = ObjectFormat> {
    prop_oneof![
        compression().prop_map(ObjectFormat::Text),
        compression().prop_map(ObjectFormat::Whole),
        (0u32..9, compression()).prop_map(|(n, c)| ObjectFormat::Fixed(n, c)),
        Just(ObjectFormat::Arrow),
        Just(ObjectFormat::Parquet),
    ]
}

fn offset() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..3000, Just(u64::MAX), any::<u64>()]
}

/// A batch of (name, n) rows with nulls.
fn batch(rows: &[(Option<String>, Option<i64>)]) -> RecordBatch {
    let names: ArrayRef = Arc::new(rows.iter().map(|r| r.0.clone()).collect::<StringArray>());
    let ns: ArrayRef = Arc::new(rows.iter().map(|r| r.1).collect::<Int64Array>());
    RecordBatch::try_from_iter_with_nullable([("name", names, true), ("n", ns, true)]).unwrap()
}

fn arrow_file(b: &RecordBatch, stream: bool) -> Vec<u8> {
    if stream {
        let mut w = arrow_ipc::writer::StreamWriter::try_new(Vec::new(), &b.schema()).unwrap();
        w.write(b).unwrap();
        w.into_inner().unwrap()
    } else {
        let mut w = arrow_ipc::writer::FileWriter::try_new(Vec::new(), &b.schema()).unwrap();
        w.write(b).unwrap();
        w.into_inner().unwrap()
    }
}

fn parquet_file(b: &RecordBatch) -> Vec<u8> {
    let mut w = parquet::arrow::ArrowWriter::try_new(Vec::new(), b.schema(), None).unwrap();
    w.write(b).unwrap();
    w.into_inner().unwrap()
}

/// The line a row renders to: columns joined by tabs, nulls empty, trailing nulls dropped.
fn rendered(row: &(Option<String>, Option<i64>)) -> String {
    match row {
        (name, Some(n)) => format!("{}\t{n}", name.as_deref().unwrap_or("")),
        (Some(name), None) => name.clone(),
        (None, None) => String::new(),
    }
}

fn row() -> impl Strategy<Value = (Option<String>, Option<i64>)> {
    (proptest::option::of("[a-z\u{e9} ]{0,12}"), proptest::option::of(any::<i64>()))
}

/// Decodes, and if that worked reads every record: the two things a map task does.
fn decode_and_read(
    format: ObjectFormat,
    data: Vec<u8>,
    start: u64,
    end: u64,
) -> Result<Vec<(u64, Vec<u8>, String)>, InputError> {
    let input = Input::decode_with(format, Bytes::from(data), start, end, &SMALL)?;
    let recs = records(&input, 3);
    // Bounded memory: nothing decoded is bigger than the limits allow.
    assert!(input.len_bytes() <= SMALL.max_read_bytes.max(SMALL.max_decompressed_bytes) as u64);
    if let ObjectFormat::Text(_) = format {
        assert!(recs.iter().all(|(_, b, _)| b.len() <= SMALL.max_line_bytes), "a line over the limit got through");
    }
    Ok(recs)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_bytes_in_any_format_decode_or_fail_cleanly(
        format in format(),
        data in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..600),
            proptest::collection::vec(prop_oneof![Just(b'\n'), Just(b'x'), any::<u8>()], 0..3000),
        ],
        start in offset(),
        end in offset(),
    ) {
        let _ = decode_and_read(format, data, start, end);
    }

    /// Valid compressed, Arrow and Parquet objects with a few bytes changed: the decoders see
    /// nearly valid data, where random bytes rarely get past the header.
    #[test]
    fn corrupted_well_formed_objects_fail_cleanly(
        rows in proptest::collection::vec(row(), 1..20),
        which in 0usize..5,
        edits in proptest::collection::vec((any::<proptest::sample::Index>(), 1u8..=255), 1..4),
        cut in proptest::option::of(any::<proptest::sample::Index>()),
    ) {
        let b = batch(&rows);
        let text: String = rows.iter().map(|r| rendered(r) + "\n").collect();
        let (format, mut data) = match which {
            0 => (ObjectFormat::Text(Some(Compression::Gzip)), gzip(text.as_bytes())),
            1 => (ObjectFormat::Text(Some(Compression::Zstd)), zstd(text.as_bytes())),
            2 => (ObjectFormat::Arrow, arrow_file(&b, false)),
            3 => (ObjectFormat::Arrow, arrow_file(&b, true)),
            _ => (ObjectFormat::Parquet, parquet_file(&b)),
        };
        for (at, x) in edits {
            let i = at.index(data.len());
            data[i] ^= x;
        }
        if let Some(cut) = cut {
            data.truncate(cut.index(data.len() + 1));
        }
        let len = data.len() as u64;
        let _ = decode_and_read(format, data, 0, len);
    }

    #[test]
    fn text_reads_back_every_line_or_refuses_an_over_long_one(
        lines in proptest::collection::vec("[a-z\u{e9}\t ]{0,40}", 0..60),
        long in proptest::option::of(65usize..200),
        c in compression(),
    ) {
        let mut lines = lines;
        if let Some(n) = long {
            lines.push("y".repeat(n));
        }
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        let data = compress(c, text.as_bytes());
        let len = data.len() as u64;
        let too_big = c.is_some() && text.len() > SMALL.max_decompressed_bytes;
        match decode_and_read(ObjectFormat::Text(c), data, 0, len) {
            Ok(recs) => {
                prop_assert!(long.is_none() && !too_big);
                let got: Vec<String> = recs.into_iter().map(|r| r.2).collect();
                prop_assert_eq!(got, lines);
            }
            Err(InputError::LineTooLong { limit }) => prop_assert!(long.is_some() && limit == SMALL.max_line_bytes),
            Err(InputError::DecompressedTooLarge { .. }) => prop_assert!(too_big),
            Err(e) => prop_assert!(false, "unexpected error {}", e),
        }
    }

    #[test]
    fn fixed_records_read_back_with_their_offsets(
        n in 1u32..9,
        records_in in proptest::collection::vec(any::<u8>(), 0..400),
        base in 0u64..1000,
        c in compression(),
    ) {
        let whole = records_in.len() / n as usize * n as usize;
        let raw = &records_in[..whole];
        let data = compress(c, raw);
        let got = decode_and_read(ObjectFormat::Fixed(n, c), data, base, base + whole as u64);
        let too_big = c.is_some() && raw.len() > SMALL.max_decompressed_bytes;
        match got {
            Ok(recs) => {
                prop_assert!(!too_big);
                let first = if c.is_some() { 0 } else { base };
                let expected: Vec<(u64, Vec<u8>)> = raw
                    .chunks(n as usize)
                    .enumerate()
                    .map(|(i, r)| (first + (i * n as usize) as u64, r.to_vec()))
                    .collect();
                let got: Vec<(u64, Vec<u8>)> = recs.into_iter().map(|r| (r.0, r.1)).collect();
                prop_assert_eq!(got, expected);
            }
            Err(e) => prop_assert!(too_big, "unexpected error {}", e),
        }
    }

    #[test]
    fn arrow_and_parquet_rows_read_back_as_lines(rows in proptest::collection::vec(row(), 0..40), which in 0usize..3) {
        let b = batch(&rows);
        let data = match which {
            0 => arrow_file(&b, false),
            1 => arrow_file(&b, true),
            _ => parquet_file(&b),
        };
        let format = if which < 2 { ObjectFormat::Arrow } else { ObjectFormat::Parquet };
        let len = data.len() as u64;
        let got: Vec<String> = decode_and_read(format, data, 0, len).unwrap().into_iter().map(|r| r.2).collect();
        let expected: Vec<String> = rows.iter().map(rendered).collect();
        prop_assert_eq!(got, expected);
    }
}

/// A decompression bomb under the limits workers really run with: 100 MiB of zeros without a
/// newline is about 100 KiB of gzip; it fails as soon as its one line passes the maximum line
/// length, with an error that says so, instead of inflating it all.
#[test]
fn a_gzip_bomb_is_a_clear_error_under_the_default_limits() {
    let zeros = vec![0u8; 100 << 20];
    let bomb = gzip(&zeros);
    drop(zeros);
    assert!(bomb.len() < 1 << 20, "{} bytes", bomb.len());
    let len = bomb.len() as u64;
    let e = Input::decode(ObjectFormat::Text(Some(Compression::Gzip)), Bytes::from(bomb.clone()), 0, len).unwrap_err();
    assert!(matches!(e, InputError::LineTooLong { .. }), "{e}");
    assert!(e.to_string().contains("line longer than"), "{e}");
    // Read as whole records, there are no lines: the decompressed size is what stops it.
    let small = InputLimits { max_decompressed_bytes: 10 << 20, ..InputLimits::DEFAULT };
    let e = Input::decode_with(ObjectFormat::Whole(Some(Compression::Gzip)), Bytes::from(bomb), 0, len, &small)
        .unwrap_err();
    assert!(matches!(e, InputError::DecompressedTooLarge { .. }), "{e}");
}

#[test]
fn a_text_split_with_an_over_long_line_is_refused_and_a_huge_read_too() {
    let data = [b"ok\n".to_vec(), vec![b'z'; 100], b"\nend\n".to_vec()].concat();
    let len = data.len() as u64;
    let e = Input::decode_with(ObjectFormat::Text(None), Bytes::from(data), 0, len, &SMALL).unwrap_err();
    assert!(matches!(e, InputError::LineTooLong { limit: 64 }), "{e}");
    let tight = InputLimits { max_read_bytes: 10, ..SMALL };
    let e = Input::decode_with(ObjectFormat::Whole(None), Bytes::from(vec![1u8; 11]), 0, 11, &tight).unwrap_err();
    assert!(matches!(e, InputError::TooLarge { .. }), "{e}");
    assert!(tight.check_read("split", 10).is_ok());
}

#[test]
fn rows_decoding_past_the_limit_are_refused() {
    let rows: Vec<(Option<String>, Option<i64>)> = (0..2000).map(|i| (Some("v".repeat(40)), Some(i))).collect();
    let b = batch(&rows);
    for (format, data) in [(ObjectFormat::Parquet, parquet_file(&b)), (ObjectFormat::Arrow, arrow_file(&b, true))] {
        let len = data.len() as u64;
        let e = Input::decode_with(format, Bytes::from(data), 0, len, &SMALL).unwrap_err();
        assert!(matches!(e, InputError::TooLarge { .. }), "{format:?}: {e}");
    }
}
