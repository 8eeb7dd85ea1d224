//! Error types shared by every crate: wire decoding, storage, and the job API.

use thiserror::Error;

/// A message from the wire that does not make sense.
#[derive(Debug, Error)]
#[non_exhaustive]
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
#[non_exhaustive]
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

/// An error raised by a job's own code (map, combine, reduce) or by decoding its shuffle data.
///
/// Any error type converts into it, so job code can use `?` on I/O, parsing or its own
/// errors; the original stays reachable through [`JobError::source`]. Decoding failures
/// ([`DecodeError`], from [`crate::Data::decode`]) keep their own kind: they mean the shuffle
/// bytes do not match the job's types, which the worker reports as a framework failure rather
/// than as the job's own (see [`JobError::is_decode`]).
///
/// Like `anyhow::Error`, it does not implement `std::error::Error` itself (that would clash
/// with the blanket conversion); [`JobError::into_boxed`] gives one when needed.
///
/// ```
/// use quern_api::JobError;
///
/// fn parse_count(field: &str) -> Result<u64, JobError> {
///     let n: u64 = field.trim().parse()?; // ParseIntError -> JobError
///     if n == 0 {
///         return Err(JobError::msg("a count must be positive"));
///     }
///     Ok(n)
/// }
/// assert_eq!(parse_count(" 7 ").unwrap(), 7);
/// let e = parse_count("x").unwrap_err().context("field 2");
/// assert!(e.source().is_some() && !e.is_decode());
/// assert_eq!(e.to_string(), "field 2: invalid digit found in string");
/// ```
pub struct JobError {
    context: Vec<String>,
    cause: Cause,
}

enum Cause {
    Message(String),
    Source(Box<dyn std::error::Error + Send + Sync + 'static>),
}

impl JobError {
    /// An error with this message.
    pub fn msg(message: impl std::fmt::Display) -> Self {
        JobError { context: Vec::new(), cause: Cause::Message(message.to_string()) }
    }

    /// An error with this message (the same as [`JobError::msg`]).
    pub fn new(message: impl Into<String>) -> Self {
        JobError { context: Vec::new(), cause: Cause::Message(message.into()) }
    }

    /// An error from a boxed one (what `anyhow::Error::into()` and `Box<dyn Error>` give),
    /// its source kept.
    pub fn from_boxed(source: Box<dyn std::error::Error + Send + Sync + 'static>) -> Self {
        JobError { context: Vec::new(), cause: Cause::Source(source) }
    }

    /// Puts `context` in front of the message: `context: what went wrong`.
    pub fn context(mut self, context: impl std::fmt::Display) -> Self {
        self.context.push(context.to_string());
        self
    }

    /// The error this one was converted from, if any.
    pub fn source(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        match &self.cause {
            Cause::Source(e) => Some(e.as_ref()),
            Cause::Message(_) => None,
        }
    }

    /// Whether shuffle data failed to decode (a [`DecodeError`]) rather than the job's own
    /// code failing.
    pub fn is_decode(&self) -> bool {
        self.source().is_some_and(|e| e.is::<DecodeError>())
    }

    /// The error as a boxed `std::error::Error` (for `Box<dyn Error>` and `anyhow`).
    pub fn into_boxed(self) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        match self.cause {
            Cause::Source(e) if self.context.is_empty() => e,
            _ => self.to_string().into(),
        }
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for JobError {
    fn from(e: E) -> Self {
        JobError { context: Vec::new(), cause: Cause::Source(Box::new(e)) }
    }
}

impl std::fmt::Display for JobError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for c in self.context.iter().rev() {
            write!(f, "{c}: ")?;
        }
        match &self.cause {
            Cause::Message(m) => f.write_str(m),
            Cause::Source(e) => {
                write!(f, "{e}")?;
                // The chain below the converted error, as anyhow's `{:#}` prints it.
                let mut next = e.source();
                while let Some(s) = next {
                    write!(f, ": {s}")?;
                    next = s.source();
                }
                Ok(())
            }
        }
    }
}

impl std::fmt::Debug for JobError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JobError({:?})", self.to_string())
    }
}

impl From<JobError> for Box<dyn std::error::Error + Send + Sync + 'static> {
    fn from(e: JobError) -> Self {
        e.into_boxed()
    }
}

/// Shuffle bytes that do not decode as the job's key or value type: what
/// [`crate::Data::decode`] returns. Kept apart from the job's own failures (see
/// [`JobError::is_decode`]).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("shuffle data: {0}")]
pub struct DecodeError(pub String);

impl DecodeError {
    /// A decoding error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        DecodeError(message.into())
    }
}

/// Looking up a job to run failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
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
