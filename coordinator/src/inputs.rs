//! Storage checks done at submit time: listing inputs and making sure the output is empty.

use futures::StreamExt;
use object_store::ObjectStoreExt;
use quern_api::split::InputObject;
use quern_api::{StoreError, StoreUrl};

/// Why a submission's storage was refused.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Nothing exists at an input URL.
    #[error("input not found: {0}")]
    NotFound(String),
    /// Inputs exist but hold no bytes.
    #[error("input is empty: {0}")]
    Empty(String),
    /// The output already holds objects.
    #[error("output {url} already exists ({found}); refusing to overwrite it")]
    OutputExists {
        /// The output URL.
        url: String,
        /// An object found there.
        found: String,
    },
}

/// Whether an object is hidden from input listing (`_SUCCESS`, `.crc` files and the like).
pub fn is_hidden(base_name: &str) -> bool {
    base_name.starts_with('_') || base_name.starts_with('.')
}

/// Lists the objects under `urls` (a pipeline stage's output): none, or only empty ones, is
/// fine, since a stage may write nothing.
pub async fn list_inputs_allow_empty(urls: &[StoreUrl]) -> Result<Vec<InputObject>, InputError> {
    match list_inputs(urls).await {
        Err(InputError::NotFound(_) | InputError::Empty(_)) => Ok(Vec::new()),
        other => other,
    }
}

/// Lists every input object of `urls`, sorted and de-duplicated. A URL ending in `/` is a
/// directory; a URL naming no object is also tried as a directory.
pub async fn list_inputs(urls: &[StoreUrl]) -> Result<Vec<InputObject>, InputError> {
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
            return Err(InputError::NotFound(url.to_string()));
        }
        out.extend(found);
    }
    out.sort_by(|a, b| a.url.cmp(&b.url));
    out.dedup_by(|a, b| a.url == b.url);
    if out.iter().all(|o| o.size == 0) {
        let names: Vec<&str> = urls.iter().map(StoreUrl::as_str).collect();
        return Err(InputError::Empty(names.join(",")));
    }
    Ok(out)
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
