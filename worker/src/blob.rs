//! A task's output object before it goes to the store: pieces in memory or in local files,
//! uploaded in order without ever being gathered into one buffer.

use std::fs::File;
use std::io::{Cursor, Read, Seek, SeekFrom};

use bytes::Bytes;
use tempfile::{SpooledData, SpooledTempFile};

/// One piece of a [`Blob`].
enum Piece {
    Memory(Bytes),
    /// An open (possibly unnamed) local file and its length.
    File(File, u64),
}

/// An object's bytes as pieces in memory or in local files.
#[derive(Default)]
pub struct Blob {
    pieces: Vec<Piece>,
    len: u64,
}

impl Blob {
    /// A blob of `bytes`.
    pub fn from_bytes(bytes: impl Into<Bytes>) -> Self {
        let mut b = Blob::default();
        b.push_bytes(bytes.into());
        b
    }

    /// Appends `bytes`.
    pub fn push_bytes(&mut self, bytes: Bytes) {
        self.len += bytes.len() as u64;
        if !bytes.is_empty() {
            self.pieces.push(Piece::Memory(bytes));
        }
    }

    /// Appends the `len` bytes written into `spool`.
    pub fn push_spool(&mut self, spool: SpooledTempFile, len: u64) {
        match spool.into_inner() {
            SpooledData::InMemory(c) => self.push_bytes(Bytes::from(c.into_inner())),
            SpooledData::OnDisk(f) => {
                self.len += len;
                if len > 0 {
                    self.pieces.push(Piece::File(f, len));
                }
            }
        }
    }

    /// Its length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether some piece is in a local file.
    pub fn on_disk(&self) -> bool {
        self.pieces.iter().any(|p| matches!(p, Piece::File(..)))
    }

    /// The whole blob as one buffer, when every piece is in memory.
    pub fn in_memory(&self) -> Option<Bytes> {
        match self.pieces.as_slice() {
            [] => Some(Bytes::new()),
            [Piece::Memory(b)] => Some(b.clone()),
            pieces => {
                let mut all = Vec::with_capacity(usize::try_from(self.len).ok()?);
                for p in pieces {
                    match p {
                        Piece::Memory(b) => all.extend_from_slice(b),
                        Piece::File(..) => return None,
                    }
                }
                Some(Bytes::from(all))
            }
        }
    }

    /// A reader of the bytes from the start (each call starts again).
    pub fn reader(&self) -> std::io::Result<Box<dyn Read + Send>> {
        let mut all: Box<dyn Read + Send> = Box::new(std::io::empty());
        for p in &self.pieces {
            let next: Box<dyn Read + Send> = match p {
                Piece::Memory(b) => Box::new(Cursor::new(b.clone())),
                Piece::File(f, len) => {
                    let mut f = f.try_clone()?;
                    f.seek(SeekFrom::Start(0))?;
                    Box::new(f.take(*len))
                }
            };
            all = Box::new(all.chain(next));
        }
        Ok(all)
    }
}

/// Reads up to `n` bytes (fewer only at the end) from `r` off the async runtime; returns the
/// reader for the next call.
pub async fn read_piece(mut r: Box<dyn Read + Send>, n: usize) -> std::io::Result<(Box<dyn Read + Send>, Bytes)> {
    tokio::task::spawn_blocking(move || {
        let mut buf = Vec::with_capacity(n);
        (&mut r).take(n as u64).read_to_end(&mut buf)?;
        Ok((r, Bytes::from(buf)))
    })
    .await
    .map_err(std::io::Error::other)?
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[tokio::test]
    async fn pieces_in_memory_and_on_disk_read_back_in_order() {
        let mut b = Blob::from_bytes(b"abc".to_vec());
        let mut small = SpooledTempFile::new(100);
        small.write_all(b"def").unwrap();
        b.push_spool(small, 3);
        assert_eq!(b.in_memory().unwrap(), Bytes::from_static(b"abcdef"));
        let mut big = SpooledTempFile::new(4);
        big.write_all(b"0123456789").unwrap();
        b.push_spool(big, 10);
        assert!(b.on_disk() && b.in_memory().is_none());
        assert_eq!(b.len(), 16);
        for _ in 0..2 {
            let (r, first) = read_piece(b.reader().unwrap(), 5).await.unwrap();
            let (_, rest) = read_piece(r, 100).await.unwrap();
            assert_eq!([first, rest].concat(), b"abcdef0123456789");
        }
    }
}
