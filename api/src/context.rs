//! What map functions write to ([`MapContext`]) and what every task may ask about itself
//! ([`TaskInfo`]).

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash};

use crate::counters::Counters;
use crate::data::{Data, Encode};
use crate::ids::{AttemptId, JobId, TaskId, TaskKind, WorkerId};
use crate::job::Combiner;

/// Which task attempt user code runs in, and on which worker: for logs, side files named per
/// attempt, or counters per task. Map and output contexts hand it out ([`MapContext::task`],
/// [`crate::OutputContext::task`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TaskInfo {
    /// The attempt (its task, and the task's job).
    pub attempt: AttemptId,
    /// The worker running it.
    pub worker: WorkerId,
}

impl TaskInfo {
    /// Attempt `attempt` on `worker`.
    pub fn new(attempt: AttemptId, worker: WorkerId) -> Self {
        TaskInfo { attempt, worker }
    }

    /// A stand-in for code run outside a cluster (unit tests of a job): attempt 1 of map 0
    /// of job `job_0_0000` on worker `worker_0_0000`.
    pub fn local() -> Self {
        let task = TaskId { job: JobId::new(0, 0), kind: TaskKind::Map, index: 0 };
        TaskInfo { attempt: AttemptId { task, attempt: 1 }, worker: WorkerId::new(0, 0) }
    }

    /// The job.
    pub fn job(&self) -> &JobId {
        &self.attempt.task.job
    }

    /// The task.
    pub fn task(&self) -> &TaskId {
        &self.attempt.task
    }
}

pub(crate) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<rustc_hash::FxHasher>>;

/// Where encoded map output goes; implemented by the worker.
pub trait PairSink {
    /// Receives one encoded pair.
    fn push(&mut self, key: &[u8], value: &[u8]);
}

pub(crate) enum MapMode<'s, K, V> {
    /// Encode every pair straight into the sink.
    Direct { sink: &'s mut dyn PairSink, kbuf: Vec<u8>, vbuf: Vec<u8> },
    /// Pre-aggregate in memory; flushed to the sink when the run ends.
    Combining { table: FastMap<K, V>, combiner: &'s Combiner<'s, V> },
}

/// What a map function writes to.
pub struct MapContext<'s, K, V> {
    pub(crate) mode: MapMode<'s, K, V>,
    pub(crate) emitted: u64,
    pub(crate) counters: &'s mut Counters,
    pub(crate) task: &'s TaskInfo,
    /// In skipping mode, one record's pairs wait here until its map call returns normally.
    pub(crate) staging: Option<Vec<(K, V)>>,
}

impl<'s, K: Data + Hash + Eq, V: Data> MapContext<'s, K, V> {
    pub(crate) fn new(mode: MapMode<'s, K, V>, counters: &'s mut Counters, task: &'s TaskInfo) -> Self {
        MapContext { mode, emitted: 0, counters, task, staging: None }
    }

    /// Emits a pair, the key borrowed (`&str` for a `String` key, `&[u8]` for `Vec<u8>`, or
    /// `&key`): without a combiner it is encoded straight from the borrow, and with one a key
    /// already in the combine table costs no allocation either.
    pub fn emit<Q>(&mut self, key: &Q, value: V)
    where
        K: Borrow<Q>,
        Q: ?Sized + Hash + Eq + Encode + ToOwned<Owned = K>,
    {
        if let Some(staged) = &mut self.staging {
            staged.push((key.to_owned(), value));
            return;
        }
        self.emitted += 1;
        match &mut self.mode {
            MapMode::Direct { sink, kbuf, vbuf } => {
                kbuf.clear();
                vbuf.clear();
                key.encode_into(kbuf);
                value.encode(vbuf);
                sink.push(kbuf, vbuf);
            }
            MapMode::Combining { table, combiner } => match table.get_mut(key) {
                Some(acc) => combiner.call(acc, value),
                None => {
                    table.insert(key.to_owned(), value);
                }
            },
        }
    }

    /// Emits a pair whose key the caller owns already (no copy is made of it).
    pub fn emit_owned(&mut self, key: K, value: V) {
        if let Some(staged) = &mut self.staging {
            staged.push((key, value));
            return;
        }
        self.emitted += 1;
        match &mut self.mode {
            MapMode::Direct { sink, kbuf, vbuf } => {
                kbuf.clear();
                vbuf.clear();
                key.encode(kbuf);
                value.encode(vbuf);
                sink.push(kbuf, vbuf);
            }
            MapMode::Combining { table, combiner } => match table.get_mut(&key) {
                Some(acc) => combiner.call(acc, value),
                None => {
                    table.insert(key, value);
                }
            },
        }
    }

    /// Adds `n` to a user-defined counter.
    pub fn count(&mut self, counter: &str, n: i64) {
        self.counters.add(counter, n);
    }

    /// The task attempt this map runs in.
    pub fn task(&self) -> &TaskInfo {
        self.task
    }
}
