//! Decoding input: a split's bytes become the records `map` sees (see [`crate::format`] for
//! what each format means). Workers decode splits with it; a total-order submission decodes
//! the windows it samples with the same code, so the keys it samples are the keys maps see.
//!
//! Every format is cut into chunks that rayon maps in parallel: text at line boundaries,
//! fixed-length records at record boundaries, Arrow and Parquet rows and generated record
//! numbers by count. A whole object is one record, so one chunk.

use std::borrow::Cow;
use std::io::Cursor;
use std::ops::Range;

use crate::Counters;
use crate::counters::names;
use crate::format::ObjectFormat;
use crate::job::{Block, Record, RecordKind, Row};
use crate::split::{chunk_at_lines, lines, owned_range};
use arrow_array::cast::AsArray;
use arrow_array::{Array, RecordBatch};
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use arrow_schema::ArrowError;
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

pub mod arrow_split;
pub mod decompress;
mod error;
pub mod parquet_split;
mod ranged;
pub mod stream;

pub use error::InputError;

use decompress::{Bounds, decompress, longest_line_check};

/// A split's records, decoded as far as needed to cut them into chunks.
#[derive(Debug)]
pub enum Input {
    /// Text lines: `data` holds the object from `start` on; `owned` is the range of it holding
    /// the lines the split owns.
    Text {
        /// The bytes read.
        data: Bytes,
        /// Object offset of `data[0]`.
        start: u64,
        /// The lines this split owns, within `data`.
        owned: Range<usize>,
    },
    /// One record: a whole object.
    Whole {
        /// Its bytes.
        data: Bytes,
    },
    /// Fixed-length records.
    Fixed {
        /// Whole records, back to back.
        data: Bytes,
        /// Record length.
        len: usize,
        /// Object offset of `data[0]`.
        base: u64,
    },
    /// Arrow or Parquet rows, rendered as tab-separated lines too.
    Rows {
        /// The record batches read.
        batches: Vec<RecordBatch>,
        /// The index of each batch's first row.
        firsts: Vec<usize>,
        /// Every row's line, back to back.
        text: String,
        /// Where each row's line ends in `text`.
        ends: Vec<usize>,
        /// The row number in its object of the first row (a split may start mid-object).
        first: u64,
    },
    /// Generated record numbers `start..end`.
    Generate {
        /// First record number.
        start: u64,
        /// One past the last.
        end: u64,
    },
}

/// What a map task read for its split.
#[derive(Debug)]
pub enum SplitData {
    /// The split's bytes (see [`Input::decode`]).
    Bytes(Bytes),
    /// A Parquet split: the object's footer and the bytes of the row groups it owns.
    Parquet(parquet_split::ParquetPart),
    /// Part of an Arrow IPC file: its schema, dictionaries and the record batches it owns.
    Arrow(arrow_split::ArrowPart),
}

impl SplitData {
    /// Bytes read from the store or cache.
    pub fn bytes_read(&self) -> u64 {
        match self {
            SplitData::Bytes(b) => b.len() as u64,
            SplitData::Parquet(p) => p.bytes_read(),
            SplitData::Arrow(p) => p.bytes_read(),
        }
    }
}

/// Longest text line, in bytes (Hadoop's `mapreduce.input.linerecordreader.line.maxlength`):
/// a longer line is an input error, so an object without newlines cannot make a task read it
/// all.
pub const MAX_LINE_BYTES: usize = 64 << 20;

/// Most bytes one `.gz`/`.zst` object may decompress to when it is decompressed whole (read
/// as one record, or sampled); also the least a streamed one may (see
/// [`InputLimits::max_streamed`]).
pub const MAX_DECOMPRESSED_BYTES: usize = 1 << 30;

/// Most bytes a streamed `.gz`/`.zst` object may decompress to per byte of it. Gzip cannot
/// exceed about 1032; real text is 3 to 10; zstd can reach far more, which is what this bounds.
pub const MAX_STREAM_RATIO: u64 = 1024;

/// Most bytes a streamed `.gz`/`.zst` object may decompress to, whatever its size: 1 TiB.
pub const MAX_STREAMED_BYTES: u64 = 1 << 40;

/// Most bytes a task holds at once: a split, an object read whole (`whole`, Arrow, Parquet),
/// and the rows an Arrow or Parquet object decodes to. (Compressed text and fixed-length
/// objects are streamed, never held whole.)
pub const MAX_READ_BYTES: usize = 1 << 30;

/// Limits that keep broken or hostile input from taking a worker's memory: past one, the map
/// task fails with a clear input error instead of allocating without end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InputLimits {
    /// Longest text line ([`MAX_LINE_BYTES`]).
    pub max_line_bytes: usize,
    /// Most bytes a compressed object decompresses to when decompressed whole, and the
    /// least a streamed one may ([`MAX_DECOMPRESSED_BYTES`], see [`InputLimits::max_streamed`]).
    pub max_decompressed_bytes: usize,
    /// Most bytes of a split, an object read whole, or decoded rows ([`MAX_READ_BYTES`]).
    pub max_read_bytes: usize,
}

impl InputLimits {
    /// The limits workers run with.
    pub const DEFAULT: InputLimits = InputLimits {
        max_line_bytes: MAX_LINE_BYTES,
        max_decompressed_bytes: MAX_DECOMPRESSED_BYTES,
        max_read_bytes: MAX_READ_BYTES,
    };

    /// Most bytes a compressed text or fixed-length object of `compressed` bytes, which map
    /// tasks decompress as a stream (see [`stream`]), may decompress to: [`MAX_STREAM_RATIO`]
    /// times its size, at least `max_decompressed_bytes` (what any object could before
    /// streaming) and at most [`MAX_STREAMED_BYTES`]. A bomb guard, not a memory bound: a
    /// streamed object is never whole in memory.
    pub fn max_streamed(&self, compressed: u64) -> u64 {
        let floor = self.max_decompressed_bytes as u64;
        compressed.saturating_mul(MAX_STREAM_RATIO).max(floor).min(MAX_STREAMED_BYTES.max(floor))
    }

    /// Whether a split or object of `len` bytes may be read; `what` names it in the error.
    pub fn check_read(&self, what: &str, len: u64) -> Result<(), InputError> {
        if len > self.max_read_bytes as u64 {
            return Err(InputError::TooLarge { what: format!("{what} of {len} bytes"), limit: self.max_read_bytes });
        }
        Ok(())
    }
}

impl Default for InputLimits {
    fn default() -> Self {
        InputLimits::DEFAULT
    }
}

impl Input {
    /// Decodes the bytes read for split `[start, end)` of an object in `format` (for text,
    /// from `start` through the end of the split's last line; for the unsplittable formats,
    /// the whole object), within the default [`InputLimits`].
    pub fn decode(format: ObjectFormat, data: Bytes, start: u64, end: u64) -> Result<Input, InputError> {
        Input::decode_with(format, data, start, end, &InputLimits::DEFAULT)
    }

    /// [`Input::decode`] within `limits`.
    pub fn decode_with(
        format: ObjectFormat,
        data: Bytes,
        start: u64,
        end: u64,
        limits: &InputLimits,
    ) -> Result<Input, InputError> {
        // A text split's bytes run on past its end to finish its last line.
        let tail = if format == ObjectFormat::Text(None) { limits.max_line_bytes } else { 0 };
        limits.check_read("the data read", (data.len().saturating_sub(tail)) as u64)?;
        let unpack = |c, text: bool| -> Result<Bytes, InputError> {
            let bounds =
                Bounds { max_bytes: limits.max_decompressed_bytes, max_line: text.then_some(limits.max_line_bytes) };
            match c {
                None => Ok(data.clone()),
                Some(c) => decompress(c, &data, bounds).map(Bytes::from),
            }
        };
        Ok(match format {
            ObjectFormat::Text(None) => {
                let owned = owned_range(&data, start, end);
                // Cheap when the lines cannot be too long; one pass over the bytes otherwise.
                if owned.len() > limits.max_line_bytes {
                    longest_line_check(&data[owned.clone()], 0, limits.max_line_bytes)?;
                }
                Input::Text { owned, data, start }
            }
            ObjectFormat::Text(Some(c)) => {
                let data = unpack(Some(c), true)?;
                Input::Text { owned: 0..data.len(), data, start: 0 }
            }
            ObjectFormat::Whole(c) => Input::Whole { data: unpack(c, false)? },
            ObjectFormat::Fixed(n, c) => {
                let data = unpack(c, false)?;
                let len = n as usize;
                if len == 0 || !data.len().is_multiple_of(len) {
                    return Err(InputError::PartialRecord { len: data.len(), record: n });
                }
                Input::Fixed { data, len, base: if c.is_some() { 0 } else { start } }
            }
            ObjectFormat::Arrow => guarded("arrow", || {
                if data.starts_with(b"ARROW1") {
                    let reader = arrow_ipc::reader::FileReader::try_new(Cursor::new(data.clone()), None)?;
                    render_rows(reader, 0, limits)
                } else {
                    let reader = arrow_ipc::reader::StreamReader::try_new(Cursor::new(data.clone()), None)?;
                    render_rows(reader, 0, limits)
                }
            })?,
            ObjectFormat::Parquet => guarded("parquet", || {
                let builder = ParquetRecordBatchReaderBuilder::try_new(data.clone())?;
                // Refuse before decoding what the file itself says is too big.
                let size: i64 = builder.metadata().row_groups().iter().map(|g| g.total_byte_size().max(0)).sum();
                limits.check_read("the rows this Parquet file decodes to", size as u64)?;
                render_rows(builder.build()?, 0, limits)
            })?,
        })
    }

    /// Decodes what a map task read for split `[start, end)`: bytes as for
    /// [`Input::decode`], a Parquet split's own row groups, or an Arrow split's own batches.
    pub fn decode_split(format: ObjectFormat, data: SplitData, start: u64, end: u64) -> Result<Input, InputError> {
        match data {
            SplitData::Bytes(data) => Input::decode(format, data, start, end),
            SplitData::Parquet(part) => parquet_split::decode(part, &InputLimits::DEFAULT),
            SplitData::Arrow(part) => arrow_split::decode(part, &InputLimits::DEFAULT),
        }
    }

    /// The input bytes mapped (`MAP_INPUT_BYTES`).
    pub fn len_bytes(&self) -> u64 {
        match self {
            Input::Text { owned, .. } => owned.len() as u64,
            Input::Whole { data } | Input::Fixed { data, .. } => data.len() as u64,
            Input::Rows { text, .. } => text.len() as u64,
            Input::Generate { .. } => 0,
        }
    }

    /// Cuts the records into about `pieces` chunks, in record order.
    pub fn chunks(&self, pieces: usize) -> Vec<Range<usize>> {
        let by_count = |n: usize| -> Vec<Range<usize>> {
            let step = n.div_ceil(pieces.max(1)).max(1);
            (0..n).step_by(step).map(|s| s..(s + step).min(n)).collect()
        };
        match self {
            Input::Text { data, owned, .. } => chunk_at_lines(&data[owned.clone()], pieces),
            Input::Whole { .. } => std::iter::once(0..1).collect(),
            Input::Fixed { data, len, .. } => by_count(data.len() / len),
            Input::Rows { ends, .. } => by_count(ends.len()),
            Input::Generate { start, end } => by_count(end.saturating_sub(*start) as usize),
        }
    }

    /// One chunk from [`Input::chunks`] of text input as a [`Block`] of whole lines (None for
    /// other formats, whose records come from [`Input::with_records`]); counts malformed text.
    pub fn block<'a>(
        &'a self,
        chunk: Range<usize>,
        source: &'a str,
        url: &'a str,
        counters: &mut Counters,
    ) -> Option<Block<'a>> {
        let Input::Text { data, start, owned } = self else { return None };
        let raw = &data[owned.clone()][chunk.clone()];
        let block = Block::new(source, url, start.saturating_add((owned.start + chunk.start) as u64), raw);
        let bad = block.malformed_lines();
        if bad > 0 {
            counters.add(names::MALFORMED_INPUT_LINES, bad as i64);
        }
        Some(block)
    }

    /// Calls `f` with the records of one chunk from [`Input::chunks`]; counts malformed text.
    pub fn with_records<R>(
        &self,
        chunk: Range<usize>,
        source: &str,
        url: &str,
        counters: &mut Counters,
        f: impl FnOnce(&mut dyn Iterator<Item = Record<'_>>) -> R,
    ) -> R {
        match self {
            Input::Text { data, start, owned } => {
                let bytes = &data[owned.clone()];
                let raw = &bytes[chunk.clone()];
                let text = String::from_utf8_lossy(raw);
                if let Cow::Owned(_) = &text {
                    let bad = lines(raw).filter(|(_, l)| std::str::from_utf8(l).is_err()).count();
                    counters.add(names::MALFORMED_INPUT_LINES, bad as i64);
                }
                // Lossy decoding keeps every '\n' and '\r', so lines of the decoded text match
                // the raw lines one to one; offsets come from the raw bytes.
                let base = start.saturating_add((owned.start + chunk.start) as u64);
                let mut records = lines(raw).zip(lines(text.as_bytes())).map(|((off, raw), (_, l))| {
                    let line = std::str::from_utf8(l).unwrap_or("");
                    Record::new(source, url, base.saturating_add(off as u64), line, raw, RecordKind::Line)
                });
                f(&mut records)
            }
            Input::Whole { data } => {
                let text = String::from_utf8_lossy(data);
                let mut one = std::iter::once(Record::new(source, url, 0, &text, data, RecordKind::Whole));
                f(&mut one)
            }
            Input::Fixed { data, len, base } => {
                let mut records = chunk.map(|i| {
                    let bytes = &data[i * len..(i + 1) * len];
                    let line = std::str::from_utf8(bytes).unwrap_or("");
                    Record::new(source, url, base.saturating_add((i * len) as u64), line, bytes, RecordKind::Fixed)
                });
                f(&mut records)
            }
            Input::Rows { batches, firsts, text, ends, first } => {
                let mut records = chunk.map(|i| {
                    let from = if i == 0 { 0 } else { ends[i - 1] };
                    let line = &text[from..ends[i]];
                    // The batch holding row i: the last one starting at or before it.
                    let b = firsts.partition_point(|&f| f <= i).saturating_sub(1);
                    let row = batches.get(b).map(|batch| Row { batch, index: i - firsts[b] });
                    // A binary record Quern wrote (emit_bytes) is its bytes; its line their text.
                    let bytes = row.and_then(binary_record).unwrap_or(line.as_bytes());
                    let record = Record::new(source, url, first.saturating_add(i as u64), line, bytes, RecordKind::Row);
                    match row {
                        Some(row) => record.with_row(row),
                        None => record,
                    }
                });
                f(&mut records)
            }
            Input::Generate { start, .. } => {
                let mut records = chunk
                    .map(|i| Record::new(source, url, start.saturating_add(i as u64), "", &[], RecordKind::Generated));
                f(&mut records)
            }
        }
    }
}

/// The name of the binary column holding `emit_bytes` records in Quern's Arrow and Parquet
/// output (see the worker's output writers).
pub const RECORD_COLUMN: &str = "record";

/// The row's value in a non-null binary `record` column, if it has one.
fn binary_record(row: Row<'_>) -> Option<&[u8]> {
    let col = row.batch.column_by_name(RECORD_COLUMN)?;
    if col.is_null(row.index) {
        return None;
    }
    if let Some(a) = col.as_binary_opt::<i32>() {
        return Some(a.value(row.index));
    }
    col.as_binary_opt::<i64>().map(|a| a.value(row.index))
}

/// Runs a third-party decoder on untrusted bytes: should it panic, that is an input error
/// like any other, whoever called (a worker's map task, or the CLI sampling for a total order).
fn guarded<T>(format: &'static str, f: impl FnOnce() -> Result<T, InputError>) -> Result<T, InputError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let message = crate::panic_message(panic.as_ref()).unwrap_or_default();
        Err(InputError::DecoderPanicked { format, message })
    })
}

/// Renders rows as lines: columns joined by tabs, nulls empty, trailing nulls dropped.
/// What is kept (the batches and the rendered text) stays within the limit: a small file can
/// decode to far more (a dictionary column repeats its values, Parquet pages are compressed).
fn render_rows(
    batches: impl Iterator<Item = Result<RecordBatch, ArrowError>>,
    first: u64,
    limits: &InputLimits,
) -> Result<Input, InputError> {
    let options = FormatOptions::default();
    let (mut text, mut ends) = (String::new(), Vec::new());
    let (mut kept, mut firsts) = (Vec::new(), Vec::new());
    let mut held = 0usize;
    let too_large = || InputError::TooLarge { what: "the rows it decodes to".into(), limit: limits.max_read_bytes };
    for batch in batches {
        let batch = batch?;
        held = held.saturating_add(batch.get_array_memory_size());
        if held > limits.max_read_bytes {
            return Err(too_large());
        }
        firsts.push(ends.len());
        // Cheap (reference-counted) copies, so the formatters do not borrow the kept batch.
        let columns: Vec<arrow_array::ArrayRef> = batch.columns().to_vec();
        let formatters =
            columns.iter().map(|c| ArrayFormatter::try_new(c.as_ref(), &options)).collect::<Result<Vec<_>, _>>();
        let formatters = formatters?;
        let record = batch
            .column_by_name(RECORD_COLUMN)
            .filter(|c| matches!(c.data_type(), arrow_schema::DataType::Binary | arrow_schema::DataType::LargeBinary));
        for row in 0..batch.num_rows() {
            // A binary record's line is its text, not a rendering (see `binary_record`).
            if record.is_some()
                && let Some(raw) = binary_record(Row { batch: &batch, index: row })
            {
                text.push_str(&String::from_utf8_lossy(raw));
                ends.push(text.len());
                if held.saturating_add(text.len()) > limits.max_read_bytes {
                    return Err(too_large());
                }
                continue;
            }
            let last = columns.iter().rposition(|c| !c.is_null(row)).map_or(0, |i| i + 1);
            for (i, f) in formatters.iter().take(last).enumerate() {
                if i > 0 {
                    text.push('\t');
                }
                if !columns[i].is_null(row) {
                    use std::fmt::Write as _;
                    write!(text, "{}", f.value(row))?;
                }
            }
            ends.push(text.len());
            if held.saturating_add(text.len()) > limits.max_read_bytes {
                return Err(too_large());
            }
        }
        kept.push(batch);
    }
    Ok(Input::Rows { batches: kept, firsts, text, ends, first })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::cast::AsArray;
    use arrow_array::types::Int64Type;
    use arrow_array::{ArrayRef, Int64Array, StringArray};

    use super::*;

    fn batch(names: Vec<Option<&str>>, ns: Vec<Option<i64>>) -> RecordBatch {
        let names: ArrayRef = Arc::new(StringArray::from(names));
        let ns: ArrayRef = Arc::new(Int64Array::from(ns));
        RecordBatch::try_from_iter_with_nullable([("name", names, true), ("n", ns, true)]).unwrap()
    }

    /// Every record of `input`, as (line, n column of its row).
    fn records(input: &Input) -> Vec<(String, Option<i64>)> {
        let mut out = Vec::new();
        for chunk in input.chunks(3) {
            input.with_records(chunk, "x", "file:///x", &mut Counters::new(), |recs| {
                for r in recs {
                    let row = r.row.unwrap();
                    let n = row.batch.column(1).as_primitive::<Int64Type>();
                    out.push((r.line.to_string(), (!n.is_null(row.index)).then(|| n.value(row.index))));
                }
            });
        }
        out
    }

    #[test]
    fn parquet_and_arrow_rows_come_as_lines_and_as_rows() {
        let batches = [batch(vec![Some("a"), None], vec![Some(1), Some(2)]), batch(vec![Some("c")], vec![None])];
        let mut pq = parquet::arrow::ArrowWriter::try_new(Vec::new(), batches[0].schema(), None).unwrap();
        let mut ipc = arrow_ipc::writer::StreamWriter::try_new(Vec::new(), &batches[0].schema()).unwrap();
        for b in &batches {
            pq.write(b).unwrap();
            ipc.write(b).unwrap();
        }
        let expected = vec![("a\t1".to_string(), Some(1)), ("\t2".to_string(), Some(2)), ("c".to_string(), None)];
        let pq = Input::decode(ObjectFormat::Parquet, Bytes::from(pq.into_inner().unwrap()), 0, 0).unwrap();
        assert_eq!(records(&pq), expected);
        let ipc = Input::decode(ObjectFormat::Arrow, Bytes::from(ipc.into_inner().unwrap()), 0, 0).unwrap();
        assert_eq!(records(&ipc), expected);
        assert!(Input::decode(ObjectFormat::Parquet, Bytes::from_static(b"not parquet"), 0, 0).is_err());
    }

    #[test]
    fn a_decoder_that_panics_is_an_input_error() {
        let e = guarded::<()>("parquet", || panic!("page header claims {} values", -1)).unwrap_err();
        assert!(matches!(&e, InputError::DecoderPanicked { format: "parquet", message } if message.contains("-1")));
        assert!(e.to_string().starts_with("parquet decoder failed on this data"), "{e}");
    }

    #[test]
    fn fixed_records_keep_their_offsets_and_refuse_a_partial_record() {
        let input = Input::decode(ObjectFormat::Fixed(4, None), Bytes::from_static(b"abcdefgh"), 400, 408).unwrap();
        let mut got = Vec::new();
        for chunk in input.chunks(8) {
            input.with_records(chunk, "x", "file:///x", &mut Counters::new(), |recs| {
                got.extend(recs.map(|r| (r.offset, r.bytes.to_vec())));
            });
        }
        assert_eq!(got, vec![(400, b"abcd".to_vec()), (404, b"efgh".to_vec())]);
        assert!(Input::decode(ObjectFormat::Fixed(3, None), Bytes::from_static(b"abcd"), 0, 4).is_err());
    }
}
