//! Reduce execution: k-way merge of the sorted runs fetched from every map output (see
//! [`crate::merge`]), grouping by key (or by its grouping prefix, for secondary sort), and
//! the job's reduce over each group, its output written a piece at a time
//! ([`crate::output::PartSink`]).
//!
//! Memory: one decoded batch per open run, the values of the current key group (copied out
//! of their batches), and the output buffered up to the sink's limit.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::AtomicU64;

use quern_api::counters::names;
use quern_api::{Counters, DynJob, OutputContext, PartWriter, TaskInfo};

use crate::error::TaskError;
use crate::merge::{SortedRun, merge};
use crate::output::PartSink;

/// The key group being gathered, and what the reduce made so far.
struct Reducing<'a> {
    job: &'a dyn DynJob,
    task: &'a TaskInfo,
    skip: bool,
    progress: &'a AtomicU64,
    sink: &'a mut PartSink,
    /// Output is handed to the sink once it holds this many bytes.
    flush_at: usize,
    out: PartWriter,
    user: Counters,
    /// The group's first key and the length of its grouping prefix; None before the first.
    key: Option<(Vec<u8>, usize)>,
    /// The group's values, end to end, and where each ends.
    values: Vec<u8>,
    ends: Vec<usize>,
    groups: i64,
    records: i64,
    skipped: i64,
}

impl Reducing<'_> {
    fn feed(&mut self, k: &[u8], v: &[u8]) -> Result<(), TaskError> {
        let same = self
            .key
            .as_ref()
            .is_some_and(|(key, glen)| k.get(..*glen) == Some(&key[..*glen]) && self.job.group_len(k) == *glen);
        if !same {
            self.reduce_group()?;
            self.key = Some((k.to_vec(), self.job.group_len(k)));
        }
        self.values.extend_from_slice(v);
        self.ends.push(self.values.len());
        Ok(())
    }

    /// Reduces the gathered group, if any.
    fn reduce_group(&mut self) -> Result<(), TaskError> {
        let Some((key, _)) = self.key.take() else { return Ok(()) };
        // Every so many key groups is progress the coordinator's task timeout sees.
        if self.groups % 1024 == 0 {
            self.progress.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        self.groups += 1;
        self.records += self.ends.len() as i64;
        let (values, ends) = (&self.values, &self.ends);
        let mut iter = ends.iter().scan(0, |start, &end| {
            let v = &values[*start..end];
            *start = end;
            Some(v)
        });
        if !self.skip {
            let mut ctx = OutputContext::new(&mut self.out, &mut self.user, self.task);
            self.job.reduce_encoded(&key, &mut iter, &mut ctx)?;
        } else {
            let mark = self.out.mark();
            let (job, task) = (self.job, self.task);
            let (out, user) = (&mut self.out, &mut self.user);
            let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
                let mut ctx = OutputContext::new(out, user, task);
                job.reduce_encoded(&key, &mut iter, &mut ctx)
            }));
            match result {
                Ok(r) => r?,
                Err(_) => {
                    self.out.rollback(mark);
                    self.skipped += 1;
                }
            }
        }
        self.values.clear();
        self.ends.clear();
        // Between groups, so a skipped group never has to be taken back from the sink.
        if self.out.as_bytes().len() >= self.flush_at {
            self.sink.write(&std::mem::take(&mut self.out))?;
        }
        Ok(())
    }
}

/// Merges `runs` (each sorted by key), reduces every key group into `sink`, handing it the
/// output every `flush_at` bytes, and returns the reduce counters.
/// With `skip_bad_records`, a key group on which the reduce function panics is skipped (its
/// partial output dropped) and counted in `SKIPPED_RECORDS`.
pub fn reduce_runs(
    job: &dyn DynJob,
    task: &TaskInfo,
    runs: &[SortedRun],
    skip_bad_records: bool,
    (sink, flush_at): (&mut PartSink, usize),
    progress: &AtomicU64,
) -> Result<Counters, TaskError> {
    let mut r = Reducing {
        job,
        task,
        skip: skip_bad_records,
        progress,
        sink,
        flush_at,
        out: PartWriter::new(),
        user: Counters::new(),
        key: None,
        values: Vec::new(),
        ends: Vec::new(),
        groups: 0,
        records: 0,
        skipped: 0,
    };
    merge(runs, |k, v| r.feed(k, v))?;
    r.reduce_group()?;
    let rest = std::mem::take(&mut r.out);
    if rest.records() > 0 {
        r.sink.write(&rest)?;
    }
    let output_records = r.sink.records() as i64;
    let mut counters = Counters::new();
    counters.add(names::REDUCE_INPUT_GROUPS, r.groups);
    counters.add(names::REDUCE_INPUT_RECORDS, r.records);
    counters.add(names::REDUCE_OUTPUT_RECORDS, output_records);
    if r.skipped > 0 {
        counters.add(names::SKIPPED_RECORDS, r.skipped);
    }
    counters.merge(&r.user);
    Ok(counters)
}
