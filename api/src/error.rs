//! Error types shared by every crate: wire decoding, storage, and the job API.

use thiserror::Error;

/// A message from the wire that does not make sense.
#[derive(Debug, Error)]
pub enum ProtocolError {
    /// A required field was absent.
    #[error("missing field `{0}`")]
    Missing(&'static str),
    /// A field was present but invalid.
    #[error("bad field `{field}`: {reason}")]
    BadField {
        /// The field's name.
        field: &'static str,
        /// Why it was refused.
        reason: String,
    },
}

impl From<ProtocolError> for tonic::Status {
    fn from(e: ProtocolError) -> Self {
        tonic::Status::invalid_argument(e.to_string())
    }
}

/// Storage failures, typed so that retry decisions never parse message text.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The URL cannot name an object store location.
    #[error("bad storage URL {url:?}: {reason}")]
    BadUrl {
        /// What the user gave.
        url: String,
        /// Why it was refused.
        reason: String,
    },
    /// The object does not exist.
    #[error("{url}: not found")]
    NotFound {
        /// The object's URL.
        url: String,
    },
    /// The object exists and a create-only write was refused.
    #[error("{url}: already exists")]
    AlreadyExists {
        /// The object's URL.
        url: String,
    },
    /// Any other store failure; usually worth retrying.
    #[error("{url}: {source}{}", credentials_hint(source))]
    Io {
        /// The object's or prefix's URL.
        url: String,
        /// The store's error.
        #[source]
        source: object_store::Error,
    },
}

impl StoreError {
    /// Wraps an `object_store` error, keeping the not-found and already-exists kinds apart.
    pub fn from_store(url: impl Into<String>, source: object_store::Error) -> Self {
        let url = url.into();
        match source {
            object_store::Error::NotFound { .. } => StoreError::NotFound { url },
            object_store::Error::AlreadyExists { .. } => StoreError::AlreadyExists { url },
            source => StoreError::Io { url, source },
        }
    }
}

/// What to do when the S3 client found no credentials and fell back to the instance
/// metadata service, which then failed: its own error names only that service's address.
fn credentials_hint(e: &object_store::Error) -> &'static str {
    let metadata = std::env::var("AWS_METADATA_ENDPOINT").unwrap_or_else(|_| "169.254.169.254".into());
    let metadata = metadata.trim_start_matches("http://").trim_start_matches("https://");
    if !metadata.is_empty() && e.to_string().contains(metadata) {
        " (no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run where instance \
         credentials are available)"
    } else {
        ""
    }
}

/// A job parameter is missing, unknown or malformed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
// Keys and job names can come off the wire: quoted short, so an error stays one short line.
#[error("parameter {}: {reason}", crate::registry::shown(key))]
pub struct ParamError {
    /// The parameter's name.
    pub key: String,
    /// What is wrong with it.
    pub reason: String,
}

/// An error raised by a job's own code (map, combine, reduce) or by decoding its data.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{0}")]
pub struct JobError(pub String);

impl JobError {
    /// An error with this message.
    pub fn new(msg: impl Into<String>) -> Self {
        JobError(msg.into())
    }
}

/// Looking up a job to run failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum LookupError {
    /// No job of that name is registered.
    #[error("unknown job {} (known jobs: {known})", crate::registry::shown(name))]
    UnknownJob {
        /// What was asked for.
        name: String,
        /// The registered names, comma-separated.
        known: String,
    },
    /// The job exists but refused its parameters.
    #[error("job {job}: {error}")]
    Params {
        /// The job's name.
        job: String,
        /// What was wrong.
        error: ParamError,
    },
}

/// The message a caught panic was raised with (`panic!` gives a `&str` or a `String`), or
/// `None` for any other payload.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> Option<String> {
    panic.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| panic.downcast_ref::<String>().cloned())
}
