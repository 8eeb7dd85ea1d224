//! Map execution: one split in, one shuffle object out, on all cores.
//!
//! The split's records are cut into chunks (at line or record boundaries, see
//! [`crate::input`]); rayon maps the chunks in parallel (each with its own combine table when the job combines), every pair going to its
//! reduce partition's buffer. Then each partition is sorted by key bytes, combined across
//! chunks, and encoded as one segment of the shuffle object (see [`crate::shuffle`]). A job
//! without reducers skips all that: its map writes the task's part in input order
//! ([`map_only_split`]).

use std::sync::atomic::{AtomicU64, Ordering};

use quern_api::context::PairSink;
use quern_api::counters::names;
use quern_api::{Counters, DynJob, MapOptions, PartWriter, Records, TaskInfo, pb};

use rayon::prelude::*;

use crate::error::TaskError;
use crate::shuffle::{Codec, checksum, encode_segment};
use quern_api::input::Input;

/// Encoded pairs in one flat buffer: cheap to fill, cheap to sort by index.
#[derive(Default)]
pub(crate) struct PairBuf {
    data: Vec<u8>,
    idx: Vec<(usize, usize, usize)>,
}

impl PairSink for PairBuf {
    fn push(&mut self, k: &[u8], v: &[u8]) {
        self.idx.push((self.data.len(), k.len(), v.len()));
        self.data.extend_from_slice(k);
        self.data.extend_from_slice(v);
    }
}

impl PairBuf {
    fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.idx.iter().map(|&(o, k, v)| (&self.data[o..o + k], &self.data[o + k..o + k + v]))
    }
}

/// Routes pairs to partition buffers.
struct Partitioned<'j> {
    job: &'j dyn DynJob,
    reducers: u32,
    bufs: Vec<PairBuf>,
    bad_partition: Option<u32>,
}

impl PairSink for Partitioned<'_> {
    fn push(&mut self, key: &[u8], value: &[u8]) {
        let p = if self.reducers == 1 { 0 } else { self.job.partition(key, self.reducers) };
        match self.bufs.get_mut(p as usize) {
            Some(buf) => buf.push(key, value),
            None => self.bad_partition = Some(p),
        }
    }
}

/// What a map attempt produced.
pub struct MapResult {
    /// The shuffle object's bytes.
    pub object: Vec<u8>,
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

/// The parts of a map run that every chunk shares.
struct Run<'a> {
    job: &'a dyn DynJob,
    input: &'a Input,
    source: &'a str,
    url: &'a str,
    task: &'a TaskInfo,
    opts: MapOptions,
    progress: &'a AtomicU64,
}

/// Maps the chunks of `input` in parallel, each into its own target from `make`: text as
/// blocks of whole lines, other formats record by record.
fn map_chunks<T: ChunkTarget>(run: &Run<'_>, make: impl Fn() -> T + Sync) -> Result<Vec<(T, Counters)>, TaskError> {
    // One chunk per thread: every chunk ends with one pair per distinct key it saw (its
    // combine table), and those pairs are what the sort below pays for, so fewer, larger
    // chunks shuffle less. Tasks running side by side keep the threads busy.
    let pieces = rayon::current_num_threads();
    let Run { job, input, source, url, task, opts, progress } = *run;
    input
        .chunks(pieces)
        .into_par_iter()
        .map(|range| {
            let mut target = make();
            let mut counters = Counters::new();
            let mut mapped = Counters::new();
            match input.block(range.clone(), source, url, &mut counters) {
                Some(block) => target.map(job, Records::Block(&block), &mut mapped, task, opts)?,
                None => input.with_records(range, source, url, &mut counters, |records| {
                    target.map(job, Records::Each(records), &mut mapped, task, opts)
                })?,
            }
            counters.merge(&mapped);
            // A chunk mapped is progress the coordinator's task timeout sees.
            progress.fetch_add(1, Ordering::Relaxed);
            Ok((target, counters))
        })
        .collect()
}

/// Maps `input` (a split's records) into one shuffle object partitioned for `reducers`, its
/// segments compressed with `codec`.
/// `source` is the input object's base name, `url` its URL. With `skip_bad_records`, records on which the
/// map function panics are skipped and counted.
#[allow(clippy::too_many_arguments)]
pub fn map_split(
    job: &dyn DynJob,
    input: &Input,
    (source, url): (&str, &str),
    task: &TaskInfo,
    (reducers, codec): (u32, Codec),
    skip_bad_records: bool,
    progress: &AtomicU64,
) -> Result<MapResult, TaskError> {
    let opts = MapOptions::skipping(skip_bad_records);
    let make = || Partitioned {
        job,
        reducers,
        bufs: (0..reducers).map(|_| PairBuf::default()).collect(),
        bad_partition: None,
    };
    let mapped = map_chunks(&Run { job, input, source, url, task, opts, progress }, make)?;
    if let Some(p) = mapped.iter().find_map(|(s, _)| s.bad_partition) {
        return Err(TaskError::User(format!("partitioner returned {p} for {reducers} reducers")));
    }
    let mut sinks = Vec::with_capacity(mapped.len());
    let mut counters = Counters::new();
    for (sink, c) in mapped {
        counters.merge(&c);
        sinks.push(sink);
    }

    let combiner = job.has_combiner();
    let encoded: Vec<Result<(Vec<u8>, u64), TaskError>> = (0..reducers as usize)
        .into_par_iter()
        .map(|p| {
            let mut keyed: Vec<(u64, &[u8], &[u8])> =
                sinks.iter().flat_map(|s| s.bufs[p].iter()).map(|(k, v)| (key_prefix(k), k, v)).collect();
            // Stable, so values of one key keep their map order: output is deterministic.
            // Most comparisons end at the 8-byte prefix, without a memcmp.
            keyed.par_sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(b.1)));
            let pairs: Vec<(&[u8], &[u8])> = keyed.into_iter().map(|(_, k, v)| (k, v)).collect();
            if !combiner {
                let n = pairs.len() as u64;
                return Ok((encode_segment(pairs.into_iter(), codec)?, n));
            }
            let combined = combine_sorted(job, &pairs)?;
            let n = combined.idx.len() as u64;
            Ok((encode_segment(combined.iter().collect::<Vec<_>>().into_iter(), codec)?, n))
        })
        .collect();

    let mut object = Vec::new();
    let mut segments = Vec::with_capacity(reducers as usize);
    let mut written = 0u64;
    for e in encoded {
        let (bytes, records) = e?;
        segments.push(pb::Segment {
            offset: object.len() as u64,
            length: bytes.len() as u64,
            crc32: checksum(&bytes),
            records,
        });
        written += records;
        object.extend_from_slice(&bytes);
    }
    counters.add(names::MAP_INPUT_BYTES, input.len_bytes() as i64);
    counters.add(names::MAP_OUTPUT_BYTES, object.len() as i64);
    counters.add(names::SPILLED_RECORDS, written as i64);
    if combiner {
        counters.add(names::COMBINE_OUTPUT_RECORDS, written as i64);
    }
    Ok(MapResult { object, segments, counters })
}

/// Maps `input` for a job without reducers straight into the task's output, in input order.
pub fn map_only_split(
    job: &dyn DynJob,
    input: &Input,
    (source, url): (&str, &str),
    task: &TaskInfo,
    skip_bad_records: bool,
    progress: &AtomicU64,
) -> Result<(PartWriter, Counters), TaskError> {
    let opts = MapOptions::skipping(skip_bad_records);
    let mapped = map_chunks(&Run { job, input, source, url, task, opts, progress }, Part::default)?;
    let mut out = PartWriter::new();
    let mut counters = Counters::new();
    for (part, c) in mapped {
        out.append(part.0);
        counters.merge(&c);
    }
    counters.add(names::MAP_INPUT_BYTES, input.len_bytes() as i64);
    Ok((out, counters))
}

/// The first 8 bytes of a key, zero-padded, as a big-endian number: comparing prefixes
/// orders keys as comparing the keys does, except that equal prefixes need the full keys.
pub(crate) fn key_prefix(key: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = key.len().min(8);
    b[..n].copy_from_slice(&key[..n]);
    u64::from_be_bytes(b)
}

/// Merges runs of equal keys in sorted `pairs` through the job's combiner.
fn combine_sorted(job: &dyn DynJob, pairs: &[(&[u8], &[u8])]) -> Result<PairBuf, TaskError> {
    let mut out = PairBuf::default();
    job.combine_sorted(pairs, &mut out)?;
    Ok(out)
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
