//! Output formats on the worker: a task's records become the bytes of one part (see
//! [`quern_api::format`]), whole ([`encode`]) or a [`PartWriter`] at a time ([`PartSink`]).

use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;

use arrow_ipc::writer::FileWriter;
use parquet::arrow::ArrowWriter;
use tempfile::SpooledTempFile;

use crate::blob::Blob;

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
    /// Writing the part to local disk failed.
    #[error("local output file: {0}")]
    Io(#[from] std::io::Error),
}

/// Encodes `out` as one part in `format`; the error says which record did not fit.
pub fn encode(out: PartWriter, format: OutputFormat) -> Result<Vec<u8>, OutputError> {
    match format {
        OutputFormat::Text => Ok(out.into_bytes()),
        OutputFormat::Fixed(n) => {
            let mut bytes = Vec::with_capacity(out.records() as usize * n as usize);
            fixed(&out, n, 0, &mut bytes)?;
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

/// Writes the records of `out` as fixed-length records of `n` bytes; `before` records of the
/// part came before them (for the error's index).
fn fixed(out: &PartWriter, n: u32, before: usize, to: &mut impl Write) -> Result<(), OutputError> {
    for (i, r) in out.iter().enumerate() {
        let index = before + i;
        let rec: &[u8] = match r {
            OutRecord::Bytes(b) => b,
            OutRecord::Line(l) => l.as_bytes(),
            OutRecord::Pair(..) => return Err(OutputError::NotFixed { index, len: n }),
        };
        if rec.len() != n as usize {
            return Err(OutputError::WrongLength { index, got: rec.len(), len: n });
        }
        to.write_all(rec)?;
    }
    Ok(())
}

/// A writer that counts the bytes through it.
struct Counted<W> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

type Spool = Counted<BufWriter<SpooledTempFile>>;

enum Encoder {
    Raw(Spool, Option<u32>),
    Arrow(FileWriter<Spool>),
    Parquet(ArrowWriter<Spool>),
}

/// One output part written a [`PartWriter`] at a time into a local spool that stays in
/// memory up to a limit and goes to a local file beyond: the whole part is never in memory.
/// Parquet row groups are cut when the writer buffers more than the limit.
pub struct PartSink {
    enc: Encoder,
    records: usize,
    batches: usize,
    limit: usize,
}

impl PartSink {
    /// A part in `format`, kept in memory up to `limit` bytes, beyond in a file in `dir`.
    pub fn new(format: OutputFormat, dir: &Path, limit: usize) -> Result<Self, OutputError> {
        let spool =
            Counted { inner: BufWriter::with_capacity(64 << 10, SpooledTempFile::new_in(limit, dir)), bytes: 0 };
        let enc = match format {
            OutputFormat::Text => Encoder::Raw(spool, None),
            OutputFormat::Fixed(n) => Encoder::Raw(spool, Some(n)),
            OutputFormat::Arrow => Encoder::Arrow(FileWriter::try_new(spool, &part_schema())?),
            OutputFormat::Parquet => Encoder::Parquet(ArrowWriter::try_new(spool, part_schema(), None)?),
        };
        Ok(PartSink { enc, records: 0, batches: 0, limit })
    }

    /// Appends the records of `out`.
    pub fn write(&mut self, out: &PartWriter) -> Result<(), OutputError> {
        match &mut self.enc {
            Encoder::Raw(w, None) => w.write_all(out.as_bytes())?,
            Encoder::Raw(w, Some(n)) => fixed(out, *n, self.records, w)?,
            Encoder::Arrow(w) => w.write(&batch(out)?)?,
            Encoder::Parquet(w) => {
                w.write(&batch(out)?)?;
                if w.in_progress_size() > self.limit {
                    w.flush()?;
                }
            }
        }
        self.records += out.records() as usize;
        self.batches += 1;
        Ok(())
    }

    /// Records written so far.
    pub fn records(&self) -> u64 {
        self.records as u64
    }

    /// Ends the part; returns its bytes.
    pub fn finish(mut self) -> Result<Blob, OutputError> {
        // A part without records still has a batch in the columnar formats, as one written
        // whole does.
        if self.batches == 0 && matches!(self.enc, Encoder::Arrow(_) | Encoder::Parquet(_)) {
            self.write(&PartWriter::new())?;
        }
        let mut spool = match self.enc {
            Encoder::Raw(w, _) => w,
            Encoder::Arrow(mut w) => {
                w.finish()?;
                w.into_inner()?
            }
            Encoder::Parquet(w) => w.into_inner()?,
        };
        spool.flush()?;
        let len = spool.bytes;
        let file = spool.inner.into_inner().map_err(|e| e.into_error())?;
        let mut blob = Blob::default();
        blob.push_spool(file, len);
        Ok(blob)
    }
}

fn part_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("key", DataType::Utf8, true),
        Field::new("value", DataType::Utf8, true),
        Field::new(quern_api::input::RECORD_COLUMN, DataType::Binary, true),
    ]))
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
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(keys)),
        Arc::new(StringArray::from(values)),
        Arc::new(BinaryArray::from(records)),
    ];
    Ok(RecordBatch::try_new(part_schema(), columns)?)
}
