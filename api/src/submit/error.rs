//! Why a submission was refused, or a wait for a job gave up. Planning errors
//! ([`PlanError`]) need no coordinator: they come from the job definition and the registry
//! alone, so a program (or the CLI) can report them before anything is sent.

use crate::JobId;
use crate::client::ConnectError;
use crate::error::{LookupError, ProtocolError, StoreError};
use crate::input::InputError;
use crate::listing::ListError;

/// A job definition the registry's rules refuse.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// No such job or pipeline, or it refused its parameters.
    #[error(transparent)]
    Lookup(#[from] LookupError),
    /// The job fixes its reducer count and another was asked for.
    #[error("job {job:?} {}; it cannot run with {asked}", required_words(*.required))]
    Reducers {
        /// The job (or pipeline stage) name.
        job: String,
        /// What the job requires (0: map-only).
        required: u32,
        /// What was asked for.
        asked: u32,
    },
    /// A pipeline stage after the first generates data.
    #[error("pipeline {pipeline:?}: only its first stage may generate data")]
    LateGenerator {
        /// The pipeline.
        pipeline: String,
    },
    /// A stage of a generating pipeline reads the job's input, which it has none of.
    #[error("pipeline {pipeline:?}: stage {stage} reads the job's input, but the pipeline generates its data")]
    GeneratorReadsInput {
        /// The pipeline.
        pipeline: String,
        /// The stage, from 0.
        stage: usize,
    },
    /// A stage reads sources written in different formats.
    #[error("pipeline {pipeline:?}: stage {stage} ({job}) reads sources in different formats")]
    MixedFormats {
        /// The pipeline.
        pipeline: String,
        /// The stage, from 0.
        stage: usize,
        /// The stage's job.
        job: String,
    },
    /// Inputs were given to a job that generates its data.
    #[error("job {job:?} generates its data; it takes no input")]
    InputGiven {
        /// The job.
        job: String,
    },
    /// A generator job was asked to make no records.
    #[error("job {job:?} has nothing to generate (give it the parameter rows=N)")]
    NothingToGenerate {
        /// The job.
        job: String,
    },
    /// A job that reads input was given none.
    #[error("job {job:?} reads input, and none was given")]
    InputRequired {
        /// The job.
        job: String,
    },
    /// A map count was given to a job that reads input (its splits decide its maps).
    #[error("a map count applies only to generator jobs such as teragen, not to {job:?}")]
    MapsWithoutGenerator {
        /// The job.
        job: String,
    },
    /// No output location was given.
    #[error("job {job:?} needs an output location")]
    OutputRequired {
        /// The job.
        job: String,
    },
    /// An input or output URL cannot name a store location.
    #[error("bad {role}")]
    BadUrl {
        /// `input` or `output`.
        role: &'static str,
        /// Why.
        #[source]
        source: StoreError,
    },
    /// A side data name is empty or given twice.
    #[error("side data {name:?}: the name must be given, and only once")]
    SideName {
        /// The name.
        name: String,
    },
    /// A side data URL cannot name a store location.
    #[error("bad side data {name:?}")]
    SideUrl {
        /// The side data's name.
        name: String,
        /// Why.
        #[source]
        source: StoreError,
    },
}

fn required_words(required: u32) -> String {
    if required == 0 { "is map-only".to_string() } else { format!("runs with {required} reducer(s)") }
}

/// Submitting, following or killing a job failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError {
    /// The job definition was refused before anything was sent.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// A side data object could not be read.
    #[error("side data {name:?}")]
    SideRead {
        /// The side data's name.
        name: String,
        /// The store's error.
        #[source]
        source: StoreError,
    },
    /// Listing the inputs (to sample them for a total order) failed.
    #[error(transparent)]
    List(#[from] ListError),
    /// Reading an input object to sample it failed.
    #[error("sampling {url}")]
    SampleRead {
        /// The object.
        url: String,
        /// The store's error.
        #[source]
        source: StoreError,
    },
    /// An input object sampled for a total order cannot be decoded.
    #[error("sampling {url}")]
    SampleDecode {
        /// The object.
        url: String,
        /// What is wrong with it.
        #[source]
        source: InputError,
    },
    /// The job's own code panicked while the client planned it (building it from its
    /// parameters, or sampling its input).
    #[error("the job panicked in {what}: {message}")]
    JobPanicked {
        /// What was running.
        what: &'static str,
        /// The panic's message.
        message: String,
    },
    /// A coordinator address is malformed or nothing answers there.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// A coordinator answered but refused to serve (a standby, or one still replaying).
    #[error("{addr}: {message}")]
    NotLeader {
        /// The address.
        addr: String,
        /// Its answer.
        message: String,
    },
    /// Of several coordinator addresses, none holds the lease.
    #[error("no coordinator holding the lease")]
    NoLeader {
        /// Why the last address tried was passed over.
        #[source]
        last: Box<SubmitError>,
    },
    /// The coordinator refused a call (see [`explain_status`] for the message).
    #[error("{}", explain_status(.status))]
    Rpc {
        /// Its answer.
        status: Box<tonic::Status>,
    },
    /// The coordinator sent something malformed.
    #[error("malformed answer from the coordinator")]
    Protocol(#[source] ProtocolError),
    /// No coordinator answered for the whole reconnect budget while waiting for a job.
    #[error("lost the coordinator at {addrs} while waiting for job {job}")]
    Lost {
        /// The addresses tried.
        addrs: String,
        /// The job waited for (it may well still run).
        job: JobId,
    },
}

impl From<tonic::Status> for SubmitError {
    fn from(status: tonic::Status) -> Self {
        SubmitError::Rpc { status: Box::new(status) }
    }
}

/// A refused call in one line a user can act on.
pub fn explain_status(s: &tonic::Status) -> String {
    // A broken connection (a TLS alert after the handshake, a reset) says only "transport
    // error"; its cause is what a user can act on.
    if std::error::Error::source(s).is_some() {
        return format!("coordinator connection failed: {}", crate::client::explain_transport("", s));
    }
    match s.code() {
        tonic::Code::Unavailable => format!("coordinator unavailable: {}", s.message()),
        _ => s.message().to_string(),
    }
}
