//! Parquet objects cut by row group: planning reads only an object's footer (two ranged reads
//! at most) and makes one split per run of consecutive row groups up to the split size; a map
//! task reads the footer again and then only the bytes of its own row groups.
//!
//! A split `[start, end)` owns the row groups whose first byte lies in it. Planned splits are
//! cut exactly where row groups start (the first at 0, the last running to the object's end),
//! but the rule reads every row group exactly once for any cover of the object by disjoint
//! ranges: a whole-object split (what older planners made) owns them all.
//!
//! Everything the footer says is untrusted: its length is bounded ([`MAX_FOOTER_BYTES`]), the
//! row groups counted ([`MAX_ROW_GROUPS`]), and every column chunk must lie between the
//! leading magic and the footer; anything else is one [`InputError::Malformed`] naming what
//! was wrong.

use std::future::Future;
use std::ops::Range;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use parquet::errors::ParquetError;
use parquet::file::metadata::{FooterTail, ParquetMetaData, ParquetMetaDataReader};
use parquet::file::reader::{ChunkReader, Length};

pub use super::ranged::ReadError;
use super::{InputError, InputLimits};
use crate::StoreError;
use crate::split::Split;

/// The most bytes a footer may claim: real ones are kilobytes to a few megabytes, and the
/// coordinator holds a few at once while planning.
pub const MAX_FOOTER_BYTES: u64 = 16 << 20;

/// The most row groups one object may have (each may become a map task).
pub const MAX_ROW_GROUPS: usize = 1 << 16;

/// The tail read first: footers usually fit, so one read finds them.
const PREFETCH: u64 = 64 << 10;

/// The 8 bytes ending a Parquet object: footer length and magic.
const TAIL: u64 = 8;

/// The leading magic `PAR1`.
const HEAD: u64 = 4;

/// One row group's place in the object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowGroupSpan {
    /// Its index in the footer.
    pub index: usize,
    /// Its first byte (its earliest column chunk's start).
    pub start: u64,
    /// One past its last byte.
    pub end: u64,
    /// Its rows.
    pub rows: u64,
    /// Its size decoded, as the footer says.
    pub decoded: u64,
}

/// A Parquet object's footer, decoded and checked.
#[derive(Debug)]
pub struct Footer {
    /// The decoded metadata.
    pub metadata: Arc<ParquetMetaData>,
    /// The row groups, by their first byte.
    pub groups: Vec<RowGroupSpan>,
    /// The object's size.
    pub size: u64,
    /// Bytes read to get the footer.
    pub read: u64,
}

fn malformed(what: String) -> InputError {
    InputError::Malformed { format: "parquet", what }
}

/// Reads and checks the footer of a Parquet object of `size` bytes; `get` reads a byte range
/// of the object.
pub async fn read_footer<F, Fut>(size: u64, get: &F) -> Result<Footer, ReadError>
where
    F: Fn(Range<u64>) -> Fut,
    Fut: Future<Output = Result<Bytes, StoreError>>,
{
    if size < HEAD + TAIL {
        return Err(malformed(format!("{size} bytes is too small to be a Parquet file")).into());
    }
    let first = size.min(PREFETCH);
    let tail = fetch(get, size - first..size).await?;
    let mut last = [0u8; TAIL as usize];
    last.copy_from_slice(&tail[tail.len() - TAIL as usize..]);
    let footer_tail = FooterTail::try_new(&last).map_err(InputError::Parquet)?;
    if footer_tail.is_encrypted_footer() {
        return Err(malformed("its footer is encrypted, which is not supported".into()).into());
    }
    let len = footer_tail.metadata_length() as u64;
    if len > MAX_FOOTER_BYTES {
        return Err(malformed(format!("its footer claims {len} bytes, over the {MAX_FOOTER_BYTES}-byte limit")).into());
    }
    if len + HEAD + TAIL > size {
        return Err(malformed(format!("its footer claims {len} bytes in an object of {size}")).into());
    }
    let meta_start = size - TAIL - len;
    let in_tail = (first - TAIL) as usize;
    let buf = if len <= first - TAIL {
        tail.slice(in_tail - len as usize..in_tail)
    } else {
        let before = fetch(get, meta_start..size - first).await?;
        [before.as_ref(), &tail[..in_tail]].concat().into()
    };
    let read = first.max(len + TAIL);
    let metadata = super::guarded("parquet", || Ok(ParquetMetaDataReader::decode_metadata(&buf)?))?;
    let groups = spans(&metadata, meta_start)?;
    Ok(Footer { metadata: Arc::new(metadata), groups, size, read })
}

/// Reads `range`, refusing a store that answers with another length (the object changed).
async fn fetch<F, Fut>(get: &F, range: Range<u64>) -> Result<Bytes, ReadError>
where
    F: Fn(Range<u64>) -> Fut,
    Fut: Future<Output = Result<Bytes, StoreError>>,
{
    super::ranged::fetch(get, range, "parquet").await
}

/// Where each row group lies, checked to be within the data (between the leading magic and
/// the footer at `data_end`), sorted by first byte.
fn spans(metadata: &ParquetMetaData, data_end: u64) -> Result<Vec<RowGroupSpan>, InputError> {
    let groups = metadata.row_groups();
    if groups.len() > MAX_ROW_GROUPS {
        return Err(malformed(format!("{} row groups, over the limit of {MAX_ROW_GROUPS}", groups.len())));
    }
    let mut out = Vec::with_capacity(groups.len());
    for (index, g) in groups.iter().enumerate() {
        let bad = |what: String| malformed(format!("row group {index}: {what}"));
        let (mut start, mut end) = (u64::MAX, 0u64);
        for (c, col) in g.columns().iter().enumerate() {
            let from = col.dictionary_page_offset().unwrap_or(col.data_page_offset());
            let len = col.compressed_size();
            let (Ok(from), Ok(len)) = (u64::try_from(from), u64::try_from(len)) else {
                return Err(bad(format!("column {c} has a negative offset or size")));
            };
            let to = from.checked_add(len).filter(|&to| from >= HEAD && to <= data_end);
            let Some(to) = to else {
                return Err(bad(format!("column {c} claims bytes {from}+{len}, outside the data (4..{data_end})")));
            };
            start = start.min(from);
            end = end.max(to);
        }
        if g.columns().is_empty() {
            return Err(bad("no column chunks".into()));
        }
        let (Ok(rows), Ok(decoded)) = (u64::try_from(g.num_rows()), u64::try_from(g.total_byte_size())) else {
            return Err(bad("a negative row count or size".into()));
        };
        out.push(RowGroupSpan { index, start, end, rows, decoded });
    }
    out.sort_by_key(|g| (g.start, g.index));
    Ok(out)
}

/// The splits of a Parquet object: consecutive row groups (by position in the object)
/// gathered while they fit in `split_size` bytes, a larger group alone. Each split starts
/// where its first group starts (the first at 0) and ends where the next split starts (the
/// last at the object's end), so the splits cover the object once.
pub fn plan(url: &str, footer: &Footer, split_size: u64) -> Vec<Split> {
    super::ranged::cut(url, footer.size, footer.groups.iter().map(|g| (g.start, g.end)), split_size)
}

/// What a map task read for a Parquet split: the footer and the bytes of its row groups.
#[derive(Debug)]
pub struct ParquetPart {
    pub(super) footer: Footer,
    /// The row groups the split owns, by index.
    pub(super) groups: Vec<usize>,
    /// Bytes `window.start..` of the object, covering those row groups.
    pub(super) window: Window,
    /// The file's row number of the split's first row.
    pub(super) first_row: u64,
}

impl ParquetPart {
    /// Bytes read from the store (footer and row groups).
    pub fn bytes_read(&self) -> u64 {
        self.footer.read + self.window.data.len() as u64
    }

    /// The row groups the split owns, by index.
    pub fn row_groups(&self) -> &[usize] {
        &self.groups
    }
}

/// Reads split `[start, end)` of a Parquet object of `size` bytes: its footer, then one
/// ranged read covering exactly the row groups that start in the split.
pub async fn read_split<F, Fut>(
    size: u64,
    start: u64,
    end: u64,
    limits: &InputLimits,
    get: &F,
) -> Result<ParquetPart, ReadError>
where
    F: Fn(Range<u64>) -> Fut,
    Fut: Future<Output = Result<Bytes, StoreError>>,
{
    let footer = read_footer(size, get).await?;
    let mine: Vec<RowGroupSpan> = footer.groups.iter().filter(|g| (start..end).contains(&g.start)).copied().collect();
    let Some(from) = mine.iter().map(|g| g.start).min() else {
        let window = Window { start: 0, data: Bytes::new(), size };
        return Ok(ParquetPart { footer, groups: Vec::new(), window, first_row: 0 });
    };
    let to = mine.iter().map(|g| g.end).max().unwrap_or(from);
    limits.check_read("the row groups of this split", to - from)?;
    let decoded = mine.iter().fold(0u64, |n, g| n.saturating_add(g.decoded));
    limits.check_read("the rows of this split's row groups", decoded)?;
    let mut groups: Vec<usize> = mine.iter().map(|g| g.index).collect();
    groups.sort_unstable();
    // Rows are numbered in footer order; the split's first row follows every earlier group's.
    let first_row = footer.groups.iter().filter(|g| g.index < groups[0]).fold(0u64, |n, g| n.saturating_add(g.rows));
    let data = fetch(get, from..to).await?;
    Ok(ParquetPart { footer, groups, window: Window { start: from, data, size }, first_row })
}

/// Some bytes of an object, served to the Parquet reader as if it were the whole object:
/// a read outside them is an error (the footer said a row group lies elsewhere), not a panic.
#[derive(Debug)]
pub(super) struct Window {
    start: u64,
    data: Bytes,
    size: u64,
}

impl Window {
    fn slice(&self, start: u64, len: Option<usize>) -> Result<Bytes, ParquetError> {
        let outside = || ParquetError::General(format!("read at byte {start} outside the row groups read"));
        let from = usize::try_from(start.checked_sub(self.start).ok_or_else(outside)?).map_err(|_| outside())?;
        let to = match len {
            Some(len) => from.checked_add(len).ok_or_else(outside)?,
            None => self.data.len(),
        };
        if from > to || to > self.data.len() {
            return Err(outside());
        }
        Ok(self.data.slice(from..to))
    }
}

impl Length for Window {
    fn len(&self) -> u64 {
        self.size
    }
}

impl ChunkReader for Window {
    type T = bytes::buf::Reader<Bytes>;

    fn get_read(&self, start: u64) -> Result<Self::T, ParquetError> {
        Ok(self.slice(start, None)?.reader())
    }

    fn get_bytes(&self, start: u64, length: usize) -> Result<Bytes, ParquetError> {
        self.slice(start, Some(length))
    }
}

/// Decodes the rows of a split read by [`read_split`], within `limits`.
pub(super) fn decode(part: ParquetPart, limits: &InputLimits) -> Result<super::Input, InputError> {
    use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
    let ParquetPart { footer, groups, window, first_row } = part;
    super::guarded("parquet", || {
        let metadata = ArrowReaderMetadata::try_new(footer.metadata.clone(), ArrowReaderOptions::default())?;
        let reader =
            ParquetRecordBatchReaderBuilder::new_with_metadata(window, metadata).with_row_groups(groups).build()?;
        super::render_rows(reader, first_row, limits)
    })
}

#[cfg(test)]
#[path = "parquet_split_tests.rs"]
mod tests;
