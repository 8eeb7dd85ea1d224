//! K-way merge of sorted runs in bounded memory.
//!
//! A [`SortedRun`] is one segment in the shuffle format (see [`crate::shuffle`]), held in
//! memory or in a local file. [`merge`] reads every run a record batch at a time and yields
//! the pairs in key order, ties in run order: a key's values come out in the order of the
//! runs, which callers keep in map order, so output is deterministic. A run open in a merge
//! costs one decoded batch and a read buffer; [`merge_passes`] first merges consecutive runs
//! into local files until no more than a given number (Hadoop's `io.sort.factor`) remain.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::collections::binary_heap::PeekMut;
use std::fs::File;
use std::io::{BufReader, BufWriter, Cursor, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;

use arrow_array::{Array, BinaryArray};
use bytes::Bytes;
use tempfile::TempPath;

use crate::error::TaskError;
use crate::map::key_prefix;
use crate::shuffle::{Codec, SegmentEncoder, SegmentReader, ShuffleError};

/// Read buffer of a run in a local file.
const READ_BUFFER: usize = 64 << 10;

/// Where a run's bytes are.
#[derive(Clone, Debug)]
pub enum RunBytes {
    /// In memory (a segment fetched whole).
    Memory(Bytes),
    /// A range of a local file, deleted when its last run goes.
    File {
        /// The file.
        path: Arc<TempPath>,
        /// Where the segment starts.
        offset: u64,
        /// Its length.
        len: u64,
    },
}

/// One sorted run: a segment in the shuffle format.
#[derive(Clone, Debug)]
pub struct SortedRun {
    /// Its bytes.
    pub bytes: RunBytes,
    /// Pairs in it.
    pub records: u64,
    /// The map output (map index, attempt) it came from, blamed when it does not decode; None
    /// for a task's own local runs.
    pub origin: Option<(u32, u32)>,
}

impl SortedRun {
    /// A run in a file of its own (from [`tempfile::NamedTempFile::into_temp_path`]).
    pub fn file(path: Arc<TempPath>, offset: u64, len: u64, records: u64) -> Self {
        SortedRun { bytes: RunBytes::File { path, offset, len }, records, origin: None }
    }

    fn open(&self) -> Result<SegmentReader<Box<dyn Read + Send>>, ShuffleError> {
        match &self.bytes {
            RunBytes::Memory(b) => SegmentReader::new(Box::new(Cursor::new(b.clone())), b.is_empty(), self.records),
            RunBytes::File { path, offset, len } => {
                let mut f = File::open(path.as_ref() as &Path)?;
                f.seek(SeekFrom::Start(*offset))?;
                let r = BufReader::with_capacity(READ_BUFFER, f.take(*len));
                SegmentReader::new(Box::new(r), *len == 0, self.records)
            }
        }
    }

    /// The failure a broken run is: its map output's loss, or (a local run) the task's own.
    fn blame(&self, e: ShuffleError) -> TaskError {
        match self.origin {
            Some((map_index, map_attempt)) => {
                TaskError::MapOutputLost { map_index, map_attempt, reason: e.to_string() }
            }
            None => TaskError::Shuffle(e),
        }
    }
}

/// The current pair of one run in the merge heap.
struct Head {
    /// See [`key_prefix`]: most comparisons end here, without a memcmp.
    prefix: u64,
    keys: BinaryArray,
    values: BinaryArray,
    row: usize,
    run: usize,
}

impl Head {
    fn new((keys, values): (BinaryArray, BinaryArray), run: usize) -> Self {
        Head { prefix: key_prefix(keys.value(0)), keys, values, row: 0, run }
    }
    fn key(&self) -> &[u8] {
        self.keys.value(self.row)
    }
}

impl PartialEq for Head {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Head {}
impl PartialOrd for Head {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Head {
    /// By key, then by run.
    fn cmp(&self, other: &Self) -> Ordering {
        self.prefix.cmp(&other.prefix).then_with(|| self.key().cmp(other.key())).then(self.run.cmp(&other.run))
    }
}

/// Feeds the pairs of `runs` (each sorted by key) to `emit` in key order, ties in run order.
pub fn merge(runs: &[SortedRun], mut emit: impl FnMut(&[u8], &[u8]) -> Result<(), TaskError>) -> Result<(), TaskError> {
    let mut readers = Vec::with_capacity(runs.len());
    let mut heap = BinaryHeap::with_capacity(runs.len());
    for (i, run) in runs.iter().enumerate() {
        let mut reader = run.open().map_err(|e| run.blame(e))?;
        if let Some(batch) = reader.next_batch().map_err(|e| run.blame(e))? {
            heap.push(Reverse(Head::new(batch, i)));
        }
        readers.push(reader);
    }
    while let Some(mut top) = heap.peek_mut() {
        let h = &mut top.0;
        emit(h.key(), h.values.value(h.row))?;
        h.row += 1;
        if h.row < h.keys.len() {
            h.prefix = key_prefix(h.key());
            // Dropping `top` moves the head down to its place.
            continue;
        }
        let run = h.run;
        match readers[run].next_batch().map_err(|e| runs[run].blame(e))? {
            Some(batch) => *h = Head::new(batch, run),
            None => {
                PeekMut::pop(top);
            }
        }
    }
    Ok(())
}

/// Merges `runs` into one run in a new file in `dir`, batches of `batch_bytes`.
pub fn merge_to_file(runs: &[SortedRun], dir: &Path, batch_bytes: usize) -> Result<SortedRun, TaskError> {
    let file = tempfile::NamedTempFile::new_in(dir).map_err(|e| TaskError::Shuffle(e.into()))?;
    let (file, path) = file.into_parts();
    // Local runs: not worth compressing.
    let mut enc = SegmentEncoder::new(BufWriter::with_capacity(READ_BUFFER, file), batch_bytes, Codec::None);
    merge(runs, |k, v| Ok(enc.push(k, v)?))?;
    let (mut w, info) = enc.finish()?;
    std::io::Write::flush(&mut w).map_err(|e| TaskError::Shuffle(e.into()))?;
    Ok(SortedRun::file(Arc::new(path), 0, info.length, info.records))
}

/// What intermediate merge passes did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Passes {
    /// Passes made.
    pub passes: u64,
    /// Records written to local files by them.
    pub records: u64,
}

/// Merges consecutive runs of `runs` into local files in `dir` until at most `factor` remain
/// (at least 2), keeping their order.
pub fn merge_passes(
    mut runs: Vec<SortedRun>,
    factor: usize,
    dir: &Path,
    batch_bytes: usize,
) -> Result<(Vec<SortedRun>, Passes), TaskError> {
    let factor = factor.max(2);
    let mut done = Passes::default();
    while runs.len() > factor {
        let mut next = Vec::with_capacity(runs.len().div_ceil(factor));
        for group in runs.chunks(factor) {
            if let [one] = group {
                next.push(one.clone());
                continue;
            }
            let merged = merge_to_file(group, dir, batch_bytes)?;
            done.records += merged.records;
            next.push(merged);
        }
        // The inputs' files go as their runs do.
        runs = next;
        done.passes += 1;
    }
    Ok((runs, done))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shuffle::encode_segment;

    fn memory_run(pairs: &[(Vec<u8>, Vec<u8>)]) -> SortedRun {
        let bytes = encode_segment(pairs.iter().map(|(k, v)| (k.as_slice(), v.as_slice())), Codec::Lz4).unwrap();
        SortedRun { bytes: RunBytes::Memory(Bytes::from(bytes)), records: pairs.len() as u64, origin: Some((3, 1)) }
    }

    fn collect(runs: &[SortedRun]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut got = Vec::new();
        merge(runs, |k, v| {
            got.push((k.to_vec(), v.to_vec()));
            Ok(())
        })
        .unwrap();
        got
    }

    #[test]
    fn merging_in_passes_gives_the_stable_sort_of_all_runs() {
        let dir = tempfile::tempdir().unwrap();
        // 13 runs of keys with many repeats; the value says which run a pair came from.
        let runs: Vec<Vec<(Vec<u8>, Vec<u8>)>> = (0..13u32)
            .map(|r| {
                let mut v: Vec<(Vec<u8>, Vec<u8>)> =
                    (0..200u32).map(|i| (format!("k{:03}", (i * 7 + r) % 50).into_bytes(), vec![r as u8])).collect();
                v.sort_by(|a, b| a.0.cmp(&b.0));
                v
            })
            .collect();
        let mut expected: Vec<(Vec<u8>, Vec<u8>)> = runs.concat();
        expected.sort_by(|a, b| a.0.cmp(&b.0)); // stable: run order within a key
        let sorted: Vec<SortedRun> = runs.iter().map(|r| memory_run(r)).collect();
        assert_eq!(collect(&sorted), expected);
        let (fewer, passes) = merge_passes(sorted, 3, dir.path(), 256).unwrap();
        assert!(fewer.len() <= 3, "{} runs left", fewer.len());
        assert_eq!(passes.passes, 2, "13 -> 5 -> 2");
        assert!(passes.records > expected.len() as u64);
        assert_eq!(collect(&fewer), expected);
        drop(fewer);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "merged files go with their runs");
    }

    #[test]
    fn a_run_that_does_not_decode_blames_its_map_output() {
        let mut run = memory_run(&[(b"a".to_vec(), b"1".to_vec())]);
        run.records = 2;
        let e = merge(&[run], |_, _| Ok(())).unwrap_err();
        assert!(matches!(e, TaskError::MapOutputLost { map_index: 3, map_attempt: 1, .. }), "{e}");
    }
}
