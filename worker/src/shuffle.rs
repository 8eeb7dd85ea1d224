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
//! Segments may be compressed ([`Codec`], the worker's `--shuffle-compression`): Arrow IPC's
//! own buffer compression, LZ4 frames or zstd, which readers detect from the stream itself,
//! so workers with different settings read each other's output. Arrow keeps a buffer
//! uncompressed when compressing would not shrink it, so compression only costs where it
//! cannot pay.

use std::io::Cursor;
use std::sync::{Arc, OnceLock};

use arrow_array::cast::AsArray;
use arrow_array::{Array, BinaryArray, RecordBatch, builder::BinaryBuilder};
use arrow_ipc::CompressionType;
use arrow_ipc::reader::StreamReader;
use arrow_ipc::writer::{IpcWriteOptions, StreamWriter};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef};
use quern_api::pb;

/// Rows per record batch: big enough to amortise per-batch costs, small enough to stream.
const BATCH_ROWS: usize = 64 * 1024;
/// Bytes per record batch at most (Binary offsets are 32-bit).
const BATCH_BYTES: usize = 256 * 1024 * 1024;

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
    if pairs.len() == 0 {
        return Ok(Vec::new());
    }
    let mut writer = StreamWriter::try_new_with_options(Vec::new(), &schema(), codec.write_options()?)?;
    let (mut keys, mut values) = (BinaryBuilder::new(), BinaryBuilder::new());
    let mut rows = 0usize;
    let mut bytes = 0usize;
    let flush = |keys: &mut BinaryBuilder, values: &mut BinaryBuilder, w: &mut StreamWriter<Vec<u8>>| {
        let batch = RecordBatch::try_new(schema(), vec![Arc::new(keys.finish()), Arc::new(values.finish())])?;
        w.write(&batch)
    };
    for (k, v) in pairs {
        keys.append_value(k);
        values.append_value(v);
        rows += 1;
        bytes += k.len() + v.len();
        if rows >= BATCH_ROWS || bytes >= BATCH_BYTES {
            flush(&mut keys, &mut values, &mut writer)?;
            rows = 0;
            bytes = 0;
        }
    }
    if rows > 0 {
        flush(&mut keys, &mut values, &mut writer)?;
    }
    writer.finish()?;
    Ok(writer.into_inner()?)
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
    let reader = StreamReader::try_new(Cursor::new(bytes), None)?;
    if reader.schema().fields().len() != 2 {
        return Err(ShuffleError::Shape("expected key and value columns".into()));
    }
    let mut batches = Vec::new();
    for batch in reader {
        let batch = batch?;
        let k =
            batch.column(0).as_binary_opt::<i32>().ok_or_else(|| ShuffleError::Shape("key is not Binary".into()))?;
        let v =
            batch.column(1).as_binary_opt::<i32>().ok_or_else(|| ShuffleError::Shape("value is not Binary".into()))?;
        batches.push((k.clone(), v.clone()));
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

    #[test]
    fn empty_segments_are_empty() {
        let bytes = encode_segment(std::iter::empty::<(&[u8], &[u8])>(), Codec::Lz4).unwrap();
        assert!(bytes.is_empty());
        let seg = pb::Segment { offset: 0, length: 0, crc32: checksum(&[]), records: 0 };
        assert!(decode_segment(bytes::Bytes::new(), &seg).unwrap().is_empty());
    }
}
