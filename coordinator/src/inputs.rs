//! Storage checks done at submit time (making sure the output is empty; listing inputs is
//! [`quern_api::listing`], shared with submitting clients), and the deletes of cleanup.

use futures::StreamExt;
use object_store::ObjectStoreExt;
use quern_api::listing::ListError;
use quern_api::{StoreError, StoreUrl};

/// Why a submission's storage was refused.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The inputs could not be listed, or there are none.
    #[error(transparent)]
    List(#[from] ListError),
    /// The output already holds objects.
    #[error("output {url} already exists ({found}); refusing to overwrite it")]
    OutputExists {
        /// The output URL.
        url: String,
        /// An object found there.
        found: String,
    },
}

/// Refuses an output location that already holds anything.
pub async fn check_output_empty(url: &StoreUrl) -> Result<(), InputError> {
    let store = url.store()?;
    let path = url.path();
    if !url.is_dir() {
        match store.head(&path).await {
            Ok(_) => {
                return Err(InputError::OutputExists { url: url.to_string(), found: "an object of that name".into() });
            }
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(StoreError::from_store(url.as_str(), e).into()),
        }
    }
    let dir = url.as_dir();
    let mut list = store.list(Some(&dir.path()));
    if let Some(first) = list.next().await {
        let meta = first.map_err(|e| StoreError::from_store(dir.as_str(), e))?;
        return Err(InputError::OutputExists {
            url: url.to_string(),
            found: url.with_path(&meta.location).to_string(),
        });
    }
    Ok(())
}

/// Deletes every object under `dir`, ignoring ones already gone.
pub async fn delete_prefix(dir: &StoreUrl) -> Result<(), StoreError> {
    delete_prefix_except(dir, None).await
}

/// Deletes every object under `dir` but those under `keep`, ignoring ones already gone.
pub async fn delete_prefix_except(dir: &StoreUrl, keep: Option<&StoreUrl>) -> Result<(), StoreError> {
    let store = dir.store()?;
    let keep = keep.map(StoreUrl::path);
    let locations = store
        .list(Some(&dir.path()))
        .filter(move |m| {
            let kept = matches!((m, &keep), (Ok(m), Some(k)) if m.location.prefix_matches(k));
            std::future::ready(!kept)
        })
        .map(|m| m.map(|m| m.location))
        .boxed();
    let mut deleted = store.delete_stream(locations);
    while let Some(r) = deleted.next().await {
        match r {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(StoreError::from_store(dir.as_str(), e)),
        }
    }
    Ok(())
}

/// Deletes one object, ignoring one already gone.
pub async fn delete_object(url: &StoreUrl) -> Result<(), StoreError> {
    let store = url.store()?;
    match store.delete(&url.path()).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(StoreError::from_store(url.as_str(), e)),
    }
}

/// Removes `dir` and its parents up to (not including) `stop` while they are empty local
/// directories. Object stores have no directories, but a `file://` store leaves empty ones
/// behind after renames out of them; an output must show only its parts and `_SUCCESS`.
pub fn remove_empty_local_dirs(dir: &StoreUrl, stop: &StoreUrl) {
    let (Ok(dir), Ok(stop)) = (url::Url::parse(dir.as_str()), url::Url::parse(stop.as_str())) else { return };
    if dir.scheme() != "file" {
        return;
    }
    let (Ok(mut cur), Ok(stop)) = (dir.to_file_path(), stop.to_file_path()) else { return };
    while cur.starts_with(&stop) && cur != stop {
        // remove_dir fails on a non-empty directory, which is exactly when to stop.
        if std::fs::remove_dir(&cur).is_err() {
            return;
        }
        if !cur.pop() {
            return;
        }
    }
}
