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

/// The records as one batch: (`key`, `value`) Utf8 columns, or one Binary `record` column if
/// the job wrote raw bytes.
fn batch(out: &TextOutput) -> Result<RecordBatch, String> {
    let (schema, columns): (Schema, Vec<ArrayRef>) = if out.has_bytes() {
        let records = out
            .iter()
            .enumerate()
            .map(|(i, r)| match r {
                OutRecord::Bytes(b) => Ok(b),
                OutRecord::Line(l) => Ok(l.as_bytes()),
                OutRecord::Pair(..) => Err(format!("record {i} is a key-value pair among binary records")),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let array = BinaryArray::from_iter_values(records);
        (Schema::new(vec![Field::new("record", DataType::Binary, false)]), vec![Arc::new(array)])
    } else {
        let (mut keys, mut values) = (Vec::new(), Vec::new());
        for r in out.iter() {
            let (k, v) = match r {
                OutRecord::Pair(k, v) => (k, Some(v)),
                OutRecord::Line(l) => (l, None),
                // (has_bytes was false)
                OutRecord::Bytes(_) => continue,
            };
            keys.push(k);
            values.push(v);
        }
        let schema =
            Schema::new(vec![Field::new("key", DataType::Utf8, false), Field::new("value", DataType::Utf8, true)]);
        (schema, vec![Arc::new(StringArray::from(keys)), Arc::new(StringArray::from(values))])
    };
    RecordBatch::try_new(Arc::new(schema), columns).map_err(|e| e.to_string())
}
