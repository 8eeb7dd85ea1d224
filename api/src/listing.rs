//! Listing a job's input objects: the coordinator lists them to cut splits, and a
//! total-order submission lists them to sample keys, so both see the same objects.

use futures::StreamExt;
use object_store::ObjectStoreExt;

use crate::split::InputObject;
use crate::{StoreError, StoreUrl};

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
