//! Output formats on the worker: a task's records become the bytes of one part (see
//! [`quern_api::format`]).

use std::sync::Arc;

use arrow_array::{ArrayRef, BinaryArray, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use quern_api::OutputFormat;
use quern_api::job::{OutRecord, TextOutput};

/// Encodes `out` as one part in `format`; the error says which record did not fit.
pub fn encode(out: TextOutput, format: OutputFormat) -> Result<Vec<u8>, String> {
    match format {
        OutputFormat::Text => Ok(out.into_bytes()),
        OutputFormat::Fixed(n) => {
            let mut bytes = Vec::with_capacity(out.records() as usize * n as usize);
            for (i, r) in out.iter().enumerate() {
                let rec: &[u8] = match r {
                    OutRecord::Bytes(b) => b,
                    OutRecord::Line(l) => l.as_bytes(),
                    OutRecord::Pair(..) => {
                        return Err(format!("record {i} is a key-value pair, not a fixed:{n} record"));
                    }
                };
                if rec.len() != n as usize {
                    return Err(format!("record {i} has {} bytes, not the {n} of fixed:{n} output", rec.len()));
                }
                bytes.extend_from_slice(rec);
            }
            Ok(bytes)
        }
        OutputFormat::Arrow => {
            let batch = batch(&out)?;
            let mut w =
                arrow_ipc::writer::FileWriter::try_new(Vec::new(), &batch.schema()).map_err(|e| e.to_string())?;
            w.write(&batch).map_err(|e| e.to_string())?;
            w.into_inner().map_err(|e| e.to_string())
        }
        OutputFormat::Parquet => {
            let batch = batch(&out)?;
            let mut w =
                parquet::arrow::ArrowWriter::try_new(Vec::new(), batch.schema(), None).map_err(|e| e.to_string())?;
            w.write(&batch).map_err(|e| e.to_string())?;
            w.into_inner().map_err(|e| e.to_string())
        }
    }
}

/// The records as one batch. Every part of every job has the same schema, so a directory of
/// parts is one table: `key` and `value` (Utf8, nullable) for `emit` records (`emit_line`
/// leaves `value` null), and `record` (Binary, nullable) for `emit_bytes` records.
fn batch(out: &TextOutput) -> Result<RecordBatch, String> {
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
        Field::new(crate::input::RECORD_COLUMN, DataType::Binary, true),
    ]);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(keys)),
        Arc::new(StringArray::from(values)),
        Arc::new(BinaryArray::from(records)),
    ];
    RecordBatch::try_new(Arc::new(schema), columns).map_err(|e| e.to_string())
}
