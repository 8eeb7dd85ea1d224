//! A job's status as a submitting program reads it: the state as an enum, progress as
//! numbers, and the contract's JSON (the one [`crate::json::status_json`] makes, which the
//! CLI prints) for anyone who wants it whole.

use std::collections::BTreeMap;

use crate::error::ProtocolError;
use crate::{JobId, pb};

/// Where a job is in its life.
///
/// ```text
/// Queued --> Running --> Succeeded
///    |          |------> Failed
///    '----------'------> Killed
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum JobState {
    /// Accepted, no task started yet.
    Queued,
    /// Tasks are running.
    Running,
    /// Every task succeeded and the output is committed.
    Succeeded,
    /// A task failed for good; [`JobStatus::error`] says why.
    Failed,
    /// Killed on request.
    Killed,
}

impl JobState {
    /// The contract's name: `queued|running|succeeded|failed|killed`.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Killed => "killed",
        }
    }

    /// Whether the job has ended (nothing changes after this).
    pub fn is_final(self) -> bool {
        matches!(self, JobState::Succeeded | JobState::Failed | JobState::Killed)
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<i32> for JobState {
    type Error = ProtocolError;

    fn try_from(wire: i32) -> Result<Self, ProtocolError> {
        match pb::JobState::try_from(wire) {
            Ok(pb::JobState::Queued) => Ok(JobState::Queued),
            Ok(pb::JobState::Running) => Ok(JobState::Running),
            Ok(pb::JobState::Succeeded) => Ok(JobState::Succeeded),
            Ok(pb::JobState::Failed) => Ok(JobState::Failed),
            Ok(pb::JobState::Killed) => Ok(JobState::Killed),
            _ => Err(ProtocolError::BadField { field: "state", reason: format!("{wire} is not a job state") }),
        }
    }
}

/// Tasks of one phase (maps or reduces).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Tasks in the phase (0 while not yet known, e.g. a later pipeline stage).
    pub total: u32,
    /// Tasks succeeded.
    pub done: u32,
    /// Tasks with an attempt running now.
    pub running: u32,
}

impl From<Option<pb::Progress>> for Progress {
    fn from(p: Option<pb::Progress>) -> Self {
        let p = p.unwrap_or_default();
        Progress { total: p.total, done: p.done, running: p.running }
    }
}

/// One job's status, checked once as it comes off the wire.
#[derive(Clone, Debug)]
pub struct JobStatus {
    id: JobId,
    state: JobState,
    maps: Progress,
    reduces: Progress,
    wire: pb::JobStatus,
}

impl TryFrom<pb::JobStatus> for JobStatus {
    type Error = ProtocolError;

    fn try_from(wire: pb::JobStatus) -> Result<Self, ProtocolError> {
        Ok(JobStatus {
            id: JobId::parse(&wire.id)?,
            state: JobState::try_from(wire.state)?,
            maps: wire.maps.into(),
            reduces: wire.reduces.into(),
            wire,
        })
    }
}

impl JobStatus {
    /// The job's id.
    pub fn id(&self) -> &JobId {
        &self.id
    }

    /// The registered job (or pipeline) name.
    pub fn job(&self) -> &str {
        &self.wire.job
    }

    /// Where the job is.
    pub fn state(&self) -> JobState {
        self.state
    }

    /// Map tasks (of the running stages, for a pipeline).
    pub fn maps(&self) -> Progress {
        self.maps
    }

    /// Reduce tasks (of the running stages, for a pipeline).
    pub fn reduces(&self) -> Progress {
        self.reduces
    }

    /// Why the job failed, once it has.
    pub fn error(&self) -> Option<&str> {
        self.wire.error.as_deref()
    }

    /// The job's counters, summed over its succeeded attempts.
    pub fn counters(&self) -> &BTreeMap<String, i64> {
        &self.wire.counters
    }

    /// The output directory's URL.
    pub fn output(&self) -> &str {
        &self.wire.output
    }

    /// The status as the contract's JSON object: exactly what `quern status --json` prints.
    pub fn to_json(&self) -> serde_json::Value {
        crate::json::status_json(&self.wire)
    }

    /// The status as it came off the wire, for renderers that read every field.
    pub fn as_wire(&self) -> &pb::JobStatus {
        &self.wire
    }
}
