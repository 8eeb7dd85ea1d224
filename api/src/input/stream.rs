//! Compressed text and fixed-length objects read as a stream: a map task decompresses the
//! object as it arrives and cuts the output into [`Blocks`] of about a given size at record
//! boundaries (text after a line's `\n`, fixed-length records at a multiple of their length),
//! each an [`Input`] mapped like a split's bytes. Neither the compressed object nor its
//! decompressed form is ever whole in memory: a task holds a block (plus one line at most)
//! and the decoders' windows.
//!
//! Every block's records carry their offsets in the decompressed stream, so the records, and
//! their offsets, are exactly those of decompressing the object whole ([`super::Input::decode`]).
//!
//! Decompression is still bounded, against a small object that expands without end (a
//! "decompression bomb"): by [`InputLimits::max_streamed`] bytes in all, and, for text, by the
//! longest line ([`InputLimits::max_line_bytes`]), which stops a bomb without newlines at once.
//!
//! ```
//! use std::io::Write;
//! use quern_api::input::{InputLimits, stream::{BlockCut, Blocks}};
//! use quern_api::split::Compression;
//!
//! let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
//! gz.write_all(b"one\ntwo\nthree\n").unwrap();
//! let gz = gz.finish().unwrap();
//! let cut = BlockCut::Lines { max_line: InputLimits::DEFAULT.max_line_bytes };
//! let blocks = Blocks::new(Compression::Gzip, &gz[..], cut, 8, 1 << 20);
//! let lens: Vec<u64> = blocks.map(|b| b.unwrap().len_bytes()).collect();
//! assert_eq!(lens, [8, 6]); // "one\ntwo\n", "three\n"
//! ```

use std::io::{BufRead, BufReader, Read};
use std::panic::AssertUnwindSafe;

use bytes::Bytes;

use crate::format::ObjectFormat;
use crate::split::Compression;

use super::decompress::longest_line_check;
use super::{Input, InputError, InputLimits};

/// How decompressed bytes are cut into blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockCut {
    /// Text: after the last `\n` of a block; no line may be longer than `max_line` bytes.
    Lines {
        /// The longest line allowed.
        max_line: usize,
    },
    /// Fixed-length records of this many bytes (at least 1).
    Records(usize),
}

/// How a map task streams an object in `format`, if it does: compressed text and fixed-length
/// objects are streamed (with the default [`InputLimits`]); a compressed `whole` object is one
/// record, so it is decompressed whole.
pub fn streamed(format: ObjectFormat) -> Option<(Compression, BlockCut)> {
    match format {
        ObjectFormat::Text(Some(c)) => Some((c, BlockCut::Lines { max_line: InputLimits::DEFAULT.max_line_bytes })),
        ObjectFormat::Fixed(n, Some(c)) => Some((c, BlockCut::Records(n as usize))),
        _ => None,
    }
}

/// How much is read from the decoder at a time: large enough to keep it efficient, small
/// enough that a limit is noticed soon after it is passed.
const READ: usize = 64 * 1024;

/// The most a block's buffer reserves before it is filled.
const RESERVE_AT_MOST: usize = 64 << 20;

/// The blocks of one compressed object, in order; an error ends them.
pub struct Blocks<R: Read> {
    decoder: Decoder<R>,
    codec: Compression,
    cut: BlockCut,
    /// About how many bytes one block holds.
    block: usize,
    /// Most bytes the object may decompress to.
    max_total: u64,
    /// Decompressed bytes not yet handed out.
    pending: Vec<u8>,
    /// Offset in the decompressed stream of `pending[0]`.
    offset: u64,
    /// Length of the (text) line still open at the end of `pending`.
    open_line: usize,
    /// Whether a block (even an empty one) was handed out.
    emitted: bool,
    /// Whether the stream is done (ended, or failed).
    done: bool,
}

impl<R: Read> Blocks<R> {
    /// The blocks of the compressed stream `source`, of about `block` bytes each (a text block
    /// runs on to finish its last line), decompressing to at most `max_total` bytes in all.
    /// An object that decompresses to nothing gives one empty block.
    pub fn new(codec: Compression, source: R, cut: BlockCut, block: usize, max_total: u64) -> Self {
        Blocks {
            decoder: Decoder::new(codec, source),
            codec,
            cut,
            block: block.max(1),
            max_total,
            pending: Vec::with_capacity(block.clamp(1, RESERVE_AT_MOST) + READ),
            offset: 0,
            open_line: 0,
            emitted: false,
            done: false,
        }
    }

    /// The compressed stream, given back (None after a zstd error, which loses it).
    pub fn into_source(self) -> Option<R> {
        match self.decoder {
            Decoder::Gzip(d) => Some(d.into_inner()),
            Decoder::Zstd(ZstdFrames::Between(r)) => Some(r.into_inner()),
            Decoder::Zstd(ZstdFrames::In(frame)) => Some(frame.into_inner().into_inner()),
            Decoder::Zstd(ZstdFrames::Failed) => None,
        }
    }

    /// Reads more decompressed bytes into `pending`, no more than the block still lacks (while
    /// it lacks any); false at the end of the stream.
    fn fill(&mut self) -> Result<bool, InputError> {
        let len = self.pending.len();
        let want = if len < self.block { (self.block - len).min(READ) } else { READ };
        self.pending.resize(len + want, 0);
        let n = loop {
            // A decoder that panics on broken data is broken data, not a failed worker.
            let read = std::panic::catch_unwind(AssertUnwindSafe(|| self.decoder.read(&mut self.pending[len..])));
            match read {
                Ok(Ok(n)) => break n,
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Ok(Err(e)) => {
                    self.pending.truncate(len);
                    return Err(match self.codec {
                        Compression::Gzip => InputError::Gzip(e.to_string()),
                        Compression::Zstd => InputError::Zstd(e.to_string()),
                    });
                }
                Err(panic) => {
                    self.pending.truncate(len);
                    let format = match self.codec {
                        Compression::Gzip => "gzip",
                        Compression::Zstd => "zstd",
                    };
                    let message = crate::panic_message(panic.as_ref()).unwrap_or_default();
                    return Err(InputError::DecoderPanicked { format, message });
                }
            }
        };
        self.pending.truncate(len + n);
        let total = self.offset.saturating_add(self.pending.len() as u64);
        if total > self.max_total {
            let limit = usize::try_from(self.max_total).unwrap_or(usize::MAX);
            return Err(InputError::DecompressedTooLarge { limit });
        }
        if let BlockCut::Lines { max_line } = self.cut {
            self.open_line = longest_line_check(&self.pending[len..], self.open_line, max_line)?;
        }
        Ok(n > 0)
    }

    /// Where the next block ends in `pending`, which holds at least a block: after the last
    /// whole record within the block, or, when a record is longer than the block, after that
    /// one (None: it is not whole yet).
    fn cut_point(&self) -> Option<usize> {
        let block = self.block.min(self.pending.len());
        match self.cut {
            BlockCut::Lines { .. } => {
                // The last newline is `open_line` bytes before the end: no scan to find it.
                let last = self.pending.len() - self.open_line.min(self.pending.len());
                if last == 0 {
                    None
                } else if last <= block {
                    Some(last)
                } else if let Some(i) = self.pending[..block].iter().rposition(|&b| b == b'\n') {
                    Some(i + 1)
                } else {
                    self.pending[block..last].iter().position(|&b| b == b'\n').map(|i| block + i + 1)
                }
            }
            BlockCut::Records(len) => {
                let len = len.max(1);
                let end = (block - block % len).max(len);
                (end <= self.pending.len()).then_some(end)
            }
        }
    }

    /// Hands out `pending[..end]` as the next block.
    fn take(&mut self, end: usize) -> Result<Input, InputError> {
        // Room for a whole block up front: a block grown by doubling could hold twice its size.
        let mut rest = Vec::with_capacity(self.block.min(RESERVE_AT_MOST) + READ);
        rest.extend_from_slice(&self.pending[end..]);
        let mut data = std::mem::replace(&mut self.pending, rest);
        data.truncate(end);
        let start = self.offset;
        self.offset = self.offset.saturating_add(end as u64);
        self.emitted = true;
        let data = Bytes::from(data);
        Ok(match self.cut {
            BlockCut::Lines { .. } => Input::Text { owned: 0..data.len(), data, start },
            BlockCut::Records(len) => Input::Fixed { data, len, base: start },
        })
    }

    fn next_block(&mut self) -> Result<Option<Input>, InputError> {
        loop {
            if self.pending.len() >= self.block
                && let Some(end) = self.cut_point()
            {
                return self.take(end).map(Some);
            }
            if !self.fill()? {
                break;
            }
        }
        // The end of the stream: what is left is the last block.
        if let BlockCut::Records(len) = self.cut
            && !self.pending.len().is_multiple_of(len)
        {
            let total = self.offset.saturating_add(self.pending.len() as u64);
            let record = u32::try_from(len).unwrap_or(u32::MAX);
            return Err(InputError::PartialRecord { len: usize::try_from(total).unwrap_or(usize::MAX), record });
        }
        if self.pending.is_empty() && self.emitted {
            return Ok(None);
        }
        let end = self.pending.len();
        self.take(end).map(Some)
    }
}

impl<R: Read> Iterator for Blocks<R> {
    type Item = Result<Input, InputError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let next = self.next_block();
        if !matches!(next, Ok(Some(_))) {
            self.done = true;
            // What was pending is never handed out now.
            self.pending = Vec::new();
        }
        next.transpose()
    }
}

/// A decompressing reader: several concatenated gzip members or zstd frames make one stream.
pub enum Decoder<R: Read> {
    /// Gzip members.
    Gzip(Box<flate2::read::MultiGzDecoder<R>>),
    /// Zstd frames, one decoder per frame.
    Zstd(ZstdFrames<R>),
}

impl<R: Read> Decoder<R> {
    /// Decompresses `source`.
    pub fn new(codec: Compression, source: R) -> Self {
        match codec {
            Compression::Gzip => Decoder::Gzip(Box::new(flate2::read::MultiGzDecoder::new(source))),
            Compression::Zstd => Decoder::Zstd(ZstdFrames::Between(BufReader::with_capacity(READ, source))),
        }
    }
}

impl<R: Read> Read for Decoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Decoder::Gzip(d) => d.read(buf),
            Decoder::Zstd(d) => d.read(buf),
        }
    }
}

type ZstdFrame<R> = ruzstd::decoding::StreamingDecoder<BufReader<R>, ruzstd::decoding::FrameDecoder>;

/// Zstd frames back to back: a frame's decoder reads exactly its frame, so the next frame
/// starts where it stops.
pub enum ZstdFrames<R: Read> {
    /// Before a frame (or at the end).
    Between(BufReader<R>),
    /// Inside one.
    In(Box<ZstdFrame<R>>),
    /// After an error.
    Failed,
}

impl<R: Read> Read for ZstdFrames<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            match std::mem::replace(self, ZstdFrames::Failed) {
                ZstdFrames::Failed => return Err(std::io::Error::other("the stream already failed")),
                ZstdFrames::Between(mut source) => {
                    if source.fill_buf()?.is_empty() {
                        *self = ZstdFrames::Between(source);
                        return Ok(0);
                    }
                    // Each frame's header is consumed by the decoder, so every turn makes progress.
                    let frame = ruzstd::decoding::StreamingDecoder::new(source).map_err(std::io::Error::other)?;
                    *self = ZstdFrames::In(Box::new(frame));
                }
                ZstdFrames::In(mut frame) => {
                    let n = frame.read(buf)?;
                    if n > 0 {
                        *self = ZstdFrames::In(frame);
                        return Ok(n);
                    }
                    *self = ZstdFrames::Between(frame.into_inner());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::Counters;
    use crate::input::decompress::{Bounds, decompress};

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(data).unwrap();
        gz.finish().unwrap()
    }

    fn zstd(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        ruzstd::encoding::compress(data, &mut out, ruzstd::encoding::CompressionLevel::Fastest);
        out
    }

    /// Records as (offset, bytes).
    type Recs = Vec<(u64, Vec<u8>)>;

    /// Every record of `input`.
    fn records(input: &Input) -> Recs {
        let mut out = Vec::new();
        for chunk in input.chunks(3) {
            input.with_records(chunk, "x", "file:///x", &mut Counters::new(), |recs| {
                out.extend(recs.map(|r| (r.offset, r.bytes.to_vec())));
            });
        }
        out
    }

    /// The records of the blocks of `data`, and how many blocks there were.
    fn streamed(c: Compression, data: &[u8], cut: BlockCut, block: usize) -> Result<(Recs, usize), InputError> {
        let mut all = Vec::new();
        let mut n = 0;
        for b in Blocks::new(c, data, cut, block, u64::MAX) {
            all.extend(records(&b?));
            n += 1;
        }
        Ok((all, n))
    }

    /// Text of numbered lines of varying length, some with `\r\n`, some not UTF-8.
    fn text(lines: usize) -> Vec<u8> {
        let mut t = Vec::new();
        for i in 0..lines {
            t.extend_from_slice(format!("line {i} {}", "x".repeat(i % 37)).as_bytes());
            if i % 11 == 0 {
                t.push(0xff);
            }
            t.extend_from_slice(if i % 5 == 0 { b"\r\n" } else { b"\n" });
        }
        t.extend_from_slice(b"no newline at the end");
        t
    }

    #[test]
    fn multi_member_gzip_and_multi_frame_zstd_in_tiny_blocks_give_the_records_of_decompressing_whole() {
        let parts = [text(700), text(300), b"\n\n".to_vec(), text(50)];
        let whole_text: Vec<u8> = parts.concat();
        let gz: Vec<u8> = parts.iter().flat_map(|p| gzip(p)).collect();
        let zst: Vec<u8> = parts.iter().flat_map(|p| zstd(p)).collect();
        let bounds = Bounds { max_bytes: usize::MAX, max_line: Some(1000) };
        for (c, data) in [(Compression::Gzip, &gz), (Compression::Zstd, &zst)] {
            let flat = decompress(c, data, bounds).unwrap();
            assert_eq!(flat, whole_text);
            let whole =
                Input::decode(ObjectFormat::Text(Some(c)), Bytes::from(data.clone()), 0, data.len() as u64).unwrap();
            let expected = records(&whole);
            for block in [1, 7, 100, 4096, 1 << 20] {
                let (got, n) = streamed(c, data, BlockCut::Lines { max_line: 1000 }, block).unwrap();
                assert_eq!(got, expected, "{c:?}, blocks of {block}");
                assert!(block >= 4096 || n > 10, "{n} blocks of {block}");
            }
            // Fixed-length records: cut the text at a multiple of 8 bytes.
            let even = &whole_text[..whole_text.len() / 8 * 8];
            let packed = match c {
                Compression::Gzip => [gzip(&even[..1000]), gzip(&even[1000..])].concat(),
                Compression::Zstd => [zstd(&even[..1000]), zstd(&even[1000..])].concat(),
            };
            let whole = Input::decode(ObjectFormat::Fixed(8, Some(c)), Bytes::from(packed.clone()), 0, 0).unwrap();
            for block in [1, 13, 1 << 20] {
                let (got, _) = streamed(c, &packed, BlockCut::Records(8), block).unwrap();
                assert_eq!(got, records(&whole), "{c:?}, fixed, blocks of {block}");
            }
        }
    }

    #[test]
    fn the_bomb_guard_grows_with_the_object_between_a_floor_and_a_ceiling() {
        let limits = crate::input::InputLimits::DEFAULT;
        assert_eq!(limits.max_streamed(0), 1 << 30);
        assert_eq!(limits.max_streamed(1 << 20), 1 << 30);
        assert_eq!(limits.max_streamed(512 << 20), 512 << 30);
        assert_eq!(limits.max_streamed(5 << 30), 1 << 40);
        assert_eq!(limits.max_streamed(u64::MAX), crate::input::MAX_STREAMED_BYTES);
    }

    #[test]
    fn an_empty_object_is_one_empty_block() {
        let blocks: Vec<_> = Blocks::new(Compression::Gzip, &gzip(b"")[..], BlockCut::Records(4), 10, 100).collect();
        assert_eq!(blocks.len(), 1);
        assert_eq!(blocks[0].as_ref().unwrap().len_bytes(), 0);
    }

    #[test]
    fn a_long_line_a_bomb_a_partial_record_and_a_corrupt_stream_fail_cleanly() {
        // A line of 2000 bytes against a limit of 1000, however small the blocks.
        let long = gzip(&[b"short\n".to_vec(), vec![b'x'; 2000], b"\n".to_vec()].concat());
        for block in [1, 1 << 20] {
            let e = streamed(Compression::Gzip, &long, BlockCut::Lines { max_line: 1000 }, block).unwrap_err();
            assert!(matches!(e, InputError::LineTooLong { limit: 1000 }), "{e}");
        }
        // A line longer than the block but within the limit is fine.
        let (got, _) = streamed(Compression::Gzip, &long, BlockCut::Lines { max_line: 5000 }, 16).unwrap();
        assert_eq!(got.len(), 2);
        // 64 MiB of zeros: stopped at the total bound, long before the end.
        let bomb = gzip(&vec![0u8; 64 << 20]);
        let mut blocks = Blocks::new(Compression::Gzip, &bomb[..], BlockCut::Records(1), 1 << 16, 1 << 20);
        let e = blocks.find_map(Result::err).unwrap();
        assert!(matches!(e, InputError::DecompressedTooLarge { limit } if limit == 1 << 20), "{e}");
        assert!(blocks.next().is_none(), "an error ends the blocks");
        let e = streamed(Compression::Gzip, &gzip(b"abcdefg"), BlockCut::Records(4), 2).unwrap_err();
        assert!(matches!(e, InputError::PartialRecord { len: 7, record: 4 }), "{e}");
        // Corrupt: bytes flipped in the middle, the end cut off, or not compressed at all.
        let good = gzip(&text(2000));
        let mut flipped = good.clone();
        let mid = flipped.len() / 2;
        flipped[mid..mid + 16].iter_mut().for_each(|b| *b ^= 0x5a);
        let cut = &good[..good.len() - 9];
        let lines = BlockCut::Lines { max_line: 1000 };
        let zst = zstd(&text(2000));
        let zst_cut = &zst[..zst.len() / 2];
        // Flipped bytes may still inflate to something (checksums catch it at the member's
        // end), so any error will do; the others are the decoder's.
        assert!(streamed(Compression::Gzip, &flipped, lines, 100).is_err());
        for (c, data) in [
            (Compression::Gzip, cut),
            (Compression::Gzip, b"not gzip"),
            (Compression::Zstd, zst_cut),
            (Compression::Zstd, b"not zstd"),
        ] {
            let e = streamed(c, data, lines, 100).unwrap_err();
            assert!(matches!(e, InputError::Gzip(_) | InputError::Zstd(_)), "{c:?}: {e}");
        }
    }
}
