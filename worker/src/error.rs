//! Why a task attempt failed, typed so the coordinator's retry policy never parses text.

use quern_api::{StoreError, pb};

pub use quern_api::input::InputError;

use crate::shuffle::ShuffleError;

/// A task attempt failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TaskError {
    /// The job's own code returned an error or panicked.
    #[error("{0}")]
    User(String),
    /// Shuffle data did not decode as the job's key or value type (it passed its checksum,
    /// so the job's encode and decode disagree): not the job's own failure, never skipped.
    #[error("{0}")]
    Decode(String),
    /// The input split could not be read.
    #[error("reading input: {0}")]
    Input(#[source] StoreError),
    /// An input object cannot be decoded (a broken `.gz` or `.zst`), or is over a limit.
    #[error("input {url}: {source}")]
    BadInput {
        /// The object.
        url: String,
        /// What is wrong with it.
        #[source]
        source: InputError,
    },
    /// A map output this reducer needs is missing or corrupt.
    #[error("map output {map_index} is unusable: {reason}")]
    MapOutputLost {
        /// Which map task.
        map_index: u32,
        /// The attempt that wrote the bad output (the coordinator knows its object).
        map_attempt: u32,
        /// What was wrong with it.
        reason: String,
    },
    /// Writing to or reading from the store failed.
    #[error("store: {0}")]
    Store(#[source] StoreError),
    /// The records do not fit the output format (user code wrote the wrong kind).
    #[error("output: {0}")]
    Output(#[from] crate::output::OutputError),
    /// Encoding the shuffle failed.
    #[error("shuffle encoding: {0}")]
    Shuffle(#[from] ShuffleError),
    /// The worker cannot run this task (unknown job, bad parameters, bad assignment).
    #[error("{0}")]
    Config(String),
    /// The coordinator refused this attempt the right to commit.
    #[error("commit refused: {0}")]
    CommitRefused(String),
    /// The attempt was cancelled.
    #[error("cancelled")]
    Cancelled,
    /// The worker itself failed running the attempt (not the job's code, not the input).
    #[error("{0}")]
    Internal(String),
}

impl From<quern_api::JobError> for TaskError {
    fn from(e: quern_api::JobError) -> Self {
        if e.is_decode() { TaskError::Decode(e.to_string()) } else { TaskError::User(e.to_string()) }
    }
}

impl TaskError {
    /// The wire form of the failure.
    pub fn to_pb(&self) -> pb::Failed {
        let kind = match self {
            TaskError::User(_) | TaskError::Output(_) => pb::FailureKind::UserCode,
            TaskError::Input(_) | TaskError::BadInput { .. } => pb::FailureKind::Input,
            TaskError::MapOutputLost { .. } => pb::FailureKind::MapOutputLost,
            TaskError::Store(_) => pb::FailureKind::Store,
            TaskError::Config(_) => pb::FailureKind::Config,
            TaskError::Decode(_)
            | TaskError::Shuffle(_)
            | TaskError::CommitRefused(_)
            | TaskError::Cancelled
            | TaskError::Internal(_) => pb::FailureKind::Internal,
        };
        let (lost_map_index, lost_map_attempt) = match self {
            TaskError::MapOutputLost { map_index, map_attempt, .. } => (Some(*map_index), *map_attempt),
            _ => (None, 0),
        };
        pb::Failed {
            kind: kind as i32,
            message: self.to_string(),
            lost_map_index,
            lost_map_attempt,
            log_tail: Vec::new(),
        }
    }
}
