//! Deleting what jobs leave in the store.

use quern_api::{StoreError, StoreUrl};

use crate::inputs::{delete_prefix_except, remove_empty_local_dirs};

/// Why a job directory was not (entirely) deleted.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Some noted uploads could not be aborted: their notes stay, for a later try.
    #[error("{left} upload(s) noted under {dir} could not be aborted; their notes stay for a later sweep")]
    UploadsLeft {
        /// The job directory.
        dir: String,
        /// How many notes stay.
        left: usize,
    },
}

/// Deletes a job's directory (scratch `STORE/jobs/ID/` or temporary `OUTPUT/_temporary/ID/`)
/// with everything under it, aborting first the uploads noted in it: open uploads are
/// invisible but billed. The notes of uploads that could not be aborted stay, so that a
/// later sweep (or `quern gc`) tries again. Empty local directories left behind go too, up
/// to the directory that holds the job's (`jobs/`, `_temporary/`), which goes if empty.
pub async fn delete_job_dir(dir: &StoreUrl) -> Result<(), GcError> {
    let found = crate::commit::abort_noted(dir, false).await?;
    // Aborted notes are deleted; a note still there is an upload still open.
    let left = if found.is_empty() { 0 } else { crate::commit::abort_noted(dir, true).await?.len() };
    let notes = dir.join("uploads/");
    delete_prefix_except(dir, (left > 0).then_some(&notes)).await?;
    if left > 0 {
        return Err(GcError::UploadsLeft { dir: dir.to_string(), left });
    }
    if let Some(parent) = dir.parent_dir() {
        remove_empty_local_dirs(dir, &parent.parent_dir().unwrap_or(parent));
    }
    Ok(())
}
