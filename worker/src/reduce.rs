//! Reduce execution: k-way merge of the sorted runs fetched from every map output, grouping
//! by key (or by its grouping prefix, for secondary sort), and the job's reduce over each
//! group.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::AtomicU64;

use quern_api::counters::names;
use quern_api::{Counters, OutputFormat};
use quern_api::{DynJob, OutputContext, PartWriter, TaskInfo};

use crate::error::TaskError;
use crate::shuffle::Run;

/// The head of one run in the merge heap.
struct Head<'a> {
    /// See [`crate::map::key_prefix`].
    prefix: u64,
    key: &'a [u8],
    value: &'a [u8],
    run: usize,
    pos: (usize, usize),
}

impl PartialEq for Head<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Head<'_> {}
impl PartialOrd for Head<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Head<'_> {
    /// By key, then by run: values of a key arrive in map-task order, so output is
    /// deterministic.
    fn cmp(&self, other: &Self) -> Ordering {
        self.prefix.cmp(&other.prefix).then_with(|| self.key.cmp(other.key)).then(self.run.cmp(&other.run))
    }
}

fn head(runs: &[Run], run: usize, pos: Option<(usize, usize)>) -> Option<Head<'_>> {
    let pos = pos?;
    let (key, value) = runs[run].get(pos.0, pos.1)?;
    Some(Head { prefix: crate::map::key_prefix(key), key, value, run, pos })
}

/// Merges `runs` (each sorted by key), reduces every key group, and returns the output part's
/// bytes with the reduce counters.
/// With `skip_bad_records`, a key group on which the reduce function panics is skipped (its
/// partial output dropped) and counted in `SKIPPED_RECORDS`.
pub fn reduce_runs(
    job: &dyn DynJob,
    task: &TaskInfo,
    runs: &[Run],
    skip_bad_records: bool,
    format: OutputFormat,
    progress: &AtomicU64,
) -> Result<(Vec<u8>, Counters), TaskError> {
    let mut heap = BinaryHeap::with_capacity(runs.len());
    for (i, r) in runs.iter().enumerate() {
        if let Some(h) = head(runs, i, r.first_pos()) {
            heap.push(Reverse(h));
        }
    }
    let mut out = PartWriter::new();
    let mut counters = Counters::new();
    let mut user = Counters::new();
    let (mut groups, mut records, mut skipped) = (0i64, 0i64, 0i64);
    let mut values: Vec<&[u8]> = Vec::new();
    while let Some(Reverse(first)) = heap.pop() {
        // Every so many key groups is progress the coordinator's task timeout sees.
        if groups % 1024 == 0 {
            progress.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let key = first.key;
        // The group: every following key with the same grouping prefix (secondary sort).
        let group = &key[..job.group_len(key)];
        values.clear();
        let mut next = Some(first);
        while let Some(h) = next.take() {
            values.push(h.value);
            if let Some(n) = head(runs, h.run, runs[h.run].next_pos(h.pos.0, h.pos.1)) {
                heap.push(Reverse(n));
            }
            if heap.peek().is_some_and(|Reverse(top)| {
                top.key.get(..group.len()) == Some(group) && job.group_len(top.key) == group.len()
            }) {
                next = heap.pop().map(|Reverse(h)| h);
            }
        }
        groups += 1;
        records += values.len() as i64;
        if !skip_bad_records {
            let mut ctx = OutputContext::new(&mut out, &mut user, task);
            job.reduce_encoded(key, &mut values.iter().copied(), &mut ctx)?;
            continue;
        }
        let mark = out.mark();
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let mut ctx = OutputContext::new(&mut out, &mut user, task);
            job.reduce_encoded(key, &mut values.iter().copied(), &mut ctx)
        }));
        match result {
            Ok(r) => r?,
            Err(_) => {
                out.rollback(mark);
                skipped += 1;
            }
        }
    }
    counters.add(names::REDUCE_INPUT_GROUPS, groups);
    counters.add(names::REDUCE_INPUT_RECORDS, records);
    counters.add(names::REDUCE_OUTPUT_RECORDS, out.records() as i64);
    if skipped > 0 {
        counters.add(names::SKIPPED_RECORDS, skipped);
    }
    counters.merge(&user);
    let bytes = crate::output::encode(out, format)?;
    counters.add(names::OUTPUT_BYTES, bytes.len() as i64);
    Ok((bytes, counters))
}
