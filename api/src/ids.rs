//! Typed identifiers. Jobs, tasks, attempts and workers are never bare strings or tuples.
//!
//! A `JobId` is `job_<epoch-ms>_<seq>`: the epoch is when the coordinator that created it
//! started, so ids never repeat across coordinator restarts. An [`AttemptId`] names one try of
//! one task; the coordinator accepts outcomes and commits only from the attempt it expects.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::ProtocolError;
use crate::pb;

/// A job, unique across coordinator restarts.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct JobId(String);

impl JobId {
    /// Builds the id of the `seq`-th job of a coordinator that started at `epoch_ms`.
    pub fn new(epoch_ms: u64, seq: u64) -> Self {
        JobId(format!("job_{epoch_ms}_{seq:04}"))
    }

    /// Parses a user- or wire-supplied id, refusing anything that could escape a store path.
    pub fn parse(s: &str) -> Result<Self, ProtocolError> {
        let ok =
            !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if ok {
            Ok(JobId(s.to_string()))
        } else {
            Err(ProtocolError::BadField { field: "job_id", reason: format!("{s:?} is not a job id") })
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A registered worker. A restarted worker process always gets a new id.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct WorkerId(String);

impl WorkerId {
    /// Builds the id of the `seq`-th worker registered with a coordinator started at `epoch_ms`.
    pub fn new(epoch_ms: u64, seq: u64) -> Self {
        WorkerId(format!("worker_{epoch_ms}_{seq:04}"))
    }

    /// Wraps a wire-supplied id (unknown ids are simply not found later).
    pub fn parse(s: &str) -> Result<Self, ProtocolError> {
        if s.is_empty() {
            return Err(ProtocolError::Missing("worker_id"));
        }
        Ok(WorkerId(s.to_string()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Map or reduce.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum TaskKind {
    /// Reads an input split, writes one shuffle object.
    Map,
    /// Reads one partition of every map output, writes one part.
    Reduce,
}

impl TaskKind {
    /// `m` or `r`, as used in names.
    pub fn letter(self) -> char {
        match self {
            TaskKind::Map => 'm',
            TaskKind::Reduce => 'r',
        }
    }
}

impl From<TaskKind> for pb::TaskKind {
    fn from(k: TaskKind) -> Self {
        match k {
            TaskKind::Map => pb::TaskKind::Map,
            TaskKind::Reduce => pb::TaskKind::Reduce,
        }
    }
}

impl TryFrom<i32> for TaskKind {
    type Error = ProtocolError;
    fn try_from(v: i32) -> Result<Self, Self::Error> {
        match pb::TaskKind::try_from(v) {
            Ok(pb::TaskKind::Map) => Ok(TaskKind::Map),
            Ok(pb::TaskKind::Reduce) => Ok(TaskKind::Reduce),
            _ => Err(ProtocolError::BadField { field: "kind", reason: format!("unknown task kind {v}") }),
        }
    }
}

/// One task of one job.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TaskId {
    /// The job.
    pub job: JobId,
    /// Map or reduce.
    pub kind: TaskKind,
    /// Index among the job's tasks of that kind (the partition number for reduces).
    pub index: u32,
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_{}{:05}", self.job, self.kind.letter(), self.index)
    }
}

/// One attempt at a task; attempts of a task are numbered from 1.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AttemptId {
    /// The task.
    pub task: TaskId,
    /// Attempt number, from 1.
    pub attempt: u32,
}

impl fmt::Display for AttemptId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_a{}", self.task, self.attempt)
    }
}

impl From<&AttemptId> for pb::AttemptRef {
    fn from(a: &AttemptId) -> Self {
        pb::AttemptRef {
            job_id: a.task.job.to_string(),
            kind: pb::TaskKind::from(a.task.kind) as i32,
            index: a.task.index,
            attempt: a.attempt,
        }
    }
}

impl TryFrom<&pb::AttemptRef> for AttemptId {
    type Error = ProtocolError;
    fn try_from(r: &pb::AttemptRef) -> Result<Self, Self::Error> {
        if r.attempt == 0 {
            return Err(ProtocolError::BadField { field: "attempt", reason: "attempts count from 1".into() });
        }
        Ok(AttemptId {
            task: TaskId { job: JobId::parse(&r.job_id)?, kind: TaskKind::try_from(r.kind)?, index: r.index },
            attempt: r.attempt,
        })
    }
}

impl TryFrom<Option<&pb::AttemptRef>> for AttemptId {
    type Error = ProtocolError;
    fn try_from(r: Option<&pb::AttemptRef>) -> Result<Self, Self::Error> {
        AttemptId::try_from(r.ok_or(ProtocolError::Missing("attempt"))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempt_round_trips_through_the_wire_type() {
        let a = AttemptId { task: TaskId { job: JobId::new(17, 3), kind: TaskKind::Reduce, index: 4 }, attempt: 2 };
        let back = AttemptId::try_from(&pb::AttemptRef::from(&a)).unwrap();
        assert_eq!(a, back);
        assert_eq!(a.to_string(), "job_17_0003_r00004_a2");
    }

    #[test]
    fn job_ids_that_could_escape_a_path_are_refused() {
        assert!(JobId::parse("../etc").is_err());
        assert!(JobId::parse("").is_err());
        assert!(JobId::parse("job_1_0001").is_ok());
    }
}
