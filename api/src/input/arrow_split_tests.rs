use std::sync::{Arc, Mutex};

use arrow_array::types::Int32Type;
use arrow_array::{ArrayRef, DictionaryArray, Int64Array, RecordBatch, StringArray};
use arrow_ipc::writer::{DictionaryHandling, FileWriter, IpcWriteOptions, StreamWriter};

use super::*;
use crate::Counters;
use crate::format::ObjectFormat;
use crate::input::{Input, SplitData};

/// Rows `from..to` as a batch (`n`, `word`).
fn rows(from: i64, to: i64) -> RecordBatch {
    let n: ArrayRef = Arc::new(Int64Array::from_iter_values(from..to));
    let w: ArrayRef = Arc::new(StringArray::from_iter_values((from..to).map(|i| format!("word{}", i % 7))));
    RecordBatch::try_from_iter([("n", n), ("word", w)]).unwrap()
}

/// An Arrow IPC file of `rows` rows, `per_batch` rows in each record batch.
fn file(total: i64, per_batch: i64) -> Bytes {
    let mut w = FileWriter::try_new(Vec::new(), &rows(0, 0).schema()).unwrap();
    for from in (0..total).step_by(per_batch as usize) {
        w.write(&rows(from, (from + per_batch).min(total))).unwrap();
    }
    Bytes::from(w.into_inner().unwrap())
}

fn expected(total: i64) -> Vec<(u64, String)> {
    (0..total).map(|i| (i as u64, format!("{i}\tword{}", i % 7))).collect()
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

    fn reads(&self) -> Vec<Range<u64>> {
        self.reads.lock().unwrap().clone()
    }
}

async fn footer(data: &Bytes) -> Result<Option<Footer>, ReadError> {
    let r = Reader::new(data.clone());
    read_footer(data.len() as u64, &r.get()).await
}

async fn part(data: &Bytes, s: &Split) -> Result<ArrowPart, ReadError> {
    let (r, p) = (Reader::new(data.clone()), Reader::new(data.clone()));
    read_split(s.object_size, s.start, s.end, &InputLimits::DEFAULT, &r.get(), &p.get()).await
}

/// Every row a split gives map, as (record offset, line).
async fn rows_of(data: &Bytes, s: &Split) -> Vec<(u64, String)> {
    let input = Input::decode_split(ObjectFormat::Arrow, SplitData::Arrow(part(data, s).await.unwrap()), 0, 0);
    lines(&input.unwrap())
}

fn lines(input: &Input) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    for chunk in input.chunks(3) {
        input.with_records(chunk, "x", "file:///x", &mut Counters::new(), |recs| {
            out.extend(recs.map(|r| (r.offset, r.line.to_string())));
        });
    }
    out
}

/// What the whole file reads as, the way an unsplit file is read.
fn whole(data: &Bytes) -> Vec<(u64, String)> {
    lines(&Input::decode(ObjectFormat::Arrow, data.clone(), 0, data.len() as u64).unwrap())
}

#[tokio::test]
async fn one_split_per_batch_at_a_tiny_split_size_and_every_row_once() {
    let data = file(1000, 100);
    let f = footer(&data).await.unwrap().unwrap();
    assert_eq!((f.batches.len(), f.dictionaries.len(), f.in_order), (10, 0, true));
    let splits = plan("file:///x.arrow", &f, 1);
    assert_eq!(splits.len(), 10, "one split per batch");
    assert_eq!(splits[0].start, 0);
    assert_eq!(splits.last().unwrap().end, data.len() as u64);
    assert!(splits.windows(2).all(|w| w[0].end == w[1].start), "the splits cover the object once");
    assert!(splits.iter().all(|s| reads_in_parts(s.start, s.end, s.object_size)));
    let mut got = Vec::new();
    for (i, s) in splits.iter().enumerate() {
        let p = part(&data, s).await.unwrap();
        assert_eq!((p.batches(), p.first_row()), (i..i + 1, 100 * i as u64), "{s:?}");
        let rows = rows_of(&data, s).await;
        assert_eq!(rows.len(), 100, "each split reads its own batch: {s:?}");
        got.extend(rows);
    }
    assert_eq!(got, expected(1000), "every row once, in order, numbered as in the file");
    assert_eq!(got, whole(&data), "as the file read whole");
}

#[tokio::test]
async fn batches_are_gathered_up_to_the_split_size() {
    let data = file(1000, 100);
    let f = footer(&data).await.unwrap().unwrap();
    let two = f.batches[1].end - f.batches[0].start;
    let splits = plan("u", &f, two);
    assert_eq!(splits.len(), 5, "two batches per split: {splits:?}");
    let big = plan("u", &f, u64::MAX);
    assert_eq!(big.len(), 1, "a large split size keeps the file whole");
    assert!(!reads_in_parts(big[0].start, big[0].end, big[0].object_size), "read whole, as before");
    let mut got = Vec::new();
    for s in &splits {
        got.extend(rows_of(&data, s).await);
    }
    assert_eq!(got, expected(1000));
}

#[tokio::test]
async fn any_cover_by_byte_ranges_reads_every_row_once() {
    // A whole-object split, and arbitrary byte cuts that fall inside batches.
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
async fn a_split_reads_the_footer_its_batches_and_only_the_metadata_before_them() {
    // Batches far larger than the gap under which reads are gathered.
    let data = file(200_000, 20_000);
    assert!(data.len() as u64 > 4 * PREFETCH);
    let f = footer(&data).await.unwrap().unwrap();
    assert!(f.batches[0].end - f.batches[0].start > 4 * GAP);
    let splits = plan("u", &f, 1);
    let s = &splits[4];
    let (r, p) = (Reader::new(data.clone()), Reader::new(data.clone()));
    let part = read_split(s.object_size, s.start, s.end, &InputLimits::DEFAULT, &r.get(), &p.get()).await.unwrap();
    assert_eq!((part.batches(), part.first_row()), (4..5, 80_000));
    let footer_start = data.len() as u64 - f.read;
    let mine = &f.batches[4];
    assert_eq!((s.start, s.end), (mine.start, mine.end), "the split is its batch");
    for range in r.reads() {
        let in_batch = range.start >= mine.start && range.end <= mine.end;
        assert!(in_batch || range.start >= footer_start, "read {range:?} is neither the footer nor the batch");
    }
    assert!(r.reads().contains(&(s.start..s.end)), "one read of the split's bytes, cached as the split");
    let peeked = p.reads();
    assert_eq!(peeked.len(), 4, "one small read per earlier batch: {peeked:?}");
    for (range, b) in peeked.iter().zip(&f.batches) {
        assert_eq!(*range, b.start..b.start + b.metadata, "only the metadata");
    }
    let total: u64 = r.reads().iter().chain(&peeked).map(|r| r.end - r.start).sum();
    assert_eq!(total, part.bytes_read());
    assert!(total < data.len() as u64 / 4, "read {total} of {} bytes", data.len());
    let input = Input::decode_split(ObjectFormat::Arrow, SplitData::Arrow(part), 0, 0).unwrap();
    assert_eq!(lines(&input), expected(100_000)[80_000..]);
}

/// A file whose `word` column is dictionary-encoded, `per_batch` rows a batch; with `delta`,
/// each batch adds words to the dictionary, so dictionary blocks lie between the batches.
fn dictionary_file(total: i64, per_batch: i64, delta: bool) -> Bytes {
    let batch = |from: i64, to: i64| {
        // Keys into a dictionary that grows with the row numbers seen so far.
        let words: Vec<String> = (0..to / 10 + 1).map(|i| format!("w{i}")).collect();
        let keys = arrow_array::Int32Array::from_iter_values((from..to).map(|i| (i / 10) as i32));
        let values = if delta { words } else { (0..total / 10 + 1).map(|i| format!("w{i}")).collect() };
        let dict = DictionaryArray::<Int32Type>::try_new(keys, Arc::new(StringArray::from(values))).unwrap();
        let n: ArrayRef = Arc::new(Int64Array::from_iter_values(from..to));
        RecordBatch::try_from_iter([("n", n), ("word", Arc::new(dict) as ArrayRef)]).unwrap()
    };
    let options = IpcWriteOptions::default().with_dictionary_handling(if delta {
        DictionaryHandling::Delta
    } else {
        DictionaryHandling::Resend
    });
    let mut w = FileWriter::try_new_with_options(Vec::new(), &batch(0, 0).schema(), options).unwrap();
    for from in (0..total).step_by(per_batch as usize) {
        w.write(&batch(from, (from + per_batch).min(total))).unwrap();
    }
    Bytes::from(w.into_inner().unwrap())
}

#[tokio::test]
async fn every_split_reads_the_dictionaries_wherever_they_lie() {
    for delta in [false, true] {
        let data = dictionary_file(600, 50, delta);
        let f = footer(&data).await.unwrap().unwrap();
        assert_eq!(f.batches.len(), 12);
        assert!(if delta { f.dictionaries.len() > 1 } else { f.dictionaries.len() == 1 }, "{delta}");
        let expect: Vec<(u64, String)> = (0..600).map(|i| (i as u64, format!("{i}\tw{}", i / 10))).collect();
        assert_eq!(whole(&data), expect, "the file read whole");
        for size in [1, 3 * (f.batches[1].end - f.batches[0].start)] {
            let mut got = Vec::new();
            for s in plan("u", &f, size) {
                got.extend(rows_of(&data, &s).await);
            }
            assert_eq!(got, expect, "delta dictionaries: {delta}, split size {size}");
        }
        // Cuts that fall anywhere, inside batches and dictionaries.
        let n = data.len() as u64;
        for step in [97, n / 3 + 1] {
            let mut got = Vec::new();
            for start in (0..n).step_by(step as usize) {
                let s = Split { url: "u".into(), start, end: (start + step).min(n), object_size: n };
                got.extend(rows_of(&data, &s).await);
            }
            assert_eq!(got, expect, "delta dictionaries: {delta}, byte ranges of {step}");
        }
    }
}

#[tokio::test]
async fn streams_and_small_objects_are_not_files() {
    let batch = rows(0, 10);
    let mut w = StreamWriter::try_new(Vec::new(), &batch.schema()).unwrap();
    w.write(&batch).unwrap();
    let stream = Bytes::from(w.into_inner().unwrap());
    assert!(footer(&stream).await.unwrap().is_none());
    assert!(footer(&Bytes::from_static(b"ARROW1")).await.unwrap().is_none());
    // A large object ending as a file does but not starting as one: its first bytes tell.
    let mut fake = vec![7u8; 2 * PREFETCH as usize];
    fake.extend_from_slice(b"\x10\0\0\0ARROW1");
    assert!(footer(&Bytes::from(fake)).await.unwrap().is_none());
    // A split of a stream is refused rather than misread.
    let (r, p) = (Reader::new(stream.clone()), Reader::new(stream.clone()));
    let e = read_split(stream.len() as u64, 0, 10, &InputLimits::DEFAULT, &r.get(), &p.get()).await.unwrap_err();
    assert!(e.to_string().contains("does not end as an Arrow IPC file does"), "{e}");
}

/// The footer's bytes and where they start in `data`.
fn footer_bytes(data: &[u8]) -> (usize, usize) {
    let n = data.len();
    let len = i32::from_le_bytes(data[n - 10..n - 6].try_into().unwrap()) as usize;
    (n - 10 - len, len)
}

/// Where in `data` the footer holds `block`'s 24 bytes.
fn block_at(data: &[u8], block: &Block) -> usize {
    let (at, len) = footer_bytes(data);
    let want = [&block.offset().to_le_bytes()[..], &block.metaDataLength().to_le_bytes(), &[0; 4]].concat();
    let found = data[at..at + len].windows(16).position(|w| w == want.as_slice()).unwrap();
    at + found
}

#[tokio::test]
async fn malformed_footers_are_one_clear_error() {
    let good = file(100, 10);
    let f = footer(&good).await.unwrap().unwrap();
    let err = |data: Vec<u8>| async move { footer(&Bytes::from(data)).await.unwrap_err().to_string() };
    let n = good.len();
    // Truncated: starts as a file, does not end as one.
    let e = err(good[..n - 3].to_vec()).await;
    assert!(e.contains("does not end as an Arrow IPC file does"), "{e}");
    // Garbage between the magics.
    let e = err([&b"ARROW1\0\0"[..], &[0xab; 100], b"\x20\0\0\0ARROW1"].concat()).await;
    assert!(e.starts_with("not a valid arrow file: its footer is not a valid flatbuffer"), "{e}");
    // Footer lengths past the object, past the limit, and negative.
    let mut long = good.to_vec();
    long[n - 10..n - 6].copy_from_slice(&(n as u32).to_le_bytes());
    assert!(err(long).await.contains(&format!("in an object of {n}")));
    let mut huge = good.to_vec();
    huge[n - 10..n - 6].copy_from_slice(&(1u32 << 30).to_le_bytes());
    assert!(err(huge).await.contains("over the 16777216-byte limit"));
    let mut negative = good.to_vec();
    negative[n - 10..n - 6].copy_from_slice(&(-5i32).to_le_bytes());
    assert!(err(negative).await.contains("its footer length"));
    // A block past the end of the data, and one overlapping the next.
    let last = &f.batches[9];
    let mut past = good.to_vec();
    let at = block_at(&past, &last.block);
    past[at + 16..at + 24].copy_from_slice(&(1i64 << 40).to_le_bytes());
    let e = err(past).await;
    assert!(e.contains("record batch 9: claims bytes") && e.contains("outside the data"), "{e}");
    let mut overlap = good.to_vec();
    let at = block_at(&overlap, &f.batches[3].block);
    overlap[at..at + 8].copy_from_slice(&(f.batches[2].start as i64 + 8).to_le_bytes());
    assert!(err(overlap).await.contains("overlap"));
    // A block count far beyond the footer's bytes: the flatbuffer check refuses it before
    // anything is allocated for it.
    let mut count = good.to_vec();
    let at = block_at(&count, &f.batches[0].block);
    assert_eq!(&count[at - 4..at], &10u32.to_le_bytes(), "the vector's length precedes its blocks");
    count[at - 4..at].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(err(count).await.contains("not a valid flatbuffer"));
}

#[tokio::test]
async fn a_footer_over_the_first_read_and_over_the_block_limit() {
    // Many one-row batches make a footer over the 64 KiB first read.
    let data = file(3000, 1);
    let f = footer(&data).await.unwrap().unwrap();
    assert!(f.read > PREFETCH, "footer of {} bytes", f.read);
    assert_eq!(plan("u", &f, 1).len(), 3000);
    let s = &plan("u", &f, 1)[2999];
    assert_eq!(rows_of(&data, s).await, expected(3000)[2999..], "after 2999 batches' metadata, gathered");
    // One block more than the limit, as a writer really lays it out.
    let data = file(MAX_BLOCKS as i64 + 1, 1);
    let e = footer(&data).await.unwrap_err().to_string();
    assert!(e.contains(&format!("lists {} blocks, over the limit of {MAX_BLOCKS}", MAX_BLOCKS + 1)), "{e}");
}

#[tokio::test]
async fn batches_listed_out_of_order_keep_the_file_whole() {
    let good = file(100, 10);
    let f = footer(&good).await.unwrap().unwrap();
    // Swap the footer's first two blocks.
    let mut swapped = good.to_vec();
    let (a, b) = (block_at(&swapped, &f.batches[0].block), block_at(&swapped, &f.batches[1].block));
    let (first, second) = (swapped[a..a + 24].to_vec(), swapped[b..b + 24].to_vec());
    swapped[a..a + 24].copy_from_slice(&second);
    swapped[b..b + 24].copy_from_slice(&first);
    let swapped = Bytes::from(swapped);
    let f = footer(&swapped).await.unwrap().unwrap();
    assert!(!f.in_order);
    let splits = plan("u", &f, 1);
    assert_eq!(splits.len(), 1);
    let rows: Vec<String> = whole(&swapped).into_iter().map(|(_, l)| l).collect();
    assert!(rows[..10].iter().all(|l| l.starts_with('1')), "footer order: {:?}", &rows[..10]);
    let part_of = Split { url: "u".into(), start: 0, end: 500, object_size: swapped.len() as u64 };
    let e = part(&swapped, &part_of).await.unwrap_err().to_string();
    assert!(e.contains("out of file order"), "{e}");
}

#[tokio::test]
async fn any_damage_to_the_footer_is_an_error_or_valid_rows_never_a_panic() {
    let good = file(60, 10);
    let (at, len) = footer_bytes(&good);
    // Every byte of the footer, set to a few values; bounded: at most a few thousand reads.
    for i in (at..at + len).take(600) {
        for v in [0u8, 0xff, 0x80, 0x01] {
            let mut bad = good.to_vec();
            bad[i] = v;
            let bad = Bytes::from(bad);
            if let Ok(Some(f)) = footer(&bad).await {
                for s in plan("u", &f, 1) {
                    if let Ok(p) = part(&bad, &s).await {
                        let _ = Input::decode_split(ObjectFormat::Arrow, SplitData::Arrow(p), s.start, s.end);
                    }
                }
            }
        }
    }
}
