//! A task's memory budget (`--task-memory`, Hadoop's `mapreduce.task.io.sort.mb`) and the
//! map side's spilling: pairs are buffered up to a share of the budget; a full buffer is
//! sorted (and combined, when the job combines) per partition and written to a local file
//! as a sorted run, a *spill*, in the shuffle format. [`crate::map`] merges the spills at
//! the end (see [`crate::merge`]).
//!
//! Spills live in a directory of the attempt's own ([`attempt_dir`]) that goes with the
//! attempt, however it ends.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;

use quern_api::DynJob;
use quern_api::context::PairSink;
use rayon::prelude::*;
use tempfile::{TempDir, TempPath};

use crate::error::TaskError;
use crate::map::key_prefix;
use crate::merge::SortedRun;
use crate::shuffle::{Codec, RUN_BATCH_BYTES, SegmentEncoder, SegmentInfo, ShuffleError};

/// What one buffered pair costs beyond its key and value bytes: its index entry, and its
/// entry in the vector the buffer is sorted through.
pub const PAIR_OVERHEAD: usize = 64;

/// The memory one running attempt may use for its buffers: map output buffered before it
/// spills, fetched shuffle segments, runs open in a merge, output buffered before it is
/// written. A worker running S slots uses up to S times as much (plus its input splits, and
/// whatever the job's own code holds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskMemory(usize);

impl TaskMemory {
    /// The least budget accepted (for tests that want many spills).
    pub const MIN: u64 = 64 << 10;
    /// The default.
    pub const DEFAULT: u64 = 512 << 20;

    /// A budget of `bytes` (at least [`TaskMemory::MIN`]).
    pub fn new(bytes: u64) -> Self {
        TaskMemory(usize::try_from(bytes.max(Self::MIN)).unwrap_or(usize::MAX))
    }

    /// The budget in bytes.
    pub fn bytes(self) -> usize {
        self.0
    }

    /// Keys and values per record batch of spills and map outputs: what a reader holds per
    /// open run.
    pub fn batch_bytes(self) -> usize {
        (self.0 / 64).clamp(4 << 10, RUN_BATCH_BYTES)
    }

    /// Runs one merge may have open when `parallel` merges share a quarter of the budget:
    /// each holds a decoded batch and a read buffer.
    pub fn merge_factor(self, parallel: usize) -> usize {
        let per_run = 2 * self.batch_bytes() + (64 << 10);
        (self.0 / 4 / parallel.max(1) / per_run).clamp(2, 512)
    }
}

impl Default for TaskMemory {
    fn default() -> Self {
        TaskMemory::new(Self::DEFAULT)
    }
}

/// A new directory for one attempt's local files under `root` (the system's temporary
/// directory when None); it is removed when the last holder drops it, also when the attempt
/// fails or panics.
pub fn attempt_dir(root: Option<&Path>) -> std::io::Result<Arc<TempDir>> {
    let b = tempfile::Builder::new()
        .prefix("quern-spill-")
        .tempdir_in(root.map_or_else(std::env::temp_dir, Path::to_path_buf));
    b.map(Arc::new)
}

/// Encoded pairs in one flat buffer: cheap to fill, cheap to sort by index.
#[derive(Default)]
pub struct PairBuf {
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
    /// The pairs in the order pushed.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.idx.iter().map(|&(o, k, v)| (&self.data[o..o + k], &self.data[o + k..o + k + v]))
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.idx.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.idx.is_empty()
    }

    /// Bytes of keys and values.
    pub fn bytes(&self) -> usize {
        self.data.len()
    }

    /// The key pushed last.
    pub fn last_key(&self) -> Option<&[u8]> {
        self.idx.last().map(|&(o, k, _)| &self.data[o..o + k])
    }

    /// Forgets the pairs, keeping no memory.
    fn clear(&mut self) {
        *self = PairBuf::default();
    }
}

/// Sorts the pairs of `bufs` by key (stably: a key's values keep their order across and
/// within the buffers), combines runs of equal keys when `combine`, and feeds the result to
/// `out`; returns the number of pairs fed.
pub fn sort_pairs<'b>(
    job: &dyn DynJob,
    bufs: impl Iterator<Item = &'b PairBuf>,
    combine: bool,
    mut out: impl FnMut(&[u8], &[u8]) -> Result<(), ShuffleError>,
) -> Result<u64, TaskError> {
    let mut keyed: Vec<(u64, &[u8], &[u8])> = bufs.flat_map(|b| b.iter()).map(|(k, v)| (key_prefix(k), k, v)).collect();
    // Most comparisons end at the 8-byte prefix, without a memcmp.
    keyed.par_sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(b.1)));
    let pairs: Vec<(&[u8], &[u8])> = keyed.into_iter().map(|(_, k, v)| (k, v)).collect();
    if !combine {
        for (k, v) in &pairs {
            out(k, v)?;
        }
        return Ok(pairs.len() as u64);
    }
    let mut combined = PairBuf::default();
    job.combine_sorted(&pairs, &mut combined)?;
    for (k, v) in combined.iter() {
        out(k, v)?;
    }
    Ok(combined.len() as u64)
}

/// One spill file: a segment per partition.
pub struct Spill {
    path: Arc<TempPath>,
    /// (offset, segment) of each partition.
    segments: Vec<(u64, SegmentInfo)>,
}

impl Spill {
    /// Partition `p`'s run.
    pub fn run(&self, p: usize) -> Option<SortedRun> {
        let (offset, s) = self.segments.get(p)?;
        Some(SortedRun::file(self.path.clone(), *offset, s.length, s.records))
    }

    /// Pairs in it.
    pub fn records(&self) -> u64 {
        self.segments.iter().map(|(_, s)| s.records).sum()
    }
}

/// Where one chunk's pairs go: partition buffers that spill to `dir` when they hold more
/// than `share` bytes. A pair push cannot fail, so a failure is kept for the end of the chunk.
pub struct Spiller<'a> {
    job: &'a dyn DynJob,
    reducers: u32,
    bufs: Vec<PairBuf>,
    used: usize,
    share: usize,
    dir: &'a Path,
    batch_bytes: usize,
    combine: bool,
    /// The spills written, in order.
    pub spills: Vec<Spill>,
    /// A partition the job's partitioner returned out of range.
    pub bad_partition: Option<u32>,
    /// Why spilling failed.
    pub error: Option<TaskError>,
}

impl<'a> Spiller<'a> {
    /// A chunk's buffers, spilling to `dir` beyond `share` bytes.
    pub fn new(job: &'a dyn DynJob, reducers: u32, share: usize, dir: &'a Path, memory: TaskMemory) -> Self {
        Spiller {
            job,
            reducers,
            bufs: (0..reducers).map(|_| PairBuf::default()).collect(),
            used: 0,
            share,
            dir,
            batch_bytes: memory.batch_bytes(),
            combine: job.has_combiner(),
            spills: Vec::new(),
            bad_partition: None,
            error: None,
        }
    }

    /// The buffered pairs of partition `p`.
    pub fn buffered(&self, p: usize) -> Option<&PairBuf> {
        self.bufs.get(p)
    }

    /// Whether any pair is buffered.
    pub fn has_buffered(&self) -> bool {
        self.used > 0
    }

    /// Writes the buffered pairs as one more spill.
    pub fn spill(&mut self) -> Result<(), TaskError> {
        let io = |e: std::io::Error| TaskError::Shuffle(e.into());
        let (file, path) = tempfile::NamedTempFile::new_in(self.dir).map_err(io)?.into_parts();
        let mut w = BufWriter::with_capacity(64 << 10, file);
        let mut segments = Vec::with_capacity(self.bufs.len());
        let mut offset = 0u64;
        for buf in &self.bufs {
            let mut enc = SegmentEncoder::new(&mut w, self.batch_bytes, Codec::None);
            sort_pairs(self.job, std::iter::once(buf), self.combine, |k, v| enc.push(k, v))?;
            let (_, info) = enc.finish()?;
            segments.push((offset, info));
            offset += info.length;
        }
        w.flush().map_err(io)?;
        let _: File = w.into_inner().map_err(|e| io(e.into_error()))?;
        self.spills.push(Spill { path: Arc::new(path), segments });
        self.bufs.iter_mut().for_each(PairBuf::clear);
        self.used = 0;
        Ok(())
    }
}

impl PairSink for Spiller<'_> {
    fn push(&mut self, key: &[u8], value: &[u8]) {
        if self.error.is_some() {
            return;
        }
        let p = if self.reducers == 1 { 0 } else { self.job.partition(key, self.reducers) };
        match self.bufs.get_mut(p as usize) {
            Some(buf) => buf.push(key, value),
            None => {
                self.bad_partition = Some(p);
                return;
            }
        }
        self.used += key.len() + value.len() + PAIR_OVERHEAD;
        if self.used >= self.share
            && let Err(e) = self.spill()
        {
            self.error = Some(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::sync::atomic::AtomicU64;

    use quern_api::counters::names;
    use quern_api::format::ObjectFormat;
    use quern_api::input::Input;
    use quern_api::runner::JobRunner;
    use quern_api::{Combiner, Job, JobError, MapContext, OutputContext, Params, Record, TaskInfo};

    use super::*;
    use crate::map::{Inputs, MapResult, map_split};
    use crate::shuffle::decode_segment;

    /// Word count with its combiner; without, a list of where each word is.
    struct Words(bool);
    impl Job for Words {
        type Key = String;
        type Value = u64;
        fn map(&self, rec: &Record<'_>, ctx: &mut MapContext<'_, String, u64>) -> Result<(), JobError> {
            // Without the combiner, each value says where it came from: the order of a key's
            // values shows.
            for w in rec.line.split_whitespace() {
                ctx.emit(w, if self.0 { 1 } else { rec.offset });
            }
            Ok(())
        }
        fn combiner(&self) -> Option<Combiner<'_, u64>> {
            self.0.then(Combiner::sum)
        }
        fn reduce(
            &self,
            k: String,
            vs: &mut dyn Iterator<Item = u64>,
            out: &mut OutputContext<'_>,
        ) -> Result<(), JobError> {
            out.emit(k, vs.sum::<u64>());
            Ok(())
        }
    }

    fn run(job: &dyn DynJob, input: Input, memory: u64, dir: &Path) -> MapResult {
        run_all(job, &mut std::iter::once(Ok(input)), memory, dir)
    }

    fn run_all(job: &dyn DynJob, inputs: &mut Inputs<'_>, memory: u64, dir: &Path) -> MapResult {
        let task = TaskInfo::local();
        let progress = AtomicU64::new(0);
        map_split(
            job,
            inputs,
            ("in", "file:///in"),
            &task,
            (3, Codec::Lz4),
            false,
            &progress,
            (TaskMemory::new(memory), dir),
        )
        .unwrap()
    }

    /// Every partition's pairs, decoded from the object.
    fn partitions(r: &MapResult) -> Vec<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut object = Vec::new();
        r.object.reader().unwrap().read_to_end(&mut object).unwrap();
        assert_eq!(object.len() as u64, r.object.len());
        r.segments
            .iter()
            .map(|s| {
                let bytes = bytes::Bytes::copy_from_slice(&object[s.offset as usize..(s.offset + s.length) as usize]);
                let run = decode_segment(bytes, s).unwrap();
                let mut pos = run.first_pos();
                let mut pairs = Vec::new();
                while let Some((b, i)) = pos {
                    let (k, v) = run.get(b, i).unwrap();
                    pairs.push((k.to_vec(), v.to_vec()));
                    pos = run.next_pos(b, i);
                }
                pairs
            })
            .collect()
    }

    #[test]
    fn a_tiny_budget_spills_many_runs_and_merges_them_into_what_memory_gives() {
        // 40k words from a vocabulary of 3,000: every spill holds most keys again.
        let text: String =
            (0..40_000u64).map(|i| format!("w{}{}", (i * 7919) % 3000, if i % 9 == 8 { "\n" } else { " " })).collect();
        let input = || Input::decode(ObjectFormat::Text(None), bytes::Bytes::from(text.clone()), 0, u64::MAX).unwrap();
        let dir = tempfile::tempdir().unwrap();
        for combine in [true, false] {
            let job = JobRunner::new(Words(combine), &Params::default()).unwrap();
            let whole = run(&job, input(), 1 << 30, dir.path());
            let tiny = run(&job, input(), TaskMemory::MIN, dir.path());
            assert_eq!(whole.counters.get(names::MAP_SPILLS), 0, "{:?}", whole.counters);
            let spills = tiny.counters.get(names::MAP_SPILLS);
            assert!(spills > 20, "combine {combine}: {spills} spills");
            assert!(tiny.counters.get(names::MERGE_PASSES) > 0, "{:?}", tiny.counters);
            let expected = partitions(&whole);
            assert_eq!(partitions(&tiny), expected, "combine {combine}");
            // Against a plain sort: each partition is sorted, and combined when combining.
            for pairs in &expected {
                assert!(pairs.windows(2).all(|w| if combine { w[0].0 < w[1].0 } else { w[0].0 <= w[1].0 }));
            }
            let total: usize = expected.iter().map(Vec::len).sum();
            assert_eq!(total, if combine { 3000 } else { 40_000 });
            let spilled = |r: &MapResult| r.counters.get(names::SPILLED_RECORDS);
            assert!(spilled(&tiny) > spilled(&whole), "spilled records count every write");
            drop(tiny);
            assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "no spill outlives its run");
        }
    }

    #[test]
    fn a_stream_of_blocks_maps_to_the_object_the_whole_input_gives() {
        use quern_api::input::stream::{BlockCut, Blocks};
        use quern_api::split::Compression;
        let text: String =
            (0..30_000u64).map(|i| format!("w{}{}", (i * 7919) % 2000, if i % 7 == 6 { "\n" } else { " " })).collect();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, text.as_bytes()).unwrap();
        let gz = gz.finish().unwrap();
        let dir = tempfile::tempdir().unwrap();
        for combine in [true, false] {
            let job = JobRunner::new(Words(combine), &Params::default()).unwrap();
            let whole = run(
                &job,
                Input::decode(ObjectFormat::Text(None), text.clone().into(), 0, u64::MAX).unwrap(),
                1 << 30,
                dir.path(),
            );
            for (memory, block) in [(1 << 30, 1000), (TaskMemory::MIN, 4096), (TaskMemory::MIN, 1 << 20)] {
                let cut = BlockCut::Lines { max_line: 1 << 20 };
                let blocks = Blocks::new(Compression::Gzip, &gz[..], cut, block, u64::MAX);
                let streamed = run_all(&job, &mut blocks.map(|b| Ok(b.unwrap())), memory, dir.path());
                let what = format!("combine {combine}, memory {memory}, blocks of {block}");
                assert!(partitions(&streamed) == partitions(&whole), "{what}");
                for c in [names::MAP_INPUT_BYTES, names::MAP_INPUT_RECORDS, names::MAP_OUTPUT_RECORDS] {
                    assert_eq!(streamed.counters.get(c), whole.counters.get(c), "{c}, {what}");
                }
            }
        }
    }
}
