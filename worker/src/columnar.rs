//! Reading a map task's part of a columnar object, Parquet (see
//! [`quern_api::input::parquet_split`]) or an Arrow IPC file (see
//! [`quern_api::input::arrow_split`]): the footer and the split's own ranges, each from the
//! task cache when it holds it. For Arrow, also the dictionaries, and the metadata of earlier
//! batches, read only to number the rows: straight from the store and never cached (it would
//! fill the cache's listing, sent with every heartbeat, with tiny entries that no task asks
//! for as a split).

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use object_store::ObjectStore;
use quern_api::counters::names;
use quern_api::input::{InputLimits, SplitData, arrow_split, parquet_split};
use quern_api::{StoreError, StoreUrl, pb};

use crate::error::TaskError;
use crate::task::{TaskEnv, get_range, url};

/// A split's object, read by ranges through the task cache.
struct Ranges<'a> {
    env: &'a TaskEnv,
    split: &'a pb::Split,
    url: StoreUrl,
    store: Arc<dyn ObjectStore>,
    /// Whether any range came from the store rather than the cache.
    missed: AtomicBool,
}

impl<'a> Ranges<'a> {
    fn new(env: &'a TaskEnv, split: &'a pb::Split) -> Result<Self, TaskError> {
        let (url, store) = url(&split.url)?;
        Ok(Ranges { env, split, url, store, missed: AtomicBool::new(false) })
    }

    /// Range `r`, from the cache if it holds it, else from the store (then cached).
    async fn cached(&self, r: Range<u64>) -> Result<Bytes, StoreError> {
        let (cache, split) = (self.env.cache.as_ref(), self.split);
        if let Some(b) = cache.and_then(|c| c.get(&split.url, r.start, r.end, Some(split.object_size))) {
            return Ok(b);
        }
        self.missed.store(true, Ordering::Relaxed);
        let b = get_range(&self.store, &self.url, r.clone()).await?;
        if let Some(c) = cache {
            c.put(&split.url, r.start, split.object_size, &b);
        }
        Ok(b)
    }

    /// Range `r` from the store, not cached.
    async fn uncached(&self, r: Range<u64>) -> Result<Bytes, StoreError> {
        get_range(&self.store, &self.url, r).await
    }

    /// The counter the split's bytes count in: from the cache only if every range came from it.
    fn counter(self) -> &'static str {
        let local = self.env.local_data.iter().any(|p| self.split.url.starts_with(p.as_str()));
        if !self.missed.into_inner() {
            names::CACHE_BYTES_READ
        } else if local {
            names::LOCAL_BYTES_READ
        } else {
            names::REMOTE_BYTES_READ
        }
    }

    /// The error of a bad object, naming it.
    fn bad(&self, source: quern_api::input::InputError) -> TaskError {
        TaskError::BadInput { url: self.split.url.clone(), source }
    }
}

/// A Parquet split: the object's footer and only the row groups the split owns; returns them
/// with the counter their bytes count in.
pub(crate) async fn read_parquet_split(
    env: &TaskEnv,
    split: &pb::Split,
) -> Result<(SplitData, Option<&'static str>), TaskError> {
    let ranges = Ranges::new(env, split)?;
    let get = |r: Range<u64>| ranges.cached(r);
    let part = parquet_split::read_split(split.object_size, split.start, split.end, &InputLimits::DEFAULT, &get).await;
    let part = part.map_err(|e| match e {
        parquet_split::ReadError::Store(e) => TaskError::Input(e),
        parquet_split::ReadError::Input(source) => ranges.bad(source),
    })?;
    Ok((SplitData::Parquet(part), Some(ranges.counter())))
}

/// Reads split `split` of an Arrow IPC file by its batches; returns them with the counter
/// their bytes count in.
pub(crate) async fn read_arrow_split(
    env: &TaskEnv,
    split: &pb::Split,
) -> Result<(SplitData, Option<&'static str>), TaskError> {
    let ranges = Ranges::new(env, split)?;
    let get = |r: Range<u64>| ranges.cached(r);
    // Counted with the rest: a few hundred bytes a batch, they do not make a split whose
    // bytes came from the cache a remote read.
    let peek = |r: Range<u64>| ranges.uncached(r);
    let limits = InputLimits::DEFAULT;
    let part = arrow_split::read_split(split.object_size, split.start, split.end, &limits, &get, &peek).await;
    let part = part.map_err(|e| match e {
        arrow_split::ReadError::Store(e) => TaskError::Input(e),
        arrow_split::ReadError::Input(source) => ranges.bad(source),
    })?;
    Ok((SplitData::Arrow(part), Some(ranges.counter())))
}
