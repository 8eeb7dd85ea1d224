//! Listing a job's input objects: the coordinator lists them to cut splits, and a
//! total-order submission lists them to sample keys, so both see the same objects.
//! [`split_inputs`] then cuts them: by byte range, Parquet objects by row group and Arrow IPC
//! files by record batch (reading their footers).

use futures::StreamExt;
use object_store::ObjectStoreExt;

use crate::format::{InputFormat, ObjectFormat};
use crate::input::InputError;
use crate::input::arrow_split;
use crate::input::parquet_split::{self, ReadError};
use crate::split::{InputObject, Split, compute_splits};
use crate::{StoreError, StoreUrl};

/// Footers read at once while planning: each may hold up to
/// [`parquet_split::MAX_FOOTER_BYTES`] (or [`arrow_split::MAX_FOOTER_BYTES`]) in memory.
const FOOTERS_AT_ONCE: usize = 4;

/// Why an input listing was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ListError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Nothing exists at an input URL.
    #[error("input not found: {0}")]
    NotFound(String),
    /// Inputs exist but hold no bytes.
    #[error("input is empty: {0}")]
    Empty(String),
    /// An input object's own layout (a Parquet or Arrow IPC footer) is invalid.
    #[error("input {url}: {source}")]
    BadInput {
        /// The object's URL.
        url: String,
        /// What was wrong.
        source: InputError,
    },
}

/// Cuts `objects` into splits of about `split_size` bytes, as [`compute_splits`] does,
/// except that Parquet objects are cut at row groups (see [`parquet_split::plan`]) and Arrow
/// IPC files larger than `split_size` at record batches (see [`arrow_split::plan`]): their
/// footers are read here, a few at once, and a malformed one refuses the job. An Arrow object
/// no larger than a split, or a stream (no footer), stays one split read whole, as before.
pub async fn split_inputs(
    objects: &[InputObject],
    split_size: u64,
    format: InputFormat,
) -> Result<Vec<Split>, ListError> {
    // Owned arguments: a stream of futures borrowing the slice is not `Send` for every
    // lifetime, which the coordinator's spawned tasks need.
    let per_object = futures::stream::iter(objects.to_vec())
        .map(move |o| split_object(o, split_size, format))
        .buffered(FOOTERS_AT_ONCE);
    futures::pin_mut!(per_object);
    let mut out = Vec::new();
    while let Some(splits) = per_object.next().await {
        out.extend(splits?);
    }
    Ok(out)
}

/// The splits of one object (see [`split_inputs`]).
async fn split_object(o: InputObject, split_size: u64, format: InputFormat) -> Result<Vec<Split>, ListError> {
    let of = format.resolve(&o.url);
    let by_footer = match of {
        ObjectFormat::Parquet => true,
        ObjectFormat::Arrow => o.size > split_size,
        _ => false,
    };
    if o.size == 0 || !by_footer {
        return Ok(compute_splits(std::slice::from_ref(&o), split_size, format));
    }
    let url = StoreUrl::parse(&o.url)?;
    let store = url.store()?;
    let path = url.path();
    let get = |r: std::ops::Range<u64>| {
        let (store, path, url) = (store.clone(), path.clone(), url.clone());
        async move { store.get_range(&path, r).await.map_err(|e| StoreError::from_store(url.as_str(), e)) }
    };
    let planned = if of == ObjectFormat::Parquet {
        parquet_split::read_footer(o.size, &get).await.map(|footer| parquet_split::plan(&o.url, &footer, split_size))
    } else {
        arrow_split::read_footer(o.size, &get).await.map(|footer| match footer {
            Some(footer) => arrow_split::plan(&o.url, &footer, split_size),
            None => compute_splits(std::slice::from_ref(&o), split_size, format),
        })
    };
    match planned {
        Ok(splits) => Ok(splits),
        Err(ReadError::Store(e)) => Err(ListError::Store(e)),
        Err(ReadError::Input(source)) => Err(ListError::BadInput { url: o.url, source }),
    }
}

/// Whether an object is hidden from input listing (`_SUCCESS`, `.crc` files and the like).
pub fn is_hidden(base_name: &str) -> bool {
    base_name.starts_with('_') || base_name.starts_with('.')
}

/// Lists the objects under `urls` (a pipeline stage's output): none, or only empty ones, is
/// fine, since a stage may write nothing.
pub async fn list_inputs_allow_empty(urls: &[StoreUrl]) -> Result<Vec<InputObject>, ListError> {
    match list_inputs(urls).await {
        Err(ListError::NotFound(_) | ListError::Empty(_)) => Ok(Vec::new()),
        other => other,
    }
}

/// Lists every input object of `urls`, sorted and de-duplicated. A URL ending in `/` is a
/// directory; a URL naming no object is also tried as a directory.
pub async fn list_inputs(urls: &[StoreUrl]) -> Result<Vec<InputObject>, ListError> {
    let mut out = Vec::new();
    for url in urls {
        let store = url.store()?;
        let mut found = Vec::new();
        if !url.is_dir() {
            match store.head(&url.path()).await {
                Ok(meta) => found.push(InputObject { url: url.to_string(), size: meta.size }),
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(StoreError::from_store(url.as_str(), e).into()),
            }
        }
        if found.is_empty() {
            let dir = url.as_dir();
            let root = dir.path();
            let mut list = store.list(Some(&root));
            while let Some(meta) = list.next().await {
                let meta = meta.map_err(|e| StoreError::from_store(dir.as_str(), e))?;
                // Hidden anywhere below the listed directory: `out/_temporary/JOB/part-...`
                // (attempts not committed, or not yet cleaned up) is never input.
                let below = meta.location.prefix_match(&root).map(|parts| parts.map(|p| p.as_ref().to_string()));
                if below.is_some_and(|mut parts| parts.any(|p| is_hidden(&p))) {
                    continue;
                }
                let child = url.with_path(&meta.location);
                if is_hidden(&child.base_name()) {
                    continue;
                }
                found.push(InputObject { url: child.to_string(), size: meta.size });
            }
        }
        if found.is_empty() {
            return Err(ListError::NotFound(url.to_string()));
        }
        out.extend(found);
    }
    out.sort_by(|a, b| a.url.cmp(&b.url));
    out.dedup_by(|a, b| a.url == b.url);
    if out.iter().all(|o| o.size == 0) {
        let names: Vec<&str> = urls.iter().map(StoreUrl::as_str).collect();
        return Err(ListError::Empty(names.join(",")));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hidden_objects_and_everything_under_hidden_directories_are_not_input() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for (path, body) in [
            ("a.txt", "a\n"),
            ("sub/b.txt", "b\n"),
            ("_SUCCESS", ""),
            (".a.crc", "x"),
            ("_temporary/job_1/part-00000-e1-a2", "stale\n"),
            ("sub/.hidden/c.txt", "c\n"),
        ] {
            std::fs::create_dir_all(root.join(path).parent().unwrap()).unwrap();
            std::fs::write(root.join(path), body).unwrap();
        }
        let url = StoreUrl::from_user(&format!("{}/", root.display())).unwrap();
        let found = list_inputs(&[url]).await.unwrap();
        let names: Vec<String> =
            found.iter().map(|o| o.url.rsplit_once(root.to_str().unwrap()).unwrap().1.into()).collect();
        assert_eq!(names, ["/a.txt", "/sub/b.txt"]);
    }
}
