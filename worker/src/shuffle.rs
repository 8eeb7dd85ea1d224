//! The shuffle format: how one map attempt's output is laid out in one object.
//!
//! A map output object is the concatenation of R *segments*, one per reduce partition, in
//! partition order. Each non-empty segment is a self-contained Arrow IPC stream of record
//! batches with two non-null `Binary` columns, `key` and `value`, sorted by key bytes (and
//! already combined when the job has a combiner); an empty partition has a zero-length
//! segment. The index (offset, length, CRC-32 and record count of every segment) is reported
//! to the coordinator with the map's success and handed to reducers, who fetch their segment
//! with one ranged read, check its CRC-32, and decode it without copying.
//!
//! One object per map attempt keeps the object count at O(M) instead of O(M x R).
//!
//! Segments are written and read a batch at a time ([`SegmentEncoder`], [`SegmentReader`]), so
//! neither side needs a whole segment in memory; the same format serves for the sorted runs a
//! task spills to its local disk (see [`crate::spill`] and [`crate::merge`]).
//!
//! Segments may be compressed ([`Codec`], the worker's `--shuffle-compression`): Arrow IPC's
//! own buffer compression, LZ4 frames or zstd, which readers detect from the stream itself,
//! so workers with different settings read each other's output. Arrow keeps a buffer
//! uncompressed when compressing would not shrink it, so compression only costs where it
//! cannot pay. Local spills are not compressed.

use std::io::{Cursor, Read, Write};
use std::sync::{Arc, OnceLock};

use arrow_array::cast::AsArray;
use arrow_array::{Array, BinaryArray, RecordBatch, builder::BinaryBuilder};
use arrow_ipc::CompressionType;
use arrow_ipc::reader::StreamReader;

use crate::ipc_guard::Guarded;
use arrow_ipc::writer::{IpcWriteOptions, StreamWriter};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef};
use quern_api::pb;

/// Rows per record batch: big enough to amortise per-batch costs, small enough to stream.
const BATCH_ROWS: usize = 64 * 1024;
/// Bytes per record batch at most (Binary offsets are 32-bit).
const BATCH_BYTES: usize = 256 * 1024 * 1024;
/// What a reader takes of one IPC message body, or of one buffer decompressed: a batch we
/// write stays within [`BATCH_BYTES`] of keys and values plus their offsets.
const MAX_MESSAGE: usize = 2 * BATCH_BYTES;
/// Bytes per record batch of map outputs and spills: what a reader holds per open run, so
/// small enough for a reducer to keep hundreds open, big enough that a batch's framing is noise.
pub const RUN_BATCH_BYTES: usize = 1 << 20;

/// Shuffle encoding or decoding failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShuffleError {
    /// The segment's bytes do not match the CRC-32 its map reported.
    #[error("checksum mismatch (expected {expected:08x}, found {found:08x})")]
    Checksum {
        /// Reported by the map.
        expected: u32,
        /// Computed by the reader.
        found: u32,
    },
    /// The segment is not the Arrow IPC stream it should be.
    #[error("malformed segment: {0}")]
    Arrow(#[from] ArrowError),
    /// The segment decoded but does not have the shuffle schema.
    #[error("malformed segment: {0}")]
    Shape(String),
    /// Reading or writing a local spill file failed.
    #[error("local spill file: {0}")]
    Io(#[from] std::io::Error),
}

fn schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            Arc::new(Schema::new(vec![
                Field::new("key", DataType::Binary, false),
                Field::new("value", DataType::Binary, false),
            ]))
        })
        .clone()
}

/// How shuffle segments are compressed (Hadoop's `mapreduce.map.output.compress.codec`,
/// Spark's `spark.io.compression.codec`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Codec {
    /// As encoded.
    None,
    /// LZ4 frames (the default, as Spark's): cheap enough to pay even on a local disk.
    #[default]
    Lz4,
    /// zstd at level 1: smaller, for a slow or metered network.
    Zstd,
}

impl std::str::FromStr for Codec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Codec::None),
            "lz4" => Ok(Codec::Lz4),
            "zstd" => Ok(Codec::Zstd),
            other => Err(format!("unknown shuffle compression {other:?} (none, lz4 or zstd)")),
        }
    }
}

impl std::fmt::Display for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Codec::None => "none",
            Codec::Lz4 => "lz4",
            Codec::Zstd => "zstd",
        })
    }
}

impl Codec {
    fn write_options(self) -> Result<IpcWriteOptions, ArrowError> {
        let options = IpcWriteOptions::default();
        match self {
            Codec::None => Ok(options),
            Codec::Lz4 => options.try_with_compression(Some(CompressionType::LZ4_FRAME)),
            Codec::Zstd => options.try_with_compression(Some(CompressionType::ZSTD)),
        }
    }
}

/// Encodes sorted pairs as one segment; no pairs give an empty segment.
pub fn encode_segment<'a>(
    pairs: impl ExactSizeIterator<Item = (&'a [u8], &'a [u8])>,
    codec: Codec,
) -> Result<Vec<u8>, ShuffleError> {
    let mut enc = SegmentEncoder::new(Vec::new(), BATCH_BYTES, codec);
    for (k, v) in pairs {
        enc.push(k, v)?;
    }
    Ok(enc.finish()?.0)
}

/// What a finished segment holds: its index entry without the offset.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SegmentInfo {
    /// Bytes written.
    pub length: u64,
    /// CRC-32 of those bytes.
    pub crc32: u32,
    /// Pairs in it.
    pub records: u64,
}

/// A writer that counts and checksums what passes through it.
struct Tally<W> {
    inner: W,
    bytes: u64,
    crc: crc32fast::Hasher,
}

impl<W: Write> Write for Tally<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        self.crc.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes sorted pairs as one segment into `W`, compressed with its [`Codec`], a record batch at a time: memory holds one
/// batch (at most `batch_bytes` of keys and values, and [`BATCH_ROWS`] rows), never the
/// segment. The stream starts with the first pair, so no pairs write nothing.
pub struct SegmentEncoder<W: Write> {
    /// The destination until the first pair, then the Arrow writer around it.
    idle: Option<Tally<W>>,
    writer: Option<StreamWriter<Tally<W>>>,
    keys: BinaryBuilder,
    values: BinaryBuilder,
    rows: usize,
    bytes: usize,
    batch_bytes: usize,
    records: u64,
    codec: Codec,
}

impl<W: Write> SegmentEncoder<W> {
    /// An encoder writing into `out`, cutting batches at `batch_bytes` of keys and values
    /// (capped at what 32-bit Binary offsets allow).
    pub fn new(out: W, batch_bytes: usize, codec: Codec) -> Self {
        SegmentEncoder {
            codec,
            idle: Some(Tally { inner: out, bytes: 0, crc: crc32fast::Hasher::new() }),
            writer: None,
            keys: BinaryBuilder::new(),
            values: BinaryBuilder::new(),
            rows: 0,
            bytes: 0,
            batch_bytes: batch_bytes.clamp(1, BATCH_BYTES),
            records: 0,
        }
    }

    /// Appends one pair; pairs must come sorted by key.
    pub fn push(&mut self, k: &[u8], v: &[u8]) -> Result<(), ShuffleError> {
        self.keys.append_value(k);
        self.values.append_value(v);
        self.rows += 1;
        self.records += 1;
        self.bytes += k.len() + v.len();
        if self.rows >= BATCH_ROWS || self.bytes >= self.batch_bytes {
            self.flush()?;
        }
        Ok(())
    }

    /// Pairs pushed so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    fn flush(&mut self) -> Result<(), ShuffleError> {
        let batch = RecordBatch::try_new(schema(), vec![Arc::new(self.keys.finish()), Arc::new(self.values.finish())])?;
        if self.writer.is_none()
            && let Some(out) = self.idle.take()
        {
            self.writer = Some(StreamWriter::try_new_with_options(out, &schema(), self.codec.write_options()?)?);
        }
        if let Some(w) = self.writer.as_mut() {
            w.write(&batch)?;
        }
        self.rows = 0;
        self.bytes = 0;
        Ok(())
    }

    /// Ends the segment; returns the destination and what was written into it.
    pub fn finish(mut self) -> Result<(W, SegmentInfo), ShuffleError> {
        if self.rows > 0 {
            self.flush()?;
        }
        let records = self.records;
        let mut tally = match (self.writer, self.idle) {
            (Some(mut w), _) => {
                w.finish()?;
                w.into_inner()?
            }
            (None, Some(t)) => t,
            (None, None) => return Err(ShuffleError::Shape("encoder lost its destination".into())),
        };
        tally.flush()?;
        let info = SegmentInfo { length: tally.bytes, crc32: tally.crc.finalize(), records };
        Ok((tally.inner, info))
    }
}

/// Reads one segment a record batch at a time from `R` (which must end where the segment
/// does), checking its shape and, at the end, its record count. The bytes' CRC-32 is the
/// caller's to check, as they arrive from the store.
pub struct SegmentReader<R: Read> {
    reader: Option<StreamReader<Guarded<R>>>,
    expected: u64,
    seen: u64,
}

impl<R: Read> SegmentReader<R> {
    /// A reader of a segment of `records` pairs; `empty` when it has no bytes at all.
    pub fn new(source: R, empty: bool, records: u64) -> Result<Self, ShuffleError> {
        let reader = if empty { None } else { Some(StreamReader::try_new(Guarded::new(source, MAX_MESSAGE), None)?) };
        if let Some(r) = &reader
            && r.schema().fields().len() != 2
        {
            return Err(ShuffleError::Shape("expected key and value columns".into()));
        }
        Ok(SegmentReader { reader, expected: records, seen: 0 })
    }

    /// The next batch as (keys, values), skipping empty ones; None at the end.
    pub fn next_batch(&mut self) -> Result<Option<(BinaryArray, BinaryArray)>, ShuffleError> {
        while let Some(r) = self.reader.as_mut() {
            match r.next() {
                Some(batch) => {
                    let (k, v) = columns(&batch?)?;
                    self.seen += k.len() as u64;
                    if !k.is_empty() {
                        return Ok(Some((k, v)));
                    }
                }
                None => self.reader = None,
            }
        }
        if self.seen != self.expected {
            return Err(ShuffleError::Shape(format!("expected {} records, found {}", self.expected, self.seen)));
        }
        Ok(None)
    }
}

fn columns(batch: &RecordBatch) -> Result<(BinaryArray, BinaryArray), ShuffleError> {
    if batch.num_columns() != 2 {
        return Err(ShuffleError::Shape("expected key and value columns".into()));
    }
    let k = batch.column(0).as_binary_opt::<i32>().ok_or_else(|| ShuffleError::Shape("key is not Binary".into()))?;
    let v = batch.column(1).as_binary_opt::<i32>().ok_or_else(|| ShuffleError::Shape("value is not Binary".into()))?;
    if k.null_count() > 0 || v.null_count() > 0 {
        return Err(ShuffleError::Shape("null key or value".into()));
    }
    Ok((k.clone(), v.clone()))
}

/// The CRC-32 used for segments.
pub fn checksum(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

/// One decoded sorted run: the batches of one segment, as (keys, values) columns.
#[derive(Debug, Default)]
pub struct Run {
    batches: Vec<(BinaryArray, BinaryArray)>,
}

impl Run {
    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.batches.iter().map(|(k, _)| k.len()).sum()
    }

    /// Whether the run holds no pairs.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The pair at (batch, row).
    pub fn get(&self, batch: usize, row: usize) -> Option<(&[u8], &[u8])> {
        let (k, v) = self.batches.get(batch)?;
        if row >= k.len() {
            return None;
        }
        Some((k.value(row), v.value(row)))
    }

    /// The position after (batch, row), skipping empty batches; None at the end.
    pub fn next_pos(&self, mut batch: usize, mut row: usize) -> Option<(usize, usize)> {
        row += 1;
        while let Some((k, _)) = self.batches.get(batch) {
            if row < k.len() {
                return Some((batch, row));
            }
            batch += 1;
            row = 0;
        }
        None
    }

    /// The first position, if any.
    pub fn first_pos(&self) -> Option<(usize, usize)> {
        self.batches.iter().position(|(k, _)| !k.is_empty()).map(|b| (b, 0))
    }
}

/// Checks a fetched segment against its reported index entry and decodes it.
pub fn decode_segment(bytes: bytes::Bytes, seg: &pb::Segment) -> Result<Run, ShuffleError> {
    let found = checksum(&bytes);
    if found != seg.crc32 {
        return Err(ShuffleError::Checksum { expected: seg.crc32, found });
    }
    if bytes.is_empty() {
        return Ok(Run::default());
    }
    let reader = StreamReader::try_new(Guarded::new(Cursor::new(bytes), MAX_MESSAGE), None)?;
    if reader.schema().fields().len() != 2 {
        return Err(ShuffleError::Shape("expected key and value columns".into()));
    }
    let mut batches = Vec::new();
    for batch in reader {
        batches.push(columns(&batch?)?);
    }
    let run = Run { batches };
    if run.len() as u64 != seg.records {
        return Err(ShuffleError::Shape(format!("expected {} records, found {}", seg.records, run.len())));
    }
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_round_trip_and_detect_corruption() {
        let pairs: Vec<(Vec<u8>, Vec<u8>)> =
            (0..100_000u32).map(|i| (i.to_be_bytes().to_vec(), vec![7; (i % 5) as usize])).collect();
        let mut sizes = Vec::new();
        for codec in [Codec::None, Codec::Lz4, Codec::Zstd] {
            let bytes = encode_segment(pairs.iter().map(|(k, v)| (k.as_slice(), v.as_slice())), codec).unwrap();
            sizes.push(bytes.len());
            let seg = pb::Segment {
                offset: 0,
                length: bytes.len() as u64,
                crc32: checksum(&bytes),
                records: pairs.len() as u64,
            };
            let run = decode_segment(bytes::Bytes::from(bytes.clone()), &seg).unwrap();
            let mut pos = run.first_pos();
            let mut got = Vec::new();
            while let Some((b, r)) = pos {
                let (k, v) = run.get(b, r).unwrap();
                got.push((k.to_vec(), v.to_vec()));
                pos = run.next_pos(b, r);
            }
            assert_eq!(got, pairs, "{codec}");
        }
        // Big-endian counters and repeated values compress.
        assert!(sizes[1] < sizes[0] && sizes[2] < sizes[0], "{sizes:?}");
        let bytes = encode_segment(pairs.iter().map(|(k, v)| (k.as_slice(), v.as_slice())), Codec::None).unwrap();
        let seg =
            pb::Segment { offset: 0, length: bytes.len() as u64, crc32: checksum(&bytes), records: pairs.len() as u64 };

        let mut bad = bytes;
        let mid = bad.len() / 2;
        bad[mid] ^= 0xff;
        assert!(matches!(decode_segment(bytes::Bytes::from(bad), &seg), Err(ShuffleError::Checksum { .. })));
    }

    /// A compressed buffer that claims to decompress to a petabyte is refused before Arrow
    /// allocates for it (without the check, the reader aborts the process).
    #[test]
    fn a_declared_decompressed_length_beyond_the_limit_is_refused() {
        let pairs: Vec<(Vec<u8>, Vec<u8>)> = (0..1000u32).map(|i| (i.to_be_bytes().to_vec(), vec![7; 3])).collect();
        let mut bytes = encode_segment(pairs.iter().map(|(k, v)| (k.as_slice(), v.as_slice())), Codec::Lz4).unwrap();
        // A compressed buffer: its declared length, then an LZ4 frame's magic number.
        let magic = bytes.windows(4).position(|w| w == [0x04, 0x22, 0x4d, 0x18]).expect("a compressed buffer");
        let at = magic - 8;
        bytes[at..at + 8].copy_from_slice(&(1i64 << 50).to_le_bytes());
        let seg =
            pb::Segment { offset: 0, length: bytes.len() as u64, crc32: checksum(&bytes), records: pairs.len() as u64 };
        let err = decode_segment(bytes::Bytes::from(bytes.clone()), &seg).unwrap_err();
        assert!(err.to_string().contains("declared length"), "{err}");
        let mut reader = SegmentReader::new(std::io::Cursor::new(bytes), false, 1000);
        let streamed = match &mut reader {
            Ok(r) => r.next_batch().map(|_| ()),
            Err(_) => Ok(()),
        };
        assert!(reader.is_err() || streamed.is_err());
    }

    #[test]
    fn empty_segments_are_empty() {
        let bytes = encode_segment(std::iter::empty::<(&[u8], &[u8])>(), Codec::Lz4).unwrap();
        assert!(bytes.is_empty());
        let seg = pb::Segment { offset: 0, length: 0, crc32: checksum(&[]), records: 0 };
        assert!(decode_segment(bytes::Bytes::new(), &seg).unwrap().is_empty());
    }
}
