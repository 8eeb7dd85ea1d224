//! What a map task reads, and how it gets to the map ([`map_input`]): a split read whole and
//! decoded as one input, or a compressed text or fixed-length object decompressed as it
//! streams from the store (see [`quern_api::input::stream`]). The object arrives in the store
//! client's pieces through a small bounded channel, and the map runs on a blocking thread that
//! decompresses the pieces, cuts the output into blocks at record boundaries and maps each
//! block on the rayon pool. Memory is the channel, one block and the map's own buffers,
//! whatever the object's size; waiting for the store never blocks a rayon thread. With a
//! cache, the object is copied to local disk as it streams and kept once it all arrived and
//! decoded; a later task reads it from there.
//!
//! A store error mid-stream fails the attempt as a store read error (retried like any);
//! broken data, as a bad input.

use std::io::{Read, Seek, Write};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Buf, Bytes};
use futures::StreamExt;
use object_store::ObjectStoreExt;
use quern_api::Counters;
use quern_api::counters::names;
use quern_api::format::ObjectFormat;
use quern_api::input::stream::{BlockCut, Blocks, streamed};
use quern_api::input::{Input, InputLimits};
use quern_api::split::Compression;
use quern_api::split::GENERATE_URL;
use quern_api::{StoreError, StoreUrl, pb};
use tempfile::TempDir;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::error::TaskError;
use crate::map::Inputs;
use crate::spill::TaskMemory;
use crate::task::{TaskEnv, panic_message, read_split, spawn_compute, with_retries};

/// Pieces of the object in flight between the store and the decompressor (each as the store
/// client delivers it: some KiB).
const PIECES_IN_FLIGHT: usize = 64;

/// The largest block mapped at once.
const MAX_BLOCK: usize = 64 << 20;

/// Bytes of a block under `memory`: a quarter of it, at most [`MAX_BLOCK`].
pub(crate) fn block_bytes(memory: TaskMemory) -> usize {
    (memory.bytes() / 4).clamp(1, MAX_BLOCK)
}

/// What streaming an object gave: `work`'s result, the compressed bytes read, and the counter
/// they count in (from the cache, this machine's disk, or elsewhere).
pub(crate) struct Streamed<T> {
    pub(crate) result: T,
    pub(crate) read: u64,
    pub(crate) counter: &'static str,
}

/// Streams the compressed object of `split` from the worker's cache or the store and runs
/// `work` over its blocks on a blocking thread; `tmp` holds the copy kept for the cache. A
/// cancelled attempt stops streaming.
pub(crate) async fn with_blocks<T, W>(
    env: &TaskEnv,
    split: &pb::Split,
    (codec, cut): (Compression, BlockCut),
    (tmp, cancel): (&std::path::Path, &CancellationToken),
    work: W,
) -> Result<Streamed<T>, TaskError>
where
    T: Send + 'static,
    W: FnOnce(&mut Inputs<'_>) -> Result<T, TaskError> + Send + 'static,
{
    let limits = InputLimits::DEFAULT;
    let block = block_bytes(env.memory);
    let bad = {
        let url = split.url.clone();
        move |source| TaskError::BadInput { url: url.clone(), source }
    };
    let size = split.object_size;
    if let Some(file) = env.cache.as_ref().and_then(|c| c.open_range(&split.url, 0, size, Some(size))) {
        let result = blocking(move || {
            let mut blocks = Blocks::new(codec, file, cut, block, limits.max_streamed(size)).map(|b| b.map_err(&bad));
            work(&mut blocks)
        })
        .await??;
        return Ok(Streamed { result, read: size, counter: names::CACHE_BYTES_READ });
    }
    let u = StoreUrl::parse(&split.url).map_err(|e| TaskError::Config(e.to_string()))?;
    let store = u.store().map_err(TaskError::Store)?;
    let path = u.path();
    let got =
        with_retries("read", || async { store.get(&path).await.map_err(|e| StoreError::from_store(u.as_str(), e)) })
            .await
            .map_err(TaskError::Input)?;
    // The size the store reports, not the one the submitter listed.
    let size = got.meta.size;
    let max_total = limits.max_streamed(size);
    let (tx, rx) = mpsc::channel::<Bytes>(PIECES_IN_FLIGHT);
    let received = Arc::new(AtomicU64::new(0));
    let copy = match &env.cache {
        Some(_) => Some(tempfile::tempfile_in(tmp).map_err(|e| TaskError::Shuffle(e.into()))?),
        None => None,
    };
    let reader = PieceReader { rx, piece: Bytes::new(), received: received.clone(), copy };
    let (cache, url) = (env.cache.clone(), split.url.clone());
    let mapped = blocking(move || {
        let mut blocks = Blocks::new(codec, reader, cut, block, max_total);
        let result = work(&mut (&mut blocks).map(|b| b.map_err(&bad)))?;
        // Every byte arrived and decoded: keep the object for tasks scheduled here later.
        if let (Some(cache), Some(mut file)) = (cache, blocks.into_source().and_then(|r| r.copy))
            && received.load(Ordering::Relaxed) == size
            && file.rewind().is_ok()
        {
            cache.put_from(&url, 0, size, size, &mut file);
        }
        Ok::<_, TaskError>(result)
    });
    let feed = async {
        let mut pieces = got.into_stream();
        let mut read = 0u64;
        loop {
            // A cancelled attempt stops reading: the map sees the stream end early and stops.
            let piece = tokio::select! {
                piece = pieces.next() => piece,
                _ = cancel.cancelled() => return Err(TaskError::Cancelled),
            };
            let Some(piece) = piece else { break };
            let piece = piece.map_err(|e| TaskError::Input(StoreError::from_store(u.as_str(), e)))?;
            read += piece.len() as u64;
            if tx.send(piece).await.is_err() {
                // The map stopped (it failed, and says why).
                break;
            }
        }
        // Dropping the sender ends the stream the decompressor reads.
        drop(tx);
        Ok::<_, TaskError>(read)
    };
    let (read, mapped) = tokio::join!(feed, mapped);
    // A store failure explains whatever the map made of a stream cut short.
    let read = read?;
    let result = mapped??;
    let local = env.local_data.iter().any(|p| split.url.starts_with(p.as_str()));
    Ok(Streamed { result, read, counter: if local { names::LOCAL_BYTES_READ } else { names::REMOTE_BYTES_READ } })
}

/// Where a map task's input came from: the bytes read (compressed, for a compressed object)
/// and the counter they count in (none for generated records).
pub(crate) struct InputRead {
    bytes: u64,
    counter: Option<&'static str>,
}

impl InputRead {
    /// Adds the bytes read to their counter.
    pub(crate) fn count(&self, counters: &mut Counters) {
        if let Some(c) = self.counter {
            counters.add(c, self.bytes as i64);
        }
    }
}

/// Reads the input of `split` in `format` and runs `work` over it: a compressed text or
/// fixed-length object block by block as it streams ([`with_blocks`]); any other split read
/// whole and decoded as one input, on rayon.
pub(crate) async fn map_input<T, W>(
    env: &TaskEnv,
    split: &pb::Split,
    format: ObjectFormat,
    (dir, cancel): (&Arc<TempDir>, &CancellationToken),
    work: W,
) -> Result<(T, InputRead), TaskError>
where
    T: Send + 'static,
    W: FnOnce(&mut Inputs<'_>) -> Result<T, TaskError> + Send + 'static,
{
    let generated = split.url == GENERATE_URL;
    if !generated && let Some(how) = streamed(format) {
        let s = with_blocks(env, split, how, (dir.path(), cancel), work).await?;
        env.step();
        return Ok((s.result, InputRead { bytes: s.read, counter: Some(s.counter) }));
    }
    let (data, counter) = read_split(env, split, format).await?;
    env.step();
    let bytes = data.bytes_read();
    let (start, end, url) = (split.start, split.end, split.url.clone());
    let result = spawn_compute(move || {
        let input =
            if generated { Ok(Input::Generate { start, end }) } else { Input::decode_split(format, data, start, end) };
        let input = input.map_err(|source| TaskError::BadInput { url, source })?;
        work(&mut std::iter::once(Ok(input)))
    })
    .await??;
    Ok((result, InputRead { bytes, counter }))
}

/// Runs `f` on a blocking thread (it waits for the store's pieces, so not on rayon, whose
/// pool it uses for the blocks); a panic becomes [`TaskError::User`].
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, TaskError> {
    match tokio::task::spawn_blocking(move || std::panic::catch_unwind(AssertUnwindSafe(f))).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(panic)) => Err(TaskError::User(format!("user code panicked: {}", panic_message(panic.as_ref())))),
        Err(e) => Err(TaskError::Internal(format!("map thread failed: {e}"))),
    }
}

/// The object's bytes as a blocking reader of the pieces the feed sends; the end of the
/// channel is the end of the object. Keeps a copy for the cache when asked.
struct PieceReader {
    rx: mpsc::Receiver<Bytes>,
    piece: Bytes,
    received: Arc<AtomicU64>,
    copy: Option<std::fs::File>,
}

impl Read for PieceReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.piece.is_empty() {
            match self.rx.blocking_recv() {
                Some(piece) => {
                    self.received.fetch_add(piece.len() as u64, Ordering::Relaxed);
                    // A copy that fails only means nothing is cached.
                    if let Some(f) = &mut self.copy
                        && f.write_all(&piece).is_err()
                    {
                        self.copy = None;
                    }
                    self.piece = piece;
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.piece.len());
        buf[..n].copy_from_slice(&self.piece[..n]);
        self.piece.advance(n);
        Ok(n)
    }
}
