//! Map execution: one split in, one shuffle object out, on all cores.
//!
//! The split's owned lines are cut into chunks at line boundaries; rayon maps the chunks in
//! parallel (each with its own combine table when the job combines), every pair going to its
//! reduce partition's buffer. Then each partition is sorted by key bytes, combined across
//! chunks, and encoded as one segment of the shuffle object (see [`crate::shuffle`]).

use std::borrow::Cow;

use quern_api::counters::names;
use quern_api::job::{DynJob, PairSink, TextRecord};
use quern_api::split::{chunk_at_lines, lines, owned_range};
use quern_api::{Counters, pb};
use rayon::prelude::*;

use crate::error::TaskError;
use crate::shuffle::{checksum, encode_segment};

/// Encoded pairs in one flat buffer: cheap to fill, cheap to sort by index.
#[derive(Default)]
pub(crate) struct PairBuf {
    data: Vec<u8>,
    idx: Vec<(usize, usize, usize)>,
}

impl PairBuf {
    fn push(&mut self, k: &[u8], v: &[u8]) {
        self.idx.push((self.data.len(), k.len(), v.len()));
        self.data.extend_from_slice(k);
        self.data.extend_from_slice(v);
    }

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

/// Maps the split `[start, end)` whose bytes from `start` on are `data` (see
/// [`quern_api::split::owned_range`]). `source` is the input object's base name. With
/// `skip_bad_records`, records on which the map function panics are skipped and counted.
pub fn map_split(
    job: &dyn DynJob,
    data: &[u8],
    start: u64,
    end: u64,
    source: &str,
    reducers: u32,
    skip_bad_records: bool,
) -> Result<MapResult, TaskError> {
    let owned = owned_range(data, start, end);
    let base = start + owned.start as u64;
    let bytes = &data[owned.clone()];
    let pieces = rayon::current_num_threads() * 4;
    let chunks = chunk_at_lines(bytes, pieces);

    let mapped: Vec<Result<(Partitioned<'_>, Counters), TaskError>> = chunks
        .par_iter()
        .map(|range| {
            let chunk = &bytes[range.clone()];
            let mut sink = Partitioned {
                job,
                reducers,
                bufs: (0..reducers).map(|_| PairBuf::default()).collect(),
                bad_partition: None,
            };
            let mut counters = Counters::new();
            let text = String::from_utf8_lossy(chunk);
            if let Cow::Owned(_) = &text {
                let bad = lines(chunk).filter(|(_, l)| std::str::from_utf8(l).is_err()).count();
                counters.add(names::MALFORMED_INPUT_LINES, bad as i64);
            }
            // Lossy decoding keeps every '\n' and '\r', so lines of the decoded text match the
            // raw lines one to one; offsets come from the raw bytes.
            let chunk_base = base + range.start as u64;
            let mut records = lines(chunk).zip(lines(text.as_bytes())).map(|((off, _), (_, l))| TextRecord {
                source,
                offset: chunk_base + off as u64,
                line: std::str::from_utf8(l).unwrap_or(""),
            });
            job.map_records(&mut records, &mut sink, &mut counters, skip_bad_records)
                .map_err(|e| TaskError::User(e.0))?;
            if let Some(p) = sink.bad_partition {
                return Err(TaskError::User(format!("partitioner returned {p} for {reducers} reducers")));
            }
            Ok((sink, counters))
        })
        .collect();

    let mut sinks = Vec::with_capacity(mapped.len());
    let mut counters = Counters::new();
    for m in mapped {
        let (sink, c) = m?;
        counters.merge(&c);
        sinks.push(sink);
    }

    let combiner = job.has_combiner();
    let encoded: Vec<Result<(Vec<u8>, u64), TaskError>> = (0..reducers as usize)
        .into_par_iter()
        .map(|p| {
            let mut pairs: Vec<(&[u8], &[u8])> = sinks.iter().flat_map(|s| s.bufs[p].iter()).collect();
            // Stable, so values of one key keep their map order: output is deterministic.
            pairs.par_sort_by(|a, b| a.0.cmp(b.0));
            if !combiner {
                let n = pairs.len() as u64;
                return Ok((encode_segment(pairs.into_iter())?, n));
            }
            let combined = combine_sorted(job, &pairs)?;
            let n = combined.idx.len() as u64;
            Ok((encode_segment(combined.iter().collect::<Vec<_>>().into_iter())?, n))
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
    counters.add(names::MAP_INPUT_BYTES, bytes.len() as i64);
    counters.add(names::MAP_OUTPUT_BYTES, object.len() as i64);
    if combiner {
        counters.add(names::COMBINE_OUTPUT_RECORDS, written as i64);
    }
    Ok(MapResult { object, segments, counters })
}

/// Merges runs of equal keys in sorted `pairs` through the job's combiner.
fn combine_sorted(job: &dyn DynJob, pairs: &[(&[u8], &[u8])]) -> Result<PairBuf, TaskError> {
    let mut out = PairBuf::default();
    let mut value = Vec::new();
    let mut i = 0;
    while i < pairs.len() {
        let key = pairs[i].0;
        let mut j = i + 1;
        while j < pairs.len() && pairs[j].0 == key {
            j += 1;
        }
        if j - i == 1 {
            out.push(key, pairs[i].1);
        } else {
            value.clear();
            job.combine_encoded(&mut pairs[i..j].iter().map(|p| p.1), &mut value).map_err(|e| TaskError::User(e.0))?;
            out.push(key, &value);
        }
        i = j;
    }
    Ok(out)
}
