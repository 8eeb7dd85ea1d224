//! Compressed inputs (`.gz`, `.zst`) decompressed whole: an object read as one record
//! (`whole`), and the windows a total-order submission samples. Map tasks stream compressed
//! text and fixed-length objects instead (see [`super::stream`]).
//!
//! Decompression is bounded: a small object may expand enormously (a "decompression bomb"),
//! so output stops with an error at [`super::InputLimits::max_decompressed_bytes`],
//! and for text, as soon as one line runs past
//! [`super::InputLimits::max_line_bytes`], long before the byte limit when the bomb
//! has no newline.

use std::io::Read;

use crate::split::Compression;

use super::InputError;
use super::stream::Decoder;

/// How far decompression may go.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    /// Most bytes out.
    pub max_bytes: usize,
    /// For text: the longest line (bytes between newlines) allowed.
    pub max_line: Option<usize>,
}

/// Read size: large enough to keep the decoders efficient, small enough that a limit is
/// noticed soon after it is passed.
const CHUNK: usize = 64 * 1024;

/// Decompresses a whole object (several concatenated gzip members or zstd frames allowed)
/// within `bounds`; the error says what was wrong with the data.
pub fn decompress(c: Compression, data: &[u8], bounds: Bounds) -> Result<Vec<u8>, InputError> {
    let mut sink = Sink { out: Vec::new(), line: 0, bounds, buf: vec![0; CHUNK] };
    let codec = |e: std::io::Error| match c {
        Compression::Gzip => InputError::Gzip(e.to_string()),
        Compression::Zstd => InputError::Zstd(e.to_string()),
    };
    sink.drain(&mut Decoder::new(c, data), codec)?;
    Ok(sink.out)
}

/// Where decompressed bytes go, checking the bounds as they arrive.
struct Sink {
    out: Vec<u8>,
    /// Length of the (text) line still open at the end of `out`.
    line: usize,
    bounds: Bounds,
    buf: Vec<u8>,
}

impl Sink {
    fn drain(&mut self, reader: &mut dyn Read, codec: impl Fn(std::io::Error) -> InputError) -> Result<(), InputError> {
        loop {
            let n = match reader.read(&mut self.buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(codec(e)),
            };
            let chunk = &self.buf[..n];
            if self.out.len().saturating_add(n) > self.bounds.max_bytes {
                return Err(InputError::DecompressedTooLarge { limit: self.bounds.max_bytes });
            }
            if let Some(max_line) = self.bounds.max_line {
                self.line = longest_line_check(chunk, self.line, max_line)?;
            }
            self.out.extend_from_slice(chunk);
        }
    }
}

/// Given that the last line before `chunk` is `open` bytes long so far, checks every line
/// `chunk` finishes or extends against `max_line`; returns the length of the line left open.
pub fn longest_line_check(chunk: &[u8], open: usize, max_line: usize) -> Result<usize, InputError> {
    let mut open = open;
    let mut rest = chunk;
    loop {
        match rest.iter().position(|&b| b == b'\n') {
            Some(i) => {
                if open.saturating_add(i) > max_line {
                    return Err(InputError::LineTooLong { limit: max_line });
                }
                open = 0;
                rest = &rest[i + 1..];
            }
            None => {
                open = open.saturating_add(rest.len());
                if open > max_line {
                    return Err(InputError::LineTooLong { limit: max_line });
                }
                return Ok(open);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const ROOMY: Bounds = Bounds { max_bytes: usize::MAX, max_line: None };

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(data).unwrap();
        gz.finish().unwrap()
    }

    #[test]
    fn both_formats_round_trip_and_garbage_is_an_error() {
        let text = b"one line\nanother line\n".repeat(100);
        assert_eq!(decompress(Compression::Gzip, &gzip(&text), ROOMY).unwrap(), text);
        let mut zst = Vec::new();
        ruzstd::encoding::compress(&text[..], &mut zst, ruzstd::encoding::CompressionLevel::Fastest);
        let mut two = zst.clone();
        two.extend_from_slice(&zst);
        assert_eq!(decompress(Compression::Zstd, &two, ROOMY).unwrap(), [text.clone(), text].concat());
        assert!(decompress(Compression::Gzip, b"not gzip", ROOMY).is_err());
        assert!(decompress(Compression::Zstd, b"not zstd", ROOMY).is_err());
    }

    #[test]
    fn a_bomb_stops_at_the_byte_limit_or_at_the_first_over_long_line() {
        // 64 MiB of zeros, no newline: about 64 KiB of gzip.
        let bomb = gzip(&vec![0u8; 64 << 20]);
        assert!(bomb.len() < 1 << 20);
        let e = decompress(Compression::Gzip, &bomb, Bounds { max_bytes: 1 << 20, max_line: None }).unwrap_err();
        assert!(matches!(e, InputError::DecompressedTooLarge { limit } if limit == 1 << 20), "{e}");
        let e =
            decompress(Compression::Gzip, &bomb, Bounds { max_bytes: usize::MAX, max_line: Some(1000) }).unwrap_err();
        assert!(matches!(e, InputError::LineTooLong { limit: 1000 }), "{e}");
        assert!(e.to_string().contains("1000"));
        // Exactly at the limits is fine.
        let text = [vec![b'x'; 1000], b"\n".to_vec()].concat();
        let ok = decompress(Compression::Gzip, &gzip(&text), Bounds { max_bytes: 1001, max_line: Some(1000) });
        assert_eq!(ok.unwrap(), text);
    }

    #[test]
    fn lines_are_checked_across_chunks() {
        assert_eq!(longest_line_check(b"abc", 5, 8).unwrap(), 8);
        assert!(longest_line_check(b"abcd", 5, 8).is_err());
        assert_eq!(longest_line_check(b"abc\nde", 5, 8).unwrap(), 2);
        assert!(longest_line_check(b"a\n123456789\n", 0, 8).is_err());
        assert_eq!(longest_line_check(b"", 3, 8).unwrap(), 3);
    }
}
