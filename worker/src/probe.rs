//! The store check a worker makes when it first registers.
//!
//! Every task reads and writes the coordinator's store (map outputs, reduce temporaries, side
//! data). A worker that cannot use it (a wrong S3 endpoint or credentials, a read-only mount)
//! would fail each task it takes, every failure counting against some job's attempts. So
//! before it asks for work, [`check_store`] writes a small object under `STORE/workers/`,
//! reads it back and deletes it; if any step fails the worker stops with one line that names
//! the store and gives the store's own answer.

use std::time::Duration;

use object_store::{ObjectStoreExt, PutPayload};
use quern_api::StoreUrl;

/// How long each step of the check may take, retries included. The S3 client used here
/// gives up after two retries, well within it; this bounds a store that accepts the
/// connection and never answers.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// A step of the store check failed.
#[derive(Debug, thiserror::Error)]
#[error("{step} {url}: {answer}")]
pub struct ProbeError {
    /// What the worker was doing: `writing`, `reading back`, `deleting`.
    pub step: &'static str,
    /// The probe object.
    pub url: String,
    /// What the store said (the whole chain of causes on one line).
    pub answer: String,
}

/// The probe object of a worker on `host` with process id `pid`, under `store`:
/// `STORE/workers/probe-HOST-PID`, the host name reduced to characters safe in any store.
pub fn probe_url(store: &StoreUrl, host: &str, pid: u32) -> StoreUrl {
    let host: String =
        host.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' }).collect();
    store.join(&format!("workers/probe-{host}-{pid}"))
}

/// Writes, reads back and deletes `url`'s object.
pub async fn check_store(url: &StoreUrl) -> Result<(), ProbeError> {
    let fail = |step: &'static str, answer: String| ProbeError { step, url: url.to_string(), answer };
    let store = url.store_failing_fast().map_err(|e| fail("opening", chain(&e)))?;
    let path = url.path();
    let sent = format!("quern worker store check {url}\n").into_bytes();
    bounded("writing", url, store.put(&path, PutPayload::from(sent.clone()))).await?;
    let got = bounded("reading back", url, async { store.get(&path).await?.bytes().await }).await;
    // Deleted whatever the read said, so a failed check leaves nothing behind.
    let deleted = bounded("deleting", url, store.delete(&path)).await;
    let got = got?;
    if got.as_ref() != sent.as_slice() {
        let answer = format!("read {} bytes that differ from the {} written", got.len(), sent.len());
        return Err(fail("reading back", answer));
    }
    deleted
}

/// Runs one step with [`STEP_TIMEOUT`], turning its error into a [`ProbeError`].
async fn bounded<T>(
    step: &'static str,
    url: &StoreUrl,
    call: impl std::future::Future<Output = Result<T, object_store::Error>>,
) -> Result<T, ProbeError> {
    let fail = |answer: String| ProbeError { step, url: url.to_string(), answer };
    match tokio::time::timeout(STEP_TIMEOUT, call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(fail(chain(&e))),
        Err(_) => Err(fail(format!("no answer within {}s", STEP_TIMEOUT.as_secs()))),
    }
}

/// An error and its causes on one line, each cause once: the root cause (say, "Connection
/// refused") is what the operator can act on, and store clients nest it deeply.
fn chain(e: &dyn std::error::Error) -> String {
    let mut line = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = c.source();
    }
    line.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_writable_store_passes_and_keeps_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = StoreUrl::from_user(&format!("{}/store/", dir.path().display())).unwrap();
        let url = probe_url(&store, "rack 1/host:a", 42);
        assert!(url.as_str().ends_with("/store/workers/probe-rack_1_host_a-42"), "{url}");
        check_store(&url).await.unwrap();
        assert!(!dir.path().join("store/workers/probe-rack_1_host_a-42").exists());
    }

    #[tokio::test]
    async fn an_unwritable_store_fails_naming_the_step_and_the_object() {
        let dir = tempfile::tempdir().unwrap();
        // A file where the store's directory should be: nothing can be written under it.
        std::fs::write(dir.path().join("store"), b"not a directory").unwrap();
        let store = StoreUrl::from_user(&format!("{}/store/", dir.path().display())).unwrap();
        let err = check_store(&probe_url(&store, "h", 1)).await.unwrap_err();
        assert_eq!(err.step, "writing");
        let line = err.to_string();
        assert!(line.contains("/store/workers/probe-h-1: ") && !line.contains('\n'), "{line}");
    }
}
