//! Journal snapshots: the records that rebuild the current state, so that a restart replays
//! a snapshot and the entries written after it instead of every record since the store was
//! new.
//!
//! A snapshot is a journal entry like any other, `STORE/journal/NNNNNNNNNNNN` written with a
//! create-only put (so the same fencing holds: a coordinator that has been superseded cannot
//! write one, and finds its entry taken), whose first line is a [`Header`] instead of a
//! record. It stands for every entry before it: replay reads entries from the newest back to
//! the latest snapshot and ignores anything older. Once it is written, the entries before it
//! are deleted; a crash in between leaves them to be ignored and deleted by the next leader,
//! so the order of the two steps is all the crash safety needed.
//!
//! Its records are those of the entries it covers, per job in their order, with what no
//! longer matters taken out: an ended job keeps its submission, stage starts, task successes
//! (without the map output index, whose objects are deleted) and lost outputs, its end and
//! the mark that its data is deleted; its start of commit goes. Replayed, a snapshot gives
//! the same jobs, states, counters and task successes as the entries it covers.
//!
//! The leader's journal writer keeps the compacted records ([`Compactor`]) as it writes, and
//! writes a snapshot once as many records as the `every` it was started with
//! (`--journal-snapshot-every`, 1,000 by default) have been written since the last one.

use std::collections::BTreeMap;

use quern_api::JobId;
use serde::{Deserialize, Serialize};

use crate::journal::Record;

/// The first line of a snapshot entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// The snapshot format (1).
    pub snapshot: u32,
    /// Jobs in it.
    pub jobs: u64,
    /// Records in it.
    pub records: u64,
}

/// The format [`Header::snapshot`] names.
pub const FORMAT: u32 = 1;

/// The records that rebuild the state, kept compact as records come in.
#[derive(Clone, Debug, Default)]
pub struct Compactor {
    jobs: BTreeMap<JobId, Vec<Record>>,
}

/// The job a record is about.
fn job_of(r: &Record) -> &JobId {
    match r {
        Record::JobSubmitted { id, .. } => id,
        Record::TaskSucceeded { job, .. }
        | Record::StageStarted { job, .. }
        | Record::MapOutputLost { job, .. }
        | Record::JobCommitting { job }
        | Record::JobEnded { job, .. }
        | Record::JobCleaned { job }
        | Record::JobForgotten { job } => job,
    }
}

impl Compactor {
    /// Starts from `records` (a replayed journal).
    pub fn new(records: impl IntoIterator<Item = Record>) -> Self {
        let mut c = Compactor::default();
        c.extend(records);
        c
    }

    /// Takes records in journal order.
    pub fn extend(&mut self, records: impl IntoIterator<Item = Record>) {
        for r in records {
            self.add(r);
        }
    }

    fn add(&mut self, r: Record) {
        if let Record::JobSubmitted { id, .. } = &r {
            self.jobs.insert(id.clone(), vec![r]);
            return;
        }
        // A forgotten job leaves no trace: not even its forgetting need be replayed.
        if let Record::JobForgotten { job } = &r {
            self.jobs.remove(job);
            return;
        }
        // A record of a job never submitted changes nothing at replay: dropped.
        let Some(log) = self.jobs.get_mut(job_of(&r)) else { return };
        let ended = matches!(r, Record::JobEnded { .. });
        log.push(r);
        if ended {
            compact_ended(log);
        }
    }

    /// How many records a snapshot now holds.
    pub fn len(&self) -> usize {
        self.jobs.values().map(Vec::len).sum()
    }

    /// How many jobs a snapshot now holds.
    pub fn jobs(&self) -> usize {
        self.jobs.len()
    }

    /// Whether there is nothing to snapshot.
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// The records of a snapshot, job by job.
    pub fn records(&self) -> impl Iterator<Item = &Record> {
        self.jobs.values().flatten()
    }

    /// A snapshot entry's body: the header line, then one record per line.
    pub fn encode(&self) -> Vec<u8> {
        let header = Header { snapshot: FORMAT, jobs: self.jobs.len() as u64, records: self.len() as u64 };
        let mut body = Vec::new();
        // Serialising plain data cannot fail.
        for line in std::iter::once(serde_json::to_vec(&header)).chain(self.records().map(serde_json::to_vec)).flatten()
        {
            body.extend_from_slice(&line);
            body.push(b'\n');
        }
        body
    }
}

/// What an ended job needs of its records: not its start of commit, and not the index of
/// map outputs that its cleanup deletes (`quern status` and `quern tasks` show neither).
fn compact_ended(log: &mut Vec<Record>) {
    log.retain(|r| !matches!(r, Record::JobCommitting { .. }));
    for r in log.iter_mut() {
        if let Record::TaskSucceeded { output: Some(o), .. } = r {
            o.segments = Vec::new();
        }
    }
}
