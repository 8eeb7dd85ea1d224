//! Checks every message of a shuffle segment's Arrow IPC stream before Arrow reads it.
//!
//! A compressed IPC buffer starts with the length it decompresses to, and Arrow's reader
//! allocates that much before it decompresses: a map output written by a lying worker (its
//! CRC-32 is its own) could declare terabytes and abort every reducer that reads it. So the
//! stream passes through [`Guarded`], which reads one message at a time (its metadata and its
//! body, each bounded), refuses bodies and declared lengths above a limit, and only then hands
//! the bytes on.

use std::io::{self, Read};

/// Metadata of one message, at most: ours are a few hundred bytes.
const MAX_METADATA: usize = 1 << 20;

/// A reader that yields the IPC stream of `inner` message by message, each checked.
pub(crate) struct Guarded<R> {
    inner: R,
    /// The current message's bytes, as read; served from `pos`.
    pending: Vec<u8>,
    pos: usize,
    done: bool,
    /// Most bytes a message body, or a buffer decompressed, may take.
    limit: usize,
}

impl<R: Read> Guarded<R> {
    /// Checks `inner`'s messages against `limit` bytes per body and per decompressed buffer.
    pub(crate) fn new(inner: R, limit: usize) -> Self {
        Guarded { inner, pending: Vec::new(), pos: 0, done: false, limit }
    }

    /// Reads the next message whole into `pending` and checks it.
    fn next_message(&mut self) -> io::Result<()> {
        self.pending.clear();
        self.pos = 0;
        let mut word = [0u8; 4];
        if !read_or_end(&mut self.inner, &mut word)? {
            self.done = true;
            return Ok(());
        }
        self.pending.extend_from_slice(&word);
        // A continuation marker, then the length (older streams: the length alone).
        if word == [0xff; 4] {
            self.inner.read_exact(&mut word)?;
            self.pending.extend_from_slice(&word);
        }
        let len = i32::from_le_bytes(word);
        if len == 0 {
            // The end-of-stream marker: nothing may follow.
            self.done = true;
            return Ok(());
        }
        let len =
            usize::try_from(len).ok().filter(|&n| n <= MAX_METADATA).ok_or_else(|| bad("message metadata length"))?;
        let at = self.pending.len();
        self.pending.resize(at + len, 0);
        self.inner.read_exact(&mut self.pending[at..])?;
        let message = arrow_ipc::root_as_message(&self.pending[at..]).map_err(|_| bad("message metadata"))?;
        let body_len = usize::try_from(message.bodyLength())
            .ok()
            .filter(|&n| n <= self.limit)
            .ok_or_else(|| bad("message body length"))?;
        let compressed = message
            .header_as_record_batch()
            .or_else(|| message.header_as_dictionary_batch().and_then(|d| d.data()))
            .filter(|b| b.compression().is_some())
            .map(|b| {
                b.buffers().map(|v| v.iter().map(|s| (s.offset(), s.length())).collect::<Vec<_>>()).unwrap_or_default()
            });
        let body_at = self.pending.len();
        self.pending.resize(body_at + body_len, 0);
        self.inner.read_exact(&mut self.pending[body_at..])?;
        let body = &self.pending[body_at..];
        for (offset, length) in compressed.unwrap_or_default() {
            if length == 0 {
                continue;
            }
            let declared = usize::try_from(offset)
                .ok()
                .and_then(|o| body.get(o..o.checked_add(8)?))
                .filter(|_| length >= 8)
                .ok_or_else(|| bad("compressed buffer outside its body"))?;
            let n = i64::from_le_bytes(declared.try_into().map_err(|_| bad("compressed buffer"))?);
            // -1: stored uncompressed (its bytes follow, bounded by the body).
            if n != -1 && usize::try_from(n).ok().filter(|&n| n <= self.limit).is_none() {
                return Err(bad("compressed buffer's declared length"));
            }
        }
        Ok(())
    }
}

impl<R: Read> Read for Guarded<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.pending.len() {
            if self.done {
                return Ok(0);
            }
            self.next_message()?;
        }
        let n = out.len().min(self.pending.len() - self.pos);
        out[..n].copy_from_slice(&self.pending[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Fills `buf`, or returns false at a clean end before its first byte.
fn read_or_end(r: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("malformed segment: {what} out of bounds"))
}
