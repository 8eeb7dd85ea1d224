//! Map execution: one split in, one shuffle object out, on all cores.
//!
//! The split's records are cut into chunks (at line or record boundaries, see
//! [`crate::input`]); rayon maps the chunks in parallel (each with its own combine table when the job combines), every pair going to its
//! reduce partition's buffer. Then each partition is sorted by key bytes, combined across
//! chunks, and encoded as one segment of the shuffle object (see [`crate::shuffle`]).
//! Buffers are bounded by the task's memory ([`TaskMemory`]): a chunk whose buffers fill up
//! spills them as a sorted run to local disk ([`crate::spill`]), and the object is then
//! merged from the spills ([`crate::merge`]), combined again across them. A job
//! without reducers skips all that: its map writes the task's part in input order
//! ([`map_only_split`]).
//!
//! A compressed text or fixed-length object is mapped as a stream of blocks
//! ([`quern_api::input::stream`]), each cut into chunks like a split: chunk `i` of every block
//! goes to the same buffers, so the map output is the one the whole object would give.

use std::io::BufWriter;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use quern_api::context::PairSink;
use quern_api::counters::names;
use quern_api::{Counters, DynJob, MapOptions, PartWriter, Records, TaskInfo, pb};

use rayon::prelude::*;
use tempfile::SpooledTempFile;

use crate::blob::Blob;
use crate::error::TaskError;
use crate::merge::{SortedRun, merge, merge_passes};
use crate::output::PartSink;
use crate::shuffle::{Codec, SegmentEncoder, SegmentInfo};
use crate::spill::{PairBuf, Spill, Spiller, TaskMemory, sort_pairs};
use quern_api::input::Input;

/// What a map attempt produced.
pub struct MapResult {
    /// The shuffle object's bytes.
    pub object: Blob,
    /// One index entry per partition.
    pub segments: Vec<pb::Segment>,
    /// Built-in and user counters.
    pub counters: Counters,
}

/// Where a chunk's records go: pairs into a sink, or output records into a part.
trait ChunkTarget: Send {
    fn map(
        &mut self,
        job: &dyn DynJob,
        records: Records<'_, '_>,
        counters: &mut Counters,
        task: &TaskInfo,
        opts: MapOptions,
    ) -> Result<(), quern_api::JobError>;
}

impl<S: PairSink + Send> ChunkTarget for S {
    fn map(
        &mut self,
        job: &dyn DynJob,
        records: Records<'_, '_>,
        counters: &mut Counters,
        task: &TaskInfo,
        opts: MapOptions,
    ) -> Result<(), quern_api::JobError> {
        job.map_records(records, self, counters, task, opts)
    }
}

/// A map-only chunk's output records.
#[derive(Default)]
struct Part(PartWriter);

impl ChunkTarget for Part {
    fn map(
        &mut self,
        job: &dyn DynJob,
        records: Records<'_, '_>,
        counters: &mut Counters,
        task: &TaskInfo,
        opts: MapOptions,
    ) -> Result<(), quern_api::JobError> {
        job.map_to_part(records, &mut self.0, counters, task, opts)
    }
}

/// The records one map task maps, in order: a split's (one [`Input`]), or the blocks of a
/// compressed object decompressed as a stream (see [`quern_api::input::stream`]). An error
/// ends the task.
pub type Inputs<'i> = dyn Iterator<Item = Result<Input, TaskError>> + 'i;

/// The parts of a map run that every chunk shares.
struct Run<'a> {
    job: &'a dyn DynJob,
    source: &'a str,
    url: &'a str,
    task: &'a TaskInfo,
    opts: MapOptions,
    progress: &'a AtomicU64,
}

/// One target per chunk of an input, with the counters of the chunks it mapped. They live
/// for the whole task: chunk `i` of every input (every block of a stream) goes to target `i`.
struct Targets<T, F> {
    targets: Vec<(T, Counters)>,
    make: F,
}

impl<T: ChunkTarget, F: Fn() -> T + Sync> Targets<T, F> {
    fn new(make: F) -> Self {
        Targets { targets: (0..chunk_count()).map(|_| (make(), Counters::new())).collect(), make }
    }

    /// Maps the chunks of `input` in parallel, each into its target: text as blocks of whole
    /// lines, other formats record by record.
    fn map(&mut self, run: &Run<'_>, input: &Input) -> Result<(), TaskError> {
        let Run { job, source, url, task, opts, progress } = *run;
        let chunks = input.chunks(self.targets.len());
        // Cutting at line ends can make a chunk or two more than asked for.
        while self.targets.len() < chunks.len() {
            self.targets.push(((self.make)(), Counters::new()));
        }
        chunks.into_par_iter().zip(self.targets.par_iter_mut()).try_for_each(|(range, (target, counters))| {
            let mut mapped = Counters::new();
            match input.block(range.clone(), source, url, counters) {
                Some(block) => target.map(job, Records::Block(&block), &mut mapped, task, opts)?,
                None => input.with_records(range, source, url, counters, |records| {
                    target.map(job, Records::Each(records), &mut mapped, task, opts)
                })?,
            }
            counters.merge(&mapped);
            // A chunk mapped is progress the coordinator's task timeout sees.
            progress.fetch_add(1, Ordering::Relaxed);
            Ok::<_, TaskError>(())
        })
    }
}

/// Maps `inputs` (a split's records, or a streamed object's blocks) into one shuffle object
/// partitioned for `reducers`. `source` is the input object's base name, `url` its URL. With
/// `skip_bad_records`, records on which the map function panics are skipped and counted.
/// Pairs are buffered within `memory` (half of it, shared by the chunks); beyond, they spill
/// to sorted runs in `dir`, merged at the end.
#[allow(clippy::too_many_arguments)]
pub fn map_split(
    job: &dyn DynJob,
    inputs: &mut Inputs<'_>,
    (source, url): (&str, &str),
    task: &TaskInfo,
    (reducers, codec): (u32, Codec),
    skip_bad_records: bool,
    progress: &AtomicU64,
    (memory, dir): (TaskMemory, &Path),
) -> Result<MapResult, TaskError> {
    let opts = MapOptions::skipping(skip_bad_records);
    // Every chunk's buffers live until the end: together they get half the budget; the rest
    // is for the merge and the object's pieces.
    let share = (memory.bytes() / 2 / chunk_count()).max(1);
    let run = Run { job, source, url, task, opts, progress };
    let mut targets = Targets::new(|| Spiller::new(job, reducers, share, dir, memory));
    // Runs are merged in order, and reducers see a key's values in the order of the runs. A
    // target buffers chunk i of every block, so without a combiner the runs of one block are
    // sealed (spilled, and kept in order) before the next block is mapped: values keep their
    // input order, as when the input is one block. A combiner must be associative and
    // commutative, so a combining job buffers across blocks and spills only when full.
    let seal = !job.has_combiner();
    let mut sealed: Vec<Spill> = Vec::new();
    let mut input_bytes = 0u64;
    for (i, input) in inputs.enumerate() {
        let input = input?;
        if seal && i > 0 {
            seal_runs(&mut targets.targets, &mut sealed)?;
        }
        targets.map(&run, &input)?;
        input_bytes += input.len_bytes();
        check_spillers(&mut targets.targets, reducers)?;
    }
    let mut sinks = Vec::with_capacity(targets.targets.len());
    let mut counters = Counters::new();
    for (sink, c) in targets.targets {
        counters.merge(&c);
        sinks.push(sink);
    }
    let combiner = job.has_combiner();
    let (object, segments) = if sealed.is_empty() && sinks.iter().all(|s| s.spills.is_empty()) {
        in_memory(job, &sinks, (reducers, codec), memory)?
    } else {
        // Every chunk spills its rest too, so that the runs, in chunk order, keep each key's
        // values in map order.
        sinks.par_iter_mut().filter(|s| s.has_buffered()).try_for_each(|s| s.spill())?;
        let spills: Vec<&Spill> = sealed.iter().chain(sinks.iter().flat_map(|s| s.spills.iter())).collect();
        counters.add(names::MAP_SPILLS, spills.len() as i64);
        counters.add(names::SPILLED_RECORDS, spills.iter().map(|s| s.records()).sum::<u64>() as i64);
        merge_spills(job, &spills, (reducers, codec), (memory, dir), &mut counters)?
    };
    let written: u64 = segments.iter().map(|s| s.records).sum();
    counters.add(names::MAP_INPUT_BYTES, input_bytes as i64);
    counters.add(names::MAP_OUTPUT_BYTES, object.len() as i64);
    counters.add(names::SPILLED_RECORDS, written as i64);
    if combiner {
        counters.add(names::COMBINE_OUTPUT_RECORDS, written as i64);
    }
    Ok(MapResult { object, segments, counters })
}

/// Fails on what a chunk's spiller could not report as it happened: a partition out of
/// range, a spill that failed.
fn check_spillers(targets: &mut [(Spiller<'_>, Counters)], reducers: u32) -> Result<(), TaskError> {
    if let Some(p) = targets.iter().find_map(|(s, _)| s.bad_partition) {
        return Err(TaskError::User(format!("partitioner returned {p} for {reducers} reducers")));
    }
    match targets.iter_mut().find_map(|(s, _)| s.error.take()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Spills what every target buffered and moves all their spills, in target order, to the
/// end of `sealed`: the runs of the blocks mapped so far, in input order.
fn seal_runs(targets: &mut [(Spiller<'_>, Counters)], sealed: &mut Vec<Spill>) -> Result<(), TaskError> {
    targets.par_iter_mut().filter(|(s, _)| s.has_buffered()).try_for_each(|(s, _)| s.spill())?;
    for (s, _) in targets.iter_mut() {
        sealed.append(&mut s.spills);
    }
    Ok(())
}

/// The chunks [`Targets::map`] cuts an input into, at most: one per thread. Every chunk ends
/// with one pair per distinct key it saw (its combine table), and those pairs are what the
/// sort pays for, so fewer, larger chunks shuffle less; tasks side by side keep threads busy.
fn chunk_count() -> usize {
    rayon::current_num_threads()
}

/// The shuffle object when nothing spilled: each partition's pairs from every chunk sorted
/// together and encoded in memory.
fn in_memory(
    job: &dyn DynJob,
    sinks: &[Spiller<'_>],
    (reducers, codec): (u32, Codec),
    memory: TaskMemory,
) -> Result<(Blob, Vec<pb::Segment>), TaskError> {
    let combiner = job.has_combiner();
    let encoded: Vec<Result<(Vec<u8>, SegmentInfo), TaskError>> = (0..reducers as usize)
        .into_par_iter()
        .map(|p| {
            let mut enc = SegmentEncoder::new(Vec::new(), memory.batch_bytes(), codec);
            sort_pairs(job, sinks.iter().filter_map(|s| s.buffered(p)), combiner, |k, v| enc.push(k, v))?;
            Ok(enc.finish()?)
        })
        .collect();
    let mut object = Blob::default();
    let mut segments = Vec::with_capacity(reducers as usize);
    for e in encoded {
        let (bytes, info) = e?;
        segments.push(segment(object.len(), info));
        object.push_bytes(bytes.into());
    }
    Ok((object, segments))
}

fn segment(offset: u64, info: SegmentInfo) -> pb::Segment {
    pb::Segment { offset, length: info.length, crc32: info.crc32, records: info.records }
}

/// The shuffle object from spills: each partition's runs merged (in passes when there are
/// more than the budget keeps open) and combined again across runs, into a piece that stays
/// in memory while small.
fn merge_spills(
    job: &dyn DynJob,
    spills: &[&Spill],
    (reducers, codec): (u32, Codec),
    (memory, dir): (TaskMemory, &Path),
    counters: &mut Counters,
) -> Result<(Blob, Vec<pb::Segment>), TaskError> {
    let factor = memory.merge_factor(rayon::current_num_threads());
    let in_memory = memory.bytes() / 4 / reducers.max(1) as usize;
    let batch = memory.batch_bytes();
    let io = |e: std::io::Error| TaskError::Shuffle(e.into());
    let merged: Vec<Result<_, TaskError>> = (0..reducers as usize)
        .into_par_iter()
        .map(|p| {
            let runs: Vec<SortedRun> = spills.iter().filter_map(|s| s.run(p)).collect();
            let (runs, passes) = merge_passes(runs, factor, dir, batch)?;
            let spool = BufWriter::with_capacity(64 << 10, SpooledTempFile::new_in(in_memory, dir));
            let mut enc = SegmentEncoder::new(spool, batch, codec);
            if job.has_combiner() {
                let mut pending = PairBuf::default();
                merge(&runs, |k, v| {
                    // Cut between keys, so a key's values are combined together.
                    if pending.bytes() >= batch && pending.last_key() != Some(k) {
                        combine_into(job, &mut pending, &mut enc)?;
                    }
                    pending.push(k, v);
                    Ok(())
                })?;
                combine_into(job, &mut pending, &mut enc)?;
            } else {
                merge(&runs, |k, v| Ok(enc.push(k, v)?))?;
            }
            let (spool, info) = enc.finish()?;
            Ok((spool.into_inner().map_err(|e| io(e.into_error()))?, info, passes))
        })
        .collect();
    let mut object = Blob::default();
    let mut segments = Vec::with_capacity(reducers as usize);
    for m in merged {
        let (spool, info, passes) = m?;
        segments.push(segment(object.len(), info));
        object.push_spool(spool, info.length);
        counters.add(names::MERGE_PASSES, passes.passes as i64);
        counters.add(names::SPILLED_RECORDS, passes.records as i64);
    }
    Ok((object, segments))
}

/// Combines the sorted pairs of `pending` into `enc` and empties it.
fn combine_into<W: std::io::Write>(
    job: &dyn DynJob,
    pending: &mut PairBuf,
    enc: &mut SegmentEncoder<W>,
) -> Result<(), TaskError> {
    let pairs: Vec<(&[u8], &[u8])> = pending.iter().collect();
    let mut combined = PairBuf::default();
    job.combine_sorted(&pairs, &mut combined)?;
    for (k, v) in combined.iter() {
        enc.push(k, v)?;
    }
    *pending = PairBuf::default();
    Ok(())
}

/// Maps `inputs` for a job without reducers straight into the task's output `part`, in
/// input order: the records of each input (each block of a stream) are written as they are
/// mapped, so the part never has to be in memory whole.
pub fn map_only_split(
    job: &dyn DynJob,
    inputs: &mut Inputs<'_>,
    (source, url): (&str, &str),
    task: &TaskInfo,
    skip_bad_records: bool,
    progress: &AtomicU64,
    part: &mut PartSink,
) -> Result<Counters, TaskError> {
    let opts = MapOptions::skipping(skip_bad_records);
    let run = Run { job, source, url, task, opts, progress };
    let mut targets = Targets::new(Part::default);
    let mut input_bytes = 0u64;
    for input in inputs {
        let input = input?;
        targets.map(&run, &input)?;
        input_bytes += input.len_bytes();
        let mut out = PartWriter::new();
        for (p, _) in &mut targets.targets {
            out.append(std::mem::take(&mut p.0));
        }
        part.write(&out)?;
    }
    let mut counters = Counters::new();
    for (_, c) in &targets.targets {
        counters.merge(c);
    }
    counters.add(names::MAP_INPUT_BYTES, input_bytes as i64);
    Ok(counters)
}

/// The first 8 bytes of a key, zero-padded, as a big-endian number: comparing prefixes
/// orders keys as comparing the keys does, except that equal prefixes need the full keys.
pub(crate) fn key_prefix(key: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = key.len().min(8);
    b[..n].copy_from_slice(&key[..n]);
    u64::from_be_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::key_prefix;

    #[test]
    fn key_prefixes_order_like_the_keys() {
        let keys: [&[u8]; 9] = [b"", b"\0", b"a", b"a\0", b"a\0\x01", b"ab", b"abcdefgh", b"abcdefgh\0", b"b"];
        for a in keys {
            for b in keys {
                let (pa, pb) = (key_prefix(a), key_prefix(b));
                assert!(pa == pb || (pa < pb) == (a < b), "{a:?} {b:?}");
            }
        }
    }
}
