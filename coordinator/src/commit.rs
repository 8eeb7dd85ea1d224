//! How a granted part becomes visible in its output: in one atomic step of the store,
//! decided by the coordinator, without copying the part's bytes.
//!
//! On local files an attempt writes its own temporary object and the coordinator renames the
//! granted one into place. Stores without atomic rename (S3, GCS, Azure: rename there is copy
//! plus delete, and S3 refuses single copies over 5 GiB) get Hadoop's S3A "magic" commit:
//! the coordinator starts a multipart upload at the part's key for each attempt that asks,
//! the attempt uploads its bytes as parts but never completes the upload, and the
//! coordinator completes the upload of the one attempt it grants and aborts the others. An
//! upload is invisible until completed, so no reader ever sees a partial or a losing part,
//! and a zombie that follows the protocol cannot complete anything.
//!
//! Every upload is noted in the coordinator's store (under the job's scratch directory)
//! before its id is handed out, so uploads left open by a crash are found and aborted by the
//! job's cleanup, a restarted coordinator's sweep or `quern gc`: open uploads are billed.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Mutex;

use futures::TryStreamExt;
use object_store::multipart::{MultipartStore, PartId};
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use quern_api::{AttemptId, JobId, StoreError, StoreUrl, WorkerId};
use tracing::warn;

use crate::core::{PartUpload, Promotion};

/// The smallest upload part S3 accepts (all but the last part of an upload).
pub const MIN_PART_SIZE: u64 = 5 << 20;
/// The largest upload part S3 accepts.
pub const MAX_PART_SIZE: u64 = 5 << 30;
/// The most parts one upload may have (S3's limit).
pub const MAX_PARTS: usize = 10_000;

/// An open multipart upload of a part attempt, as noted in the store.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Upload {
    /// The part (the upload's key).
    pub part: StoreUrl,
    /// The store's id of the upload.
    pub id: String,
}

/// The uploads this coordinator started and has not yet completed or aborted.
#[derive(Debug)]
pub struct Uploads {
    open: Mutex<HashMap<AttemptId, Open>>,
    /// Bytes per uploaded part, told to attempts.
    pub part_size: u64,
}

/// An attempt's upload: being started, or open (with the note that records it).
#[derive(Debug)]
enum Open {
    Starting,
    /// The upload, its note, and the worker that holds the attempt.
    Ready(Box<(Upload, StoreUrl, WorkerId)>),
}

/// Why a part could not be committed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommitError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The attempt's upload does not match what it reported.
    #[error("{0}")]
    Upload(&'static str),
}

impl Uploads {
    /// No uploads yet; attempts upload parts of `part_size` bytes.
    pub fn new(part_size: u64) -> Self {
        Uploads { open: Mutex::new(HashMap::new()), part_size: part_size.clamp(MIN_PART_SIZE, MAX_PART_SIZE) }
    }

    fn open(&self) -> std::sync::MutexGuard<'_, HashMap<AttemptId, Open>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The upload of `attempt` at `at`: started (and noted) on the first call, the same one
    /// on later calls (a worker that retried). `None` where the part's store renames.
    pub async fn start(
        &self,
        attempt: &AttemptId,
        worker: &WorkerId,
        at: PartUpload,
    ) -> Result<Option<Upload>, CommitError> {
        let Some(store) = at.part.multipart_store()? else {
            return Ok(None);
        };
        match self.open().entry(attempt.clone()) {
            Entry::Occupied(e) => {
                return match e.get() {
                    Open::Ready(open) => Ok(Some(open.0.clone())),
                    Open::Starting => Err(CommitError::Upload("the attempt's upload is being started")),
                };
            }
            // Claimed before the store is asked, so one attempt never gets two uploads that
            // share a note.
            Entry::Vacant(e) => e.insert(Open::Starting),
        };
        let started = async {
            let id = store
                .create_multipart(&at.part.path())
                .await
                .map_err(|e| StoreError::from_store(at.part.as_str(), e))?;
            let up = Upload { part: at.part.clone(), id };
            // Noted before anyone can upload to it, so no open upload is ever unknown.
            if let Err(e) = note(&at.marker, &up).await {
                let _ = store.abort_multipart(&up.part.path(), &up.id).await;
                return Err(e);
            }
            Ok(up)
        }
        .await;
        let mut open = self.open();
        match started {
            Ok(up) => {
                open.insert(attempt.clone(), Open::Ready(Box::new((up.clone(), at.marker, worker.clone()))));
                Ok(Some(up))
            }
            Err(e) => {
                open.remove(attempt);
                Err(e.into())
            }
        }
    }

    /// Whether `attempt` has an open upload.
    pub fn is_open(&self, attempt: &AttemptId) -> bool {
        matches!(self.open().get(attempt), Some(Open::Ready(..)))
    }

    /// Completes the granted attempt's upload from the part ids it reported: the part
    /// appears whole, in one step.
    pub async fn complete(
        &self,
        attempt: &AttemptId,
        granted: &Promotion,
        parts: Vec<String>,
    ) -> Result<(), CommitError> {
        let taken = {
            let mut open = self.open();
            match open.remove(attempt) {
                Some(Open::Ready(open)) => {
                    let (up, marker, _) = *open;
                    Some((up, marker))
                }
                // Still starting: leave the claim; the job's cleanup aborts that upload.
                Some(Open::Starting) => {
                    open.insert(attempt.clone(), Open::Starting);
                    None
                }
                None => None,
            }
        };
        let Some((up, marker)) = taken else {
            return Err(CommitError::Upload("the attempt has no open upload"));
        };
        let result = async {
            if up.part != granted.part {
                return Err(CommitError::Upload("the upload is not of the granted part"));
            }
            if parts.is_empty() || parts.len() > MAX_PARTS {
                return Err(CommitError::Upload("an upload needs 1 to 10,000 parts"));
            }
            let store = multipart(&up.part)?;
            let parts = parts.into_iter().map(|content_id| PartId { content_id }).collect();
            store
                .complete_multipart(&up.part.path(), &up.id, parts)
                .await
                .map_err(|e| StoreError::from_store(up.part.as_str(), e))?;
            Ok(())
        }
        .await;
        match &result {
            Ok(()) => forget(&marker).await,
            // A failed completion leaves the upload open: abort it, the attempt has failed.
            Err(_) => abort(&up, &marker).await,
        }
        result
    }

    /// Aborts `attempt`'s upload, if it has one and `worker` started it (its commit was
    /// refused): a refusal of someone else's attempt must not abort that attempt's upload.
    pub async fn abort(&self, attempt: &AttemptId, worker: &WorkerId) {
        let taken = {
            let mut open = self.open();
            match open.remove(attempt) {
                Some(Open::Ready(open)) if &open.2 == worker => {
                    let (up, marker, _) = *open;
                    Some((up, marker))
                }
                // Still starting, or another worker's: left alone (the job's cleanup aborts
                // whatever is left through its note).
                Some(other) => {
                    open.insert(attempt.clone(), other);
                    None
                }
                None => None,
            }
        };
        if let Some((up, marker)) = taken {
            abort(&up, &marker).await;
        }
    }

    /// Forgets the uploads of `job` (its cleanup aborts them through their notes).
    pub fn forget_job(&self, job: &JobId) {
        self.open().retain(|a, _| &a.task.job != job);
    }
}

/// Moves a granted attempt's temporary object into place (stores with atomic rename).
pub async fn promote(p: &Promotion) -> Result<(), StoreError> {
    let store = p.part.store()?;
    store.rename(&p.temp.path(), &p.part.path()).await.map_err(|e| StoreError::from_store(p.temp.as_str(), e))
}

/// Aborts every upload noted under the job scratch directory `scratch` and deletes the notes;
/// returns them. With `dry_run`, only lists them.
pub async fn abort_noted(scratch: &StoreUrl, dry_run: bool) -> Result<Vec<Upload>, StoreError> {
    let dir = scratch.join("uploads/");
    let store = dir.store()?;
    let notes: Vec<_> =
        store.list(Some(&dir.path())).try_collect().await.map_err(|e| StoreError::from_store(dir.as_str(), e))?;
    let mut found = Vec::new();
    for meta in notes {
        let marker = dir.with_path(&meta.location);
        let body = match store.get(&meta.location).await {
            Ok(got) => got.bytes().await,
            Err(e) => Err(e),
        };
        let up = match body.map(|b| serde_json::from_slice::<Upload>(&b)) {
            Ok(Ok(up)) => up,
            Ok(Err(e)) => {
                warn!(note = %marker, error = %e, "an unreadable upload note; deleting it");
                if !dry_run {
                    forget(&marker).await;
                }
                continue;
            }
            // Another cleanup (the job's own, a sweep, `quern gc`) took it meanwhile.
            Err(object_store::Error::NotFound { .. }) => continue,
            Err(e) => return Err(StoreError::from_store(marker.as_str(), e)),
        };
        // A note names its part (`part-NNNNN-eE-aA` for `…part-NNNNN`): one that points
        // anywhere else was not written by a coordinator and is not acted on.
        let name = marker.base_name();
        let part = name.splitn(3, '-').take(2).collect::<Vec<_>>().join("-");
        if !part.starts_with("part-") || !up.part.base_name().ends_with(&part) {
            warn!(note = %marker, part = %up.part, "an upload note that does not name its own part; ignoring it");
            continue;
        }
        if !dry_run {
            abort(&up, &marker).await;
        }
        found.push(up);
    }
    Ok(found)
}

fn multipart(part: &StoreUrl) -> Result<std::sync::Arc<dyn MultipartStore>, StoreError> {
    part.multipart_store()?.ok_or_else(|| StoreError::BadUrl {
        url: part.to_string(),
        reason: "this store has no multipart uploads".into(),
    })
}

async fn note(marker: &StoreUrl, up: &Upload) -> Result<(), StoreError> {
    let body = serde_json::to_vec(up).unwrap_or_default();
    marker
        .store()?
        .put(&marker.path(), PutPayload::from(body))
        .await
        .map_err(|e| StoreError::from_store(marker.as_str(), e))?;
    Ok(())
}

async fn forget(marker: &StoreUrl) {
    let deleted = match marker.store() {
        Ok(store) => store.delete(&marker.path()).await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = deleted {
        warn!(note = %marker, error = %e, "could not delete an upload note");
    }
}

/// Aborts an upload and deletes its note; an upload already gone counts as aborted.
async fn abort(up: &Upload, marker: &StoreUrl) {
    let aborted = match multipart(&up.part) {
        Ok(store) => match store.abort_multipart(&up.part.path(), &up.id).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.to_string()),
        },
        Err(e) => Err(e.to_string()),
    };
    match aborted {
        Ok(()) => forget(marker).await,
        // The note stays, so a later sweep tries again.
        Err(e) => warn!(part = %up.part, error = %e, "could not abort an upload"),
    }
}
