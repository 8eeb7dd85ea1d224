//! Output formats on the worker: a task's records become the bytes of one part (see
//! [`quern_api::format`]).

use std::sync::Arc;

use arrow_array::{ArrayRef, BinaryArray, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use quern_api::OutputFormat;
use quern_api::job::{OutRecord, PartWriter};

/// Why a task's records could not be written in its output format.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutputError {
    /// A key-value pair in fixed-length output.
    #[error("record {index} is a key-value pair, not a fixed:{len} record")]
    NotFixed {
        /// Which record.
        index: usize,
        /// The format's record length.
        len: u32,
    },
    /// A record of the wrong length in fixed-length output.
    #[error("record {index} has {got} bytes, not the {len} of fixed:{len} output")]
    WrongLength {
        /// Which record.
        index: usize,
        /// Its length.
        got: usize,
        /// The format's record length.
        len: u32,
    },
    /// The Arrow writer failed.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    /// The Parquet writer failed.
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
}

/// Encodes `out` as one part in `format`; the error says which record did not fit.
pub fn encode(out: PartWriter, format: OutputFormat) -> Result<Vec<u8>, OutputError> {
    match format {
        OutputFormat::Text => Ok(out.into_bytes()),
        OutputFormat::Fixed(n) => {
            let mut bytes = Vec::with_capacity(out.records() as usize * n as usize);
            for (i, r) in out.iter().enumerate() {
                let rec: &[u8] = match r {
                    OutRecord::Bytes(b) => b,
                    OutRecord::Line(l) => l.as_bytes(),
                    OutRecord::Pair(..) => return Err(OutputError::NotFixed { index: i, len: n }),
                };
                if rec.len() != n as usize {
                    return Err(OutputError::WrongLength { index: i, got: rec.len(), len: n });
                }
                bytes.extend_from_slice(rec);
            }
            Ok(bytes)
        }
        OutputFormat::Arrow => {
            let batch = batch(&out)?;
            let mut w = arrow_ipc::writer::FileWriter::try_new(Vec::new(), &batch.schema())?;
            w.write(&batch)?;
            Ok(w.into_inner()?)
        }
        OutputFormat::Parquet => {
            let batch = batch(&out)?;
            let mut w = parquet::arrow::ArrowWriter::try_new(Vec::new(), batch.schema(), None)?;
            w.write(&batch)?;
            Ok(w.into_inner()?)
        }
    }
}

/// The records as one batch. Every part of every job has the same schema, so a directory of
/// parts is one table: `key` and `value` (Utf8, nullable) for `emit` records (`emit_line`
/// leaves `value` null), and `record` (Binary, nullable) for `emit_bytes` records.
fn batch(out: &PartWriter) -> Result<RecordBatch, OutputError> {
    let n = out.records() as usize;
    let (mut keys, mut values, mut records) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    for r in out.iter() {
        let (k, v, b) = match r {
            OutRecord::Pair(k, v) => (Some(k), Some(v), None),
            OutRecord::Line(l) => (Some(l), None, None),
            OutRecord::Bytes(b) => (None, None, Some(b)),
        };
        keys.push(k);
        values.push(v);
        records.push(b);
    }
    let schema = Schema::new(vec![
        Field::new("key", DataType::Utf8, true),
        Field::new("value", DataType::Utf8, true),
        Field::new(quern_api::input::RECORD_COLUMN, DataType::Binary, true),
    ]);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(keys)),
        Arc::new(StringArray::from(values)),
        Arc::new(BinaryArray::from(records)),
    ];
    Ok(RecordBatch::try_new(Arc::new(schema), columns)?)
}
