//! Arrow IPC files cut by record batch: planning reads only an object's footer (and its first
//! eight bytes, to tell a file from a stream) and makes one split per run of consecutive
//! record batches up to the split size; a map task reads the footer again, the file's
//! dictionaries, and then its own bytes (its batches), decoded with arrow's [`FileDecoder`].
//!
//! An IPC file is `ARROW1\0\0`, the schema message, dictionary and record-batch messages, a
//! footer (a flatbuffer listing each message's block: offset, metadata length, body length),
//! the footer's length and `ARROW1`. A split `[start, end)` owns the record batches whose
//! block starts in it, as a Parquet split owns row groups, so any cover of the object by
//! disjoint ranges reads every batch exactly once.
//!
//! - Dictionaries: every split reads all of the file's dictionary blocks (usually one run
//!   right after the schema, so one read) and decodes them first, as arrow's own `FileReader`
//!   does, so a dictionary-encoded column reads the same in every split.
//! - Row numbers: a row's offset is its row number in the file, as when the file is read
//!   whole. The footer does not count rows, so a split that does not start at the first batch
//!   reads the metadata of every batch before it (a few hundred bytes each, never their
//!   bodies unless batches are small enough for several to be read together) and counts.
//! - Kept whole: a stream (no footer), and a file whose footer lists its batches out of file
//!   order, are one split, read whole as before ([`crate::listing::split_inputs`] also keeps
//!   whole, without reading a footer, any object no larger than the split size).
//!
//! Everything the footer says is untrusted: its length is bounded ([`MAX_FOOTER_BYTES`]), its
//! blocks counted ([`MAX_BLOCKS`]), and every block must lie between the leading magic and
//! the footer, overlap no other and hold a message of bounded metadata
//! ([`MAX_METADATA_BYTES`]); anything else is one [`InputError::Malformed`] naming what was
//! wrong.

use std::collections::HashMap;
use std::future::Future;
use std::ops::Range;
use std::sync::Arc;

use arrow_buffer::Buffer;
use arrow_ipc::reader::{FileDecoder, read_footer_length};
use arrow_ipc::{Block, MessageHeader, MetadataVersion};
use arrow_schema::SchemaRef;
use bytes::Bytes;
use futures::StreamExt;

pub use super::ranged::ReadError;
use super::ranged::{coalesce, cut};
use super::{InputError, InputLimits};
use crate::StoreError;
use crate::split::Split;

/// The most bytes a footer may claim: 24 bytes per block, so a few kilobytes to a megabyte
/// or two; the coordinator holds a few at once while planning.
pub const MAX_FOOTER_BYTES: u64 = 16 << 20;

/// The most blocks (dictionaries and record batches together) one file may list.
pub const MAX_BLOCKS: usize = 1 << 16;

/// The most bytes one message's metadata may claim: real ones take tens of bytes per column.
pub const MAX_METADATA_BYTES: u64 = 4 << 20;

/// The tail read first: footers usually fit, so one read finds them.
const PREFETCH: u64 = 64 << 10;

/// The magic that starts (padded to 8 bytes) and ends an IPC file.
const MAGIC: &[u8] = b"ARROW1";

/// The leading magic and its padding.
const HEAD: u64 = 8;

/// The footer's length and the closing magic.
const TAIL: u64 = 10;

/// What starts a message's metadata since format 0.15 (older files start with its length).
const CONTINUATION: [u8; 4] = [0xff; 4];

/// Reads of dictionaries or batch metadata in flight at once.
const READS_AT_ONCE: usize = 8;

/// Ranges at most this far apart are read together (the bytes between are dropped).
const GAP: u64 = 64 << 10;

/// The longest read gathering several ranges.
const MAX_GATHERED: u64 = 4 << 20;

fn malformed(what: String) -> InputError {
    InputError::Malformed { format: "arrow", what }
}

async fn fetch<F, Fut>(get: &F, range: Range<u64>) -> Result<Bytes, ReadError>
where
    F: Fn(Range<u64>) -> Fut,
    Fut: Future<Output = Result<Bytes, StoreError>>,
{
    super::ranged::fetch(get, range, "arrow").await
}

/// One block of the file, checked to lie within the data.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockSpan {
    /// As the footer lists it.
    pub block: Block,
    /// Its first byte.
    pub start: u64,
    /// Its metadata's length (the body follows).
    pub metadata: u64,
    /// One past its last byte.
    pub end: u64,
}

/// An Arrow IPC file's footer, decoded and checked.
#[derive(Debug)]
pub struct Footer {
    /// The file's schema.
    pub schema: SchemaRef,
    /// The metadata version every message must have.
    pub version: MetadataVersion,
    /// The dictionary blocks, in footer order (the order they are decoded in).
    pub dictionaries: Vec<BlockSpan>,
    /// The record-batch blocks, in footer order: the order of the file's rows.
    pub batches: Vec<BlockSpan>,
    /// Whether the batches lie in the object in footer order (else the file is read whole).
    pub in_order: bool,
    /// The object's size.
    pub size: u64,
    /// Bytes read to get the footer.
    pub read: u64,
}

/// Reads and checks the footer of an Arrow IPC object of `size` bytes; `get` reads a byte
/// range of the object. `None` when the object does not start as an IPC file does (a stream,
/// which has no footer, or not Arrow at all: reading it whole will tell).
pub async fn read_footer<F, Fut>(size: u64, get: &F) -> Result<Option<Footer>, ReadError>
where
    F: Fn(Range<u64>) -> Fut,
    Fut: Future<Output = Result<Bytes, StoreError>>,
{
    if size < HEAD + TAIL {
        return Ok(None);
    }
    // A stream's last bytes can be anything, `ARROW1` too: its first ones tell. The first
    // read of the tail covers them in a small object.
    let head = if size > PREFETCH { fetch(get, 0..HEAD).await? } else { fetch(get, 0..size).await? };
    if !head.starts_with(MAGIC) {
        return Ok(None);
    }
    let footer = read_tail(size, get, (size <= PREFETCH).then_some(head)).await?;
    Ok(Some(Footer { read: footer.read + if size > PREFETCH { HEAD } else { 0 }, ..footer }))
}

/// [`read_footer`] from the object's tail alone, for an object known to start as an IPC
/// file; `tail` is the tail if already read.
async fn read_tail<F, Fut>(size: u64, get: &F, tail: Option<Bytes>) -> Result<Footer, ReadError>
where
    F: Fn(Range<u64>) -> Fut,
    Fut: Future<Output = Result<Bytes, StoreError>>,
{
    let first = size.min(PREFETCH);
    let tail = match tail {
        Some(tail) => tail,
        None => fetch(get, size.saturating_sub(first)..size).await?,
    };
    if size < HEAD + TAIL || !tail.ends_with(MAGIC) {
        return Err(malformed("it does not end as an Arrow IPC file does (a stream, or cut short?)".into()).into());
    }
    let mut last = [0u8; TAIL as usize];
    last.copy_from_slice(&tail[tail.len() - TAIL as usize..]);
    let len = read_footer_length(last).map_err(|e| malformed(format!("its footer length: {e}")))? as u64;
    if len > MAX_FOOTER_BYTES {
        return Err(malformed(format!("its footer claims {len} bytes, over the {MAX_FOOTER_BYTES}-byte limit")).into());
    }
    if len + HEAD + TAIL > size {
        return Err(malformed(format!("its footer claims {len} bytes in an object of {size}")).into());
    }
    let data_end = size - TAIL - len;
    let in_tail = (first - TAIL) as usize;
    let buf = if len <= first - TAIL {
        tail.slice(in_tail - len as usize..in_tail)
    } else {
        let before = fetch(get, data_end..size - first).await?;
        [before.as_ref(), &tail[..in_tail]].concat().into()
    };
    let read = first.max(len + TAIL);
    Ok(super::guarded("arrow", || parse(&buf, data_end, size, read))?)
}

/// Decodes footer bytes with arrow's own flatbuffer code and checks every block against
/// `data_end`, where the footer starts.
fn parse(buf: &[u8], data_end: u64, size: u64, read: u64) -> Result<Footer, InputError> {
    let footer =
        arrow_ipc::root_as_footer(buf).map_err(|e| malformed(format!("its footer is not a valid flatbuffer: {e}")))?;
    let ipc_schema = footer.schema().ok_or_else(|| malformed("its footer has no schema".into()))?;
    if !ipc_schema.endianness().equals_to_target_endianness() {
        return Err(malformed("its byte order is not this machine's".into()));
    }
    let schema = Arc::new(arrow_ipc::convert::try_fb_to_schema(ipc_schema)?);
    let batches = footer.recordBatches().ok_or_else(|| malformed("its footer lists no record batches".into()))?;
    let dictionaries = footer.dictionaries();
    let count = batches.len() + dictionaries.map_or(0, |d| d.len());
    if count > MAX_BLOCKS {
        return Err(malformed(format!("its footer lists {count} blocks, over the limit of {MAX_BLOCKS}")));
    }
    let batches = spans("record batch", batches.iter(), data_end)?;
    let dictionaries = spans("dictionary", dictionaries.into_iter().flat_map(|d| d.iter()), data_end)?;
    let mut all: Vec<(u64, u64)> = batches.iter().chain(&dictionaries).map(|b| (b.start, b.end)).collect();
    all.sort_unstable();
    if let Some(w) = all.windows(2).find(|w| w[0].1 > w[1].0) {
        return Err(malformed(format!("its blocks at bytes {} and {} overlap", w[0].0, w[1].0)));
    }
    let in_order = batches.windows(2).all(|w| w[0].start < w[1].start);
    Ok(Footer { schema, version: footer.version(), dictionaries, batches, in_order, size, read })
}

/// The blocks, each checked to hold a message and to lie between the leading magic and
/// `data_end`; `what` names them in errors.
fn spans<'a>(what: &str, blocks: impl Iterator<Item = &'a Block>, data_end: u64) -> Result<Vec<BlockSpan>, InputError> {
    blocks
        .enumerate()
        .map(|(i, b)| {
            let bad = |problem: String| malformed(format!("{what} {i}: {problem}"));
            let (Ok(start), Ok(metadata), Ok(body)) =
                (u64::try_from(b.offset()), u64::try_from(b.metaDataLength()), u64::try_from(b.bodyLength()))
            else {
                return Err(bad("a negative offset or length".into()));
            };
            // The shortest metadata holds a length and a little flatbuffer: 8 bytes at least.
            if !(8..=MAX_METADATA_BYTES).contains(&metadata) {
                return Err(bad(format!("metadata of {metadata} bytes (8 to {MAX_METADATA_BYTES} allowed)")));
            }
            let end = start.checked_add(metadata).and_then(|e| e.checked_add(body));
            match end.filter(|&end| start >= HEAD && end <= data_end) {
                Some(end) => Ok(BlockSpan { block: *b, start, metadata, end }),
                None => Err(bad(format!(
                    "claims bytes {start}+{}, outside the data ({HEAD}..{data_end})",
                    metadata.saturating_add(body)
                ))),
            }
        })
        .collect()
}

/// The splits of an Arrow IPC file: consecutive record batches gathered while they fit in
/// `split_size` bytes, a larger batch alone, as Parquet's row groups are; one split when the
/// footer lists the batches out of file order.
pub fn plan(url: &str, footer: &Footer, split_size: u64) -> Vec<Split> {
    let batches = footer.batches.iter().filter(|_| footer.in_order).map(|b| (b.start, b.end));
    cut(url, footer.size, batches, split_size)
}

/// Whether split `[start, end)` of an object of `object_size` bytes is part of it (read by
/// batches, [`read_split`]) rather than all of it (read whole, as a stream or a small file).
pub fn reads_in_parts(start: u64, end: u64, object_size: u64) -> bool {
    start > 0 || end < object_size
}

/// What a map task read for an Arrow IPC split: the footer, the dictionaries, and the bytes
/// of the record batches it owns.
#[derive(Debug)]
pub struct ArrowPart {
    schema: SchemaRef,
    version: MetadataVersion,
    /// Every dictionary, in footer order, with its bytes.
    dictionaries: Vec<(Block, Bytes)>,
    /// The batches the split owns, in file order, with their bytes.
    batches: Vec<(Block, Bytes)>,
    /// Their indices in the footer.
    owned: Range<usize>,
    /// The file's row number of the split's first row.
    first_row: u64,
    /// Bytes read from the store.
    read: u64,
}

impl ArrowPart {
    /// Bytes read from the store (footer, dictionaries, earlier batches' metadata, batches).
    pub fn bytes_read(&self) -> u64 {
        self.read
    }

    /// The record batches the split owns, by index in the footer.
    pub fn batches(&self) -> Range<usize> {
        self.owned.clone()
    }

    /// The file's row number of the split's first row.
    pub fn first_row(&self) -> u64 {
        self.first_row
    }
}

/// Reads split `[start, end)` of an Arrow IPC file of `size` bytes: its footer, its
/// dictionaries and the record batches that start in the split (one ranged read of the
/// split's bytes), through `get`; and, to number the rows, the metadata of every batch
/// before them through `peek` (read once and dropped: a worker does not keep these in its
/// cache).
pub async fn read_split<F, Fut, P, PFut>(
    size: u64,
    start: u64,
    end: u64,
    limits: &InputLimits,
    get: &F,
    peek: &P,
) -> Result<ArrowPart, ReadError>
where
    F: Fn(Range<u64>) -> Fut,
    Fut: Future<Output = Result<Bytes, StoreError>>,
    P: Fn(Range<u64>) -> PFut,
    PFut: Future<Output = Result<Bytes, StoreError>>,
{
    let footer = read_tail(size, get, None).await?;
    let mine: Vec<usize> =
        (0..footer.batches.len()).filter(|&i| (start..end).contains(&footer.batches[i].start)).collect();
    let (Some(&first), Some(&last)) = (mine.first(), mine.last()) else {
        let (schema, version, read) = (footer.schema, footer.version, footer.read);
        return Ok(ArrowPart {
            schema,
            version,
            dictionaries: vec![],
            batches: vec![],
            owned: 0..0,
            first_row: 0,
            read,
        });
    };
    if !footer.in_order && mine.len() < footer.batches.len() {
        return Err(malformed(
            "its footer lists the record batches out of file order: it can only be read whole".into(),
        )
        .into());
    }
    // In order, the batches that start in the split are consecutive in the footer too.
    let spans = &footer.batches[first..=last];
    // One read of the split's own bytes: a planned split holds its batches and nothing more
    // but the schema (the first) or the footer (the last). So what the cache keeps is the
    // split's range, which the coordinator sends back to this worker; a batch running on
    // past the split's end (an unplanned cut) is read to its end.
    let from = start;
    let to = spans.iter().map(|b| b.end).fold(end.min(size), u64::max);
    limits.check_read("the record batches of this split", to - from)?;
    let window = fetch(get, from..to).await?;
    let slice = |b: &BlockSpan| window.slice((b.start - from) as usize..(b.end - from) as usize);
    let batches: Vec<(Block, Bytes)> = spans.iter().map(|b| (b.block, slice(b))).collect();
    // Dictionaries among the batches come with the window; the others are read apart.
    let inside = |b: &BlockSpan| b.start >= from && b.end <= to;
    let apart: Vec<Range<u64>> = footer.dictionaries.iter().filter(|d| !inside(d)).map(|d| d.start..d.end).collect();
    let (mut fetched, dict_read) = read_blocks(apart, limits, get).await?;
    let mut dictionaries = Vec::with_capacity(footer.dictionaries.len());
    for d in &footer.dictionaries {
        let data = if inside(d) { Some(slice(d)) } else { fetched.remove(&d.start) };
        let data = data.ok_or_else(|| malformed(format!("the dictionary at byte {} was not read", d.start)))?;
        dictionaries.push((d.block, data));
    }
    let (first_row, header_read) = rows_before(&footer.batches[..first], peek).await?;
    Ok(ArrowPart {
        schema: footer.schema,
        version: footer.version,
        dictionaries,
        batches,
        owned: first..last + 1,
        first_row,
        read: footer.read + (to - from) + dict_read + header_read,
    })
}

/// Reads `ranges` (disjoint; close ones gathered into one read), all held at once within
/// `limits`; returns their bytes by first byte, and the bytes read.
async fn read_blocks<F, Fut>(
    mut ranges: Vec<Range<u64>>,
    limits: &InputLimits,
    get: &F,
) -> Result<(HashMap<u64, Bytes>, u64), ReadError>
where
    F: Fn(Range<u64>) -> Fut,
    Fut: Future<Output = Result<Bytes, StoreError>>,
{
    ranges.sort_by_key(|r| r.start);
    let reads = coalesce(&ranges, GAP, MAX_GATHERED);
    let total = reads.iter().fold(0u64, |n, (r, _)| n.saturating_add(r.end - r.start));
    limits.check_read("the dictionaries of this file", total)?;
    let mut fetched = futures::stream::iter(reads)
        .map(|(r, served)| async move { Ok::<_, ReadError>((fetch(get, r.clone()).await?, r.start, served)) })
        .buffered(READS_AT_ONCE);
    let mut out = HashMap::with_capacity(ranges.len());
    while let Some(read) = fetched.next().await {
        let (data, at, served) = read?;
        for s in served {
            out.insert(s.start, data.slice((s.start - at) as usize..(s.end - at) as usize));
        }
    }
    Ok((out, total))
}

/// The rows of `batches` (the ones before a split), counted from their metadata alone, read
/// through `peek` a few reads at a time and dropped once counted; and the bytes read.
async fn rows_before<P, PFut>(batches: &[BlockSpan], peek: &P) -> Result<(u64, u64), ReadError>
where
    P: Fn(Range<u64>) -> PFut,
    PFut: Future<Output = Result<Bytes, StoreError>>,
{
    let mut ranges: Vec<Range<u64>> = batches.iter().map(|b| b.start..b.start + b.metadata).collect();
    ranges.sort_by_key(|r| r.start);
    let mut fetched = futures::stream::iter(coalesce(&ranges, GAP, MAX_GATHERED))
        .map(|(r, served)| async move { Ok::<_, ReadError>((fetch(peek, r.clone()).await?, r.start, served)) })
        .buffered(READS_AT_ONCE);
    let (mut rows, mut read) = (0u64, 0u64);
    while let Some(got) = fetched.next().await {
        let (data, at, served) = got?;
        read += data.len() as u64;
        for s in served {
            let n = rows_in_metadata(&data[(s.start - at) as usize..(s.end - at) as usize])
                .map_err(|what| malformed(format!("the record batch at byte {}: {what}", s.start)))?;
            rows = rows.saturating_add(n);
        }
    }
    Ok((rows, read))
}

/// The row count a record batch's metadata declares (framed as arrow's reader expects: an
/// optional continuation marker, a length, the flatbuffer message).
fn rows_in_metadata(buf: &[u8]) -> Result<u64, String> {
    let message = if buf.starts_with(&CONTINUATION) { buf.get(8..) } else { buf.get(4..) };
    let message = arrow_ipc::root_as_message(message.unwrap_or_default())
        .map_err(|e| format!("its metadata is not a valid flatbuffer: {e}"))?;
    match message.header_type() {
        MessageHeader::RecordBatch => {
            let batch = message.header_as_record_batch().ok_or("its metadata has no record batch header")?;
            u64::try_from(batch.length()).map_err(|_| format!("a negative row count {}", batch.length()))
        }
        // Arrow's decoder reads a message without a header as no batch: no rows.
        MessageHeader::NONE => Ok(0),
        other => Err(format!("it holds a {other:?} message, not a record batch")),
    }
}

/// Decodes the rows of a split read by [`read_split`], within `limits`.
pub(super) fn decode(part: ArrowPart, limits: &InputLimits) -> Result<super::Input, InputError> {
    let ArrowPart { schema, version, dictionaries, batches, first_row, .. } = part;
    super::guarded("arrow", || {
        let mut decoder = FileDecoder::new(schema, version);
        for (block, data) in dictionaries {
            decoder.read_dictionary(&block, &Buffer::from(data))?;
        }
        let rows = batches
            .into_iter()
            .filter_map(|(block, data)| decoder.read_record_batch(&block, &Buffer::from(data)).transpose());
        super::render_rows(rows, first_row, limits)
    })
}

#[cfg(test)]
#[path = "arrow_split_tests.rs"]
mod tests;
