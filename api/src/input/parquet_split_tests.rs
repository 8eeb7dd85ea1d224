use std::sync::{Arc, Mutex};

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;

use super::*;
use crate::Counters;
use crate::input::{Input, SplitData};

/// A Parquet file of `rows` rows (`n`, `word`), `per_group` rows in each row group.
fn file(rows: i64, per_group: usize) -> Bytes {
    let n: ArrayRef = Arc::new(Int64Array::from_iter_values(0..rows));
    let w: ArrayRef = Arc::new(StringArray::from_iter_values((0..rows).map(|i| format!("word{}", i % 7))));
    let batch = RecordBatch::try_from_iter([("n", n), ("word", w)]).unwrap();
    let props = WriterProperties::builder().set_max_row_group_row_count(Some(per_group)).build();
    let mut w = ArrowWriter::try_new(Vec::new(), batch.schema(), Some(props)).unwrap();
    w.write(&batch).unwrap();
    Bytes::from(w.into_inner().unwrap())
}

/// Reads ranges of `data`, recording each.
struct Reader {
    data: Bytes,
    reads: Mutex<Vec<Range<u64>>>,
}

impl Reader {
    fn new(data: Bytes) -> Self {
        Reader { data, reads: Mutex::new(Vec::new()) }
    }

    fn get(&self) -> impl Fn(Range<u64>) -> std::future::Ready<Result<Bytes, StoreError>> + '_ {
        move |r: Range<u64>| {
            self.reads.lock().unwrap().push(r.clone());
            let end = (r.end as usize).min(self.data.len());
            std::future::ready(Ok(self.data.slice((r.start as usize).min(end)..end)))
        }
    }
}

async fn footer(data: &Bytes) -> Result<Footer, ReadError> {
    let r = Reader::new(data.clone());
    read_footer(data.len() as u64, &r.get()).await
}

/// Every row a split gives map, as (record offset, line).
async fn rows_of(data: &Bytes, s: &Split) -> Vec<(u64, String)> {
    let r = Reader::new(data.clone());
    let part = read_split(s.object_size, s.start, s.end, &InputLimits::DEFAULT, &r.get()).await.unwrap();
    let input =
        Input::decode_split(crate::format::ObjectFormat::Parquet, SplitData::Parquet(part), s.start, s.end).unwrap();
    let mut out = Vec::new();
    for chunk in input.chunks(3) {
        input.with_records(chunk, "x", "file:///x", &mut Counters::new(), |recs| {
            out.extend(recs.map(|r| (r.offset, r.line.to_string())));
        });
    }
    out
}

fn expected(rows: i64) -> Vec<(u64, String)> {
    (0..rows).map(|i| (i as u64, format!("{i}\tword{}", i % 7))).collect()
}

#[tokio::test]
async fn one_split_per_row_group_at_a_tiny_split_size_and_every_row_once() {
    let data = file(1000, 100);
    let f = footer(&data).await.unwrap();
    assert_eq!(f.groups.len(), 10);
    let splits = plan("file:///x.parquet", &f, 1);
    assert_eq!(splits.len(), 10, "one split per row group");
    assert_eq!(splits[0].start, 0);
    assert_eq!(splits.last().unwrap().end, data.len() as u64);
    assert!(splits.windows(2).all(|w| w[0].end == w[1].start), "the splits cover the object once");
    let mut got = Vec::new();
    for s in &splits {
        let rows = rows_of(&data, s).await;
        assert_eq!(rows.len(), 100, "each split reads its own row group: {s:?}");
        got.extend(rows);
    }
    assert_eq!(got, expected(1000), "every row once, in order, numbered as in the file");
}

#[tokio::test]
async fn row_groups_are_gathered_up_to_the_split_size() {
    let data = file(1000, 100);
    let f = footer(&data).await.unwrap();
    let two = f.groups[1].end - f.groups[0].start;
    let splits = plan("u", &f, two);
    assert_eq!(splits.len(), 5, "two row groups per split: {splits:?}");
    assert_eq!(plan("u", &f, u64::MAX).len(), 1, "a large split size keeps the object whole");
    let mut got = Vec::new();
    for s in &splits {
        got.extend(rows_of(&data, s).await);
    }
    assert_eq!(got, expected(1000));
}

#[tokio::test]
async fn any_cover_by_byte_ranges_reads_every_row_once() {
    // What an older planner made (one whole-object split), and arbitrary byte cuts.
    let data = file(500, 60);
    let size = data.len() as u64;
    for step in [size, size / 3 + 1, 97, 1000] {
        let mut got = Vec::new();
        let mut start = 0;
        while start < size {
            let end = (start + step).min(size);
            got.extend(rows_of(&data, &Split { url: "u".into(), start, end, object_size: size }).await);
            start = end;
        }
        assert_eq!(got, expected(500), "byte ranges of {step}");
    }
}

#[tokio::test]
async fn a_split_reads_the_footer_and_only_its_own_row_groups() {
    // Larger than the first read of the footer, which would otherwise be the whole file.
    let data = file(100_000, 10_000);
    assert!(data.len() as u64 > 4 * PREFETCH);
    let f = footer(&data).await.unwrap();
    let splits = plan("u", &f, 1);
    let s = &splits[4];
    let r = Reader::new(data.clone());
    let part = read_split(s.object_size, s.start, s.end, &InputLimits::DEFAULT, &r.get()).await.unwrap();
    assert_eq!(part.row_groups(), &[f.groups[4].index]);
    let reads = r.reads.lock().unwrap().clone();
    let footer_start = data.len() as u64 - f.read;
    for range in &reads {
        let in_group = range.start >= f.groups[4].start && range.end <= f.groups[4].end;
        assert!(in_group || range.start >= footer_start, "read {range:?} is neither the footer nor the group");
    }
    let total: u64 = reads.iter().map(|r| r.end - r.start).sum();
    assert_eq!(total, part.bytes_read());
    assert!(total < data.len() as u64 / 2, "read {total} of {} bytes", data.len());
}

#[tokio::test]
async fn a_footer_larger_than_the_first_read_is_read_in_two() {
    // Many row groups of many columns make a footer over the 64 KiB first read.
    let cols: Vec<(String, ArrayRef)> =
        (0..40).map(|c| (format!("c{c}"), Arc::new(Int64Array::from_iter_values(0..400)) as ArrayRef)).collect();
    let batch = RecordBatch::try_from_iter(cols).unwrap();
    let props = WriterProperties::builder().set_max_row_group_row_count(Some(4)).build();
    let mut w = ArrowWriter::try_new(Vec::new(), batch.schema(), Some(props)).unwrap();
    w.write(&batch).unwrap();
    let data = Bytes::from(w.into_inner().unwrap());
    let f = footer(&data).await.unwrap();
    assert!(f.read > PREFETCH, "footer of {} bytes", f.read);
    assert_eq!(f.groups.len(), 100);
    assert_eq!(plan("u", &f, 1).len(), 100);
}

#[tokio::test]
async fn malformed_footers_are_one_clear_error() {
    let good = file(100, 10);
    let err = |data: Vec<u8>| async move { footer(&Bytes::from(data)).await.unwrap_err().to_string() };
    assert!(err(b"PAR1".to_vec()).await.contains("too small to be a Parquet file"));
    assert!(err(b"not a parquet file at all".to_vec()).await.contains("parquet"));
    // A footer length past the object, and one past the limit.
    let mut long = good.to_vec();
    let n = long.len();
    long[n - 8..n - 4].copy_from_slice(&(n as u32).to_le_bytes());
    let e = err(long).await;
    assert!(e.contains("footer claims") && e.contains(&format!("in an object of {n}")), "{e}");
    let mut huge = vec![0u8; 64];
    huge.extend_from_slice(&(u32::MAX).to_le_bytes());
    huge.extend_from_slice(b"PAR1");
    assert!(err(huge).await.contains("over the 16777216-byte limit"));
    // The footer's thrift cut short.
    let mut cut = good.to_vec();
    let len = u32::from_le_bytes(cut[n - 8..n - 4].try_into().unwrap()) as usize;
    let footer_start = n - 8 - len;
    cut.drain(footer_start + len / 2..n - 8);
    let new_len = (len - len / 2) as u32;
    let m = cut.len();
    cut[m - 8..m - 4].copy_from_slice(&new_len.to_le_bytes());
    assert!(err(cut).await.starts_with("parquet"));
}

#[tokio::test]
async fn any_damage_to_the_footer_is_an_error_or_valid_rows_never_a_panic() {
    let good = file(60, 10);
    let n = good.len();
    let len = u32::from_le_bytes(good[n - 8..n - 4].try_into().unwrap()) as usize;
    // Every byte of the footer, set to a few values; bounded: at most a few thousand reads.
    for at in (n - 8 - len..n - 8).take(600) {
        for v in [0u8, 0xff, 0x80] {
            let mut bad = good.to_vec();
            bad[at] = v;
            let bad = Bytes::from(bad);
            if let Ok(f) = footer(&bad).await {
                for s in plan("u", &f, 1) {
                    let r = Reader::new(bad.clone());
                    if let Ok(part) = read_split(s.object_size, s.start, s.end, &InputLimits::DEFAULT, &r.get()).await {
                        let _ = Input::decode_split(
                            crate::format::ObjectFormat::Parquet,
                            SplitData::Parquet(part),
                            s.start,
                            s.end,
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn column_chunks_outside_the_data_are_refused() {
    // Checked on real metadata against a data end that ends before the last row group.
    let data = file(100, 10);
    let n = data.len();
    let len = u32::from_le_bytes(data[n - 8..n - 4].try_into().unwrap()) as usize;
    let metadata = ParquetMetaDataReader::decode_metadata(&data[n - 8 - len..n - 8]).unwrap();
    let e = spans(&metadata, 100).unwrap_err().to_string();
    assert!(e.contains("outside the data (4..100)"), "{e}");
    assert_eq!(spans(&metadata, (n - 8 - len) as u64).unwrap().len(), 10);
}
