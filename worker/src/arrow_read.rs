//! Reading a map task's part of an Arrow IPC file (see [`quern_api::input::arrow_split`]):
//! the footer, the dictionaries and the split's own bytes, each range from the task cache
//! when it holds it; the metadata of earlier batches, read only to number the rows, straight
//! from the store and never cached (it would fill the cache's listing, sent with every
//! heartbeat, with tiny entries that no task asks for as a split).

use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};

use quern_api::counters::names;
use quern_api::input::{InputLimits, SplitData, arrow_split};
use quern_api::pb;

use crate::error::TaskError;
use crate::task::{TaskEnv, get_range, url};

/// Reads split `split` of an Arrow IPC file by its batches; returns them with the counter
/// their bytes count in.
pub(crate) async fn read_arrow_split(
    env: &TaskEnv,
    split: &pb::Split,
) -> Result<(SplitData, Option<&'static str>), TaskError> {
    let (u, store) = url(&split.url)?;
    let missed = AtomicBool::new(false);
    let get = |r: Range<u64>| {
        let (u, store, missed) = (&u, &store, &missed);
        async move {
            let cache = env.cache.as_ref();
            if let Some(b) = cache.and_then(|c| c.get(&split.url, r.start, r.end, Some(split.object_size))) {
                return Ok(b);
            }
            missed.store(true, Ordering::Relaxed);
            let b = get_range(store, u, r.clone()).await?;
            if let Some(c) = cache {
                c.put(&split.url, r.start, split.object_size, &b);
            }
            Ok(b)
        }
    };
    // Counted with the rest: a few hundred bytes a batch, they do not make a split whose
    // bytes came from the cache a remote read.
    let peek = |r: Range<u64>| get_range(&store, &u, r);
    let limits = InputLimits::DEFAULT;
    let part = arrow_split::read_split(split.object_size, split.start, split.end, &limits, &get, &peek).await;
    let part = part.map_err(|e| match e {
        arrow_split::ReadError::Store(e) => TaskError::Input(e),
        arrow_split::ReadError::Input(source) => TaskError::BadInput { url: split.url.clone(), source },
    })?;
    let local = env.local_data.iter().any(|p| split.url.starts_with(p.as_str()));
    let counter = if !missed.into_inner() {
        names::CACHE_BYTES_READ
    } else if local {
        names::LOCAL_BYTES_READ
    } else {
        names::REMOTE_BYTES_READ
    };
    Ok((SplitData::Arrow(part), Some(counter)))
}
