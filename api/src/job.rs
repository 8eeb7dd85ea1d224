//! The typed job API: what a user writes to define a MapReduce job.
//!
//! A job is a type implementing [`Job`]: a `map` from input records to typed (key, value)
//! pairs, an optional map-side `combine`, and a `reduce` from a key and all its values to
//! output lines. The framework moves only bytes; [`JobRunner`] turns a typed job into the
//! type-erased [`DynJob`] the worker calls, so user code never sees the shuffle format.
//!
//! ```
//! use quern_api::job::{Job, MapContext, ReduceContext, TextRecord};
//! use quern_api::JobError;
//!
//! /// Counts lines by their length.
//! struct LineLengths;
//!
//! impl Job for LineLengths {
//!     type Key = u64;
//!     type Value = u64;
//!     const COMBINER: bool = true;
//!
//!     fn map(&self, rec: &TextRecord<'_>, ctx: &mut MapContext<'_, u64, u64>) -> Result<(), JobError> {
//!         ctx.emit(rec.line.len() as u64, 1);
//!         Ok(())
//!     }
//!     fn combine(&self, acc: &mut u64, n: u64) {
//!         *acc += n;
//!     }
//!     fn reduce(&self, len: u64, counts: &mut dyn Iterator<Item = u64>, out: &mut ReduceContext<'_>) -> Result<(), JobError> {
//!         out.emit(len, counts.sum::<u64>());
//!         Ok(())
//!     }
//! }
//! ```

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash};
use std::panic::AssertUnwindSafe;

use crate::counters::{Counters, names};
use crate::data::Data;
use crate::error::JobError;
use crate::format::{InputFormat, OutputFormat};
pub use crate::output::{OutRecord, ReduceContext, TextOutput};

/// One input record: a line of text, a whole object, a fixed-length binary record, or a
/// row of an Arrow or Parquet file, depending on the job's [`InputFormat`] (see
/// [`crate::format`]). Every kind has a text form (`line`) and raw bytes (`bytes`); Arrow and
/// Parquet rows also come as themselves (`row`).
#[derive(Clone, Copy, Debug)]
pub struct TextRecord<'a> {
    /// Base name of the input object the record comes from (e.g. `book.txt`); empty for
    /// generated records.
    pub source: &'a str,
    /// The input object's full URL (e.g. `file:///data/book.txt`); empty for generated records.
    pub url: &'a str,
    /// Byte offset of the record's start within that object; the row number for Arrow and
    /// Parquet rows; the record number for generated records.
    pub offset: u64,
    /// The record as text: a line without its `\n` (or `\r\n`), a whole object, a row
    /// rendered as tab-separated columns. Invalid UTF-8 is replaced by U+FFFD; empty for
    /// binary (fixed-length) records that are not valid UTF-8.
    pub line: &'a str,
    /// The record's raw bytes (for text, the line as read, before any U+FFFD replacement).
    pub bytes: &'a [u8],
    /// For Arrow and Parquet input: the row itself, for typed access to its columns.
    pub row: Option<Row<'a>>,
    /// What kind of record this is.
    pub kind: RecordKind,
}

/// What an input record is, by input format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    /// A line of text (`text`).
    Line,
    /// A whole object (`whole`).
    Whole,
    /// A fixed-length binary record (`fixed:N`).
    Fixed,
    /// A row of an Arrow or Parquet file (`arrow`, `parquet`); if the row holds a binary
    /// `record` column (as Quern writes `emit_bytes` records), `bytes` is that value.
    Row,
    /// A generated record number (generator jobs).
    Generated,
}

/// A row of Arrow or Parquet input: its record batch and its index there.
///
/// ```
/// use std::sync::Arc;
/// use quern_api::arrow_array::{Array, Int64Array, RecordBatch, cast::AsArray, types::Int64Type};
/// use quern_api::job::Row;
///
/// let batch = RecordBatch::try_from_iter([("n", Arc::new(Int64Array::from(vec![4, 5])) as Arc<dyn Array>)]).unwrap();
/// let row = Row { batch: &batch, index: 1 };
/// let n = row.batch.column_by_name("n").unwrap().as_primitive::<Int64Type>().value(row.index);
/// assert_eq!(n, 5);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Row<'a> {
    /// The batch holding the row.
    pub batch: &'a arrow_array::RecordBatch,
    /// The row's index in the batch.
    pub index: usize,
}

impl<'a> TextRecord<'a> {
    /// A record holding one line of text.
    pub fn text(source: &'a str, offset: u64, line: &'a str) -> Self {
        TextRecord { source, url: "", offset, line, bytes: line.as_bytes(), row: None, kind: RecordKind::Line }
    }
}

/// A MapReduce job over text input with text output.
pub trait Job: Send + Sync + 'static {
    /// The map output key. Keys are grouped and sorted by their encoding's bytes.
    type Key: Data + Hash + Eq;
    /// The map output value.
    type Value: Data;

    /// Whether [`Job::combine`] should be used to pre-aggregate map output.
    const COMBINER: bool = false;

    /// Whether this instance combines: [`Job::COMBINER`] unless overridden, so a job can turn
    /// its combiner off by parameter (the output must not change).
    fn uses_combiner(&self) -> bool {
        Self::COMBINER
    }

    /// Turns one input record into any number of pairs.
    fn map(&self, record: &TextRecord<'_>, ctx: &mut MapContext<'_, Self::Key, Self::Value>) -> Result<(), JobError>;

    /// Folds `value` into `acc`, two values of the same key (map-side combining, like Spark's
    /// `reduceByKey`); only called when [`Job::COMBINER`] is true. Must be associative and
    /// commutative, and `reduce` must accept combined values.
    fn combine(&self, _acc: &mut Self::Value, _value: Self::Value) {}

    /// Turns a key and all its values into output lines.
    fn reduce(
        &self,
        key: Self::Key,
        values: &mut dyn Iterator<Item = Self::Value>,
        out: &mut ReduceContext<'_>,
    ) -> Result<(), JobError>;

    /// Which reduce partition a key (given as its encoded bytes) goes to.
    /// Default: FNV-1a 64-bit of the key's grouping part (see [`Job::group_len`]) modulo
    /// `reducers`; for the usual whole-key grouping that is the whole key.
    fn partition(&self, key: &[u8], reducers: u32) -> u32 {
        let group = &key[..self.group_len(key).min(key.len())];
        (fnv1a64(group) % u64::from(reducers.max(1))) as u32
    }

    /// Secondary sort (Hadoop's grouping comparator): how many leading bytes of an encoded key
    /// decide its reduce group. Keys are sorted by all their bytes, so a group's values arrive
    /// in the order of the rest of the key; `reduce` is called once per group with the group's
    /// first key. Default: the whole key.
    ///
    /// ```
    /// use quern_api::{Job, JobError, MapContext, ReduceContext, TextRecord};
    ///
    /// /// `STATION<TAB>DAY<TAB>TEMP` lines to `STATION<TAB>temps by day`: the key is
    /// /// `STATION\0DAY`, grouped by station, so each station's values arrive sorted by day.
    /// struct ByStation;
    /// impl Job for ByStation {
    ///     type Key = String;
    ///     type Value = String;
    ///     fn map(&self, r: &TextRecord<'_>, ctx: &mut MapContext<'_, String, String>) -> Result<(), JobError> {
    ///         if let [station, day, temp] = r.line.split('\t').collect::<Vec<_>>()[..] {
    ///             ctx.emit(format!("{station}\0{day}"), temp.to_string());
    ///         }
    ///         Ok(())
    ///     }
    ///     fn group_len(&self, key: &[u8]) -> usize {
    ///         key.iter().position(|&b| b == 0).unwrap_or(key.len())
    ///     }
    ///     fn reduce(&self, key: String, temps: &mut dyn Iterator<Item = String>, out: &mut ReduceContext<'_>) -> Result<(), JobError> {
    ///         let station = key.split('\0').next().unwrap_or_default();
    ///         out.emit(station, temps.collect::<Vec<_>>().join(","));
    ///         Ok(())
    ///     }
    /// }
    /// assert_eq!(ByStation.group_len(b"oslo\x0020260101"), 4);
    /// ```
    fn group_len(&self, key: &[u8]) -> usize {
        key.len()
    }

    /// For total-order jobs: the encoded key an input record maps to, so that the submitting
    /// client can sample the input for cut points (Hadoop's `InputSampler`), which reach the
    /// job as a [`TotalOrder`] parameter. None (the default) for hash-partitioned jobs; a
    /// total-order job returns Some for every record, even an empty one.
    fn sample_key(&self, _record: &TextRecord<'_>) -> Option<Vec<u8>> {
        None
    }

    /// The input format this job reads unless the user picks one (`--input-format`).
    /// Default: [`InputFormat::Auto`] (text, Arrow or Parquet by object name).
    fn input_format(&self) -> InputFormat {
        InputFormat::Auto
    }

    /// The output format this job writes unless the user picks one (`--output-format`).
    fn output_format(&self) -> OutputFormat {
        OutputFormat::Text
    }

    /// A fixed number of reduce tasks, if the job needs one: `Some(0)` for a map-only job
    /// (each map task's output becomes a part, Hadoop's `setNumReduceTasks(0)`), `Some(1)`
    /// for a job that must see every key in one place. None: the user's `--reducers`.
    ///
    /// Without reducers, every pair a map emits goes through [`Job::reduce`] on its own (a
    /// group of one value, in map order, no sorting or combining), so a job writes map-only
    /// output in the same form as reduced output.
    fn reducers(&self) -> Option<u32> {
        None
    }

    /// For a generator (a job that reads no input, such as `teragen`): how many records it
    /// makes. `map` is then called once per record number `n` in `0..rows`, with an empty
    /// record whose `offset` is `n`.
    ///
    /// A map-only generator of binary records:
    ///
    /// ```
    /// use quern_api::{Job, JobError, MapContext, OutputFormat, ReduceContext, TextRecord};
    ///
    /// /// The squares of 0..n as 8-byte big-endian records, in order, without reducers.
    /// struct Squares {
    ///     n: u64,
    /// }
    /// impl Job for Squares {
    ///     type Key = u64;
    ///     type Value = ();
    ///     fn map(&self, r: &TextRecord<'_>, ctx: &mut MapContext<'_, u64, ()>) -> Result<(), JobError> {
    ///         ctx.emit(r.offset * r.offset, ());
    ///         Ok(())
    ///     }
    ///     fn reduce(&self, sq: u64, _: &mut dyn Iterator<Item = ()>, out: &mut ReduceContext<'_>) -> Result<(), JobError> {
    ///         out.emit_bytes(&sq.to_be_bytes()); // map-only: called once per pair, in map order
    ///         Ok(())
    ///     }
    ///     fn reducers(&self) -> Option<u32> {
    ///         Some(0)
    ///     }
    ///     fn generate(&self) -> Option<u64> {
    ///         Some(self.n)
    ///     }
    ///     fn output_format(&self) -> OutputFormat {
    ///         OutputFormat::Fixed(8)
    ///     }
    /// }
    /// let job = Squares { n: 1_000 };
    /// assert_eq!((job.generate(), job.reducers()), (Some(1_000), Some(0)));
    /// ```
    fn generate(&self) -> Option<u64> {
        None
    }
}

pub use crate::total_order::{CUTS_PARAM, TotalOrder};

/// FNV-1a, 64 bit: the default partitioning hash (see CONTRACT.md).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Where encoded map output goes; implemented by the worker.
pub trait PairSink {
    /// Receives one encoded pair.
    fn push(&mut self, key: &[u8], value: &[u8]);
}

/// The job's combine function, borrowed for one map run.
type CombineFn<'s, V> = &'s dyn Fn(&mut V, V);

type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<rustc_hash::FxHasher>>;

enum MapMode<'s, K, V> {
    /// Encode every pair straight into the sink.
    Direct { sink: &'s mut dyn PairSink, kbuf: Vec<u8>, vbuf: Vec<u8> },
    /// Pre-aggregate in memory; flushed to the sink when the chunk ends.
    Combining { table: FastMap<K, V> },
}

/// What a map function writes to.
pub struct MapContext<'s, K, V> {
    mode: MapMode<'s, K, V>,
    combine: Option<CombineFn<'s, V>>,
    emitted: u64,
    counters: &'s mut Counters,
    /// In skipping mode, one record's pairs wait here until its map call returns normally.
    staging: Option<Vec<(K, V)>>,
}

impl<K: Data + Hash + Eq, V: Data> MapContext<'_, K, V> {
    /// Emits a pair.
    pub fn emit(&mut self, key: K, value: V) {
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
            MapMode::Combining { table } => {
                if let Some(acc) = table.get_mut(&key) {
                    if let Some(c) = self.combine {
                        c(acc, value);
                    }
                } else {
                    table.insert(key, value);
                }
            }
        }
    }

    /// Emits a pair whose key is borrowed (e.g. `&str` for a `String` key). With a combiner,
    /// a key already seen costs no allocation, which is what makes word count fast.
    pub fn emit_borrowed<Q>(&mut self, key: &Q, value: V)
    where
        K: Borrow<Q>,
        Q: ?Sized + Hash + Eq + ToOwned<Owned = K>,
    {
        if self.staging.is_some() {
            self.emit(key.to_owned(), value);
            return;
        }
        if let MapMode::Combining { table } = &mut self.mode {
            self.emitted += 1;
            if let Some(acc) = table.get_mut(key) {
                if let Some(c) = self.combine {
                    c(acc, value);
                }
                return;
            }
            table.insert(key.to_owned(), value);
            return;
        }
        self.emit(key.to_owned(), value);
    }

    /// Adds `n` to a user-defined counter.
    pub fn count(&mut self, counter: &str, n: i64) {
        self.counters.add(counter, n);
    }
}

/// How a map run treats records and pairs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MapOptions {
    /// A record whose map call panics is skipped (its pairs dropped) and counted in
    /// `SKIPPED_RECORDS` (MapReduce paper, 4.6).
    pub skip_panics: bool,
    /// The job runs without reducers: pairs are passed on in map order, never combined.
    pub map_only: bool,
}

/// A job with its types erased: what the worker runs. Everything is encoded bytes.
pub trait DynJob: Send + Sync {
    /// Maps a run of records, pushing encoded pairs (pre-combined when the job has a
    /// combiner, unless map-only) into `sink`.
    fn map_records<'r>(
        &self,
        records: &mut dyn Iterator<Item = TextRecord<'r>>,
        sink: &mut dyn PairSink,
        counters: &mut Counters,
        opts: MapOptions,
    ) -> Result<(), JobError>;

    /// Whether the job combines map output.
    fn has_combiner(&self) -> bool;

    /// Combines several encoded values of one key into one, written to `out`.
    fn combine_encoded(&self, values: &mut dyn Iterator<Item = &[u8]>, out: &mut Vec<u8>) -> Result<(), JobError>;

    /// Reduces one key group.
    fn reduce_encoded(
        &self,
        key: &[u8],
        values: &mut dyn Iterator<Item = &[u8]>,
        out: &mut ReduceContext<'_>,
    ) -> Result<(), JobError>;

    /// The partition of an encoded key.
    fn partition(&self, key: &[u8], reducers: u32) -> u32;

    /// See [`Job::sample_key`].
    fn sample_key(&self, record: &TextRecord<'_>) -> Option<Vec<u8>>;

    /// See [`Job::group_len`].
    fn group_len(&self, key: &[u8]) -> usize;

    /// See [`Job::input_format`].
    fn input_format(&self) -> InputFormat;

    /// See [`Job::output_format`].
    fn output_format(&self) -> OutputFormat;

    /// See [`Job::reducers`].
    fn reducers(&self) -> Option<u32>;

    /// See [`Job::generate`].
    fn generate(&self) -> Option<u64>;
}

/// Adapts a typed [`Job`] to [`DynJob`].
pub struct JobRunner<J>(pub J);

impl<J: Job> DynJob for JobRunner<J> {
    fn map_records<'r>(
        &self,
        records: &mut dyn Iterator<Item = TextRecord<'r>>,
        sink: &mut dyn PairSink,
        counters: &mut Counters,
        opts: MapOptions,
    ) -> Result<(), JobError> {
        let skip_panics = opts.skip_panics;
        let job = &self.0;
        let combine = |acc: &mut J::Value, v: J::Value| job.combine(acc, v);
        let mut user_counters = Counters::new();
        let mut inputs = 0i64;
        let mut skipped = 0i64;
        let (emitted, table) = {
            let combining = job.uses_combiner() && !opts.map_only;
            let mode = if combining {
                MapMode::Combining { table: FastMap::default() }
            } else {
                MapMode::Direct { sink: &mut *sink, kbuf: Vec::new(), vbuf: Vec::new() }
            };
            let mut ctx = MapContext {
                mode,
                combine: combining.then_some(&combine as &dyn Fn(&mut J::Value, J::Value)),
                emitted: 0,
                counters: &mut user_counters,
                staging: None,
            };
            for rec in records {
                inputs += 1;
                if !skip_panics {
                    job.map(&rec, &mut ctx)?;
                    continue;
                }
                ctx.staging = Some(Vec::new());
                let result = std::panic::catch_unwind(AssertUnwindSafe(|| job.map(&rec, &mut ctx)));
                let staged = ctx.staging.take().unwrap_or_default();
                match result {
                    Ok(Ok(())) => staged.into_iter().for_each(|(k, v)| ctx.emit(k, v)),
                    Ok(Err(e)) => return Err(e),
                    Err(_) => skipped += 1,
                }
            }
            let table = match ctx.mode {
                MapMode::Combining { table } => Some(table),
                MapMode::Direct { .. } => None,
            };
            (ctx.emitted, table)
        };
        if let Some(table) = table {
            let (mut kbuf, mut vbuf) = (Vec::new(), Vec::new());
            for (k, v) in table {
                kbuf.clear();
                vbuf.clear();
                k.encode(&mut kbuf);
                v.encode(&mut vbuf);
                sink.push(&kbuf, &vbuf);
            }
            counters.add(names::COMBINE_INPUT_RECORDS, emitted as i64);
        }
        counters.add(names::MAP_INPUT_RECORDS, inputs);
        if skipped > 0 {
            counters.add(names::SKIPPED_RECORDS, skipped);
        }
        counters.add(names::MAP_OUTPUT_RECORDS, emitted as i64);
        counters.merge(&user_counters);
        Ok(())
    }

    fn has_combiner(&self) -> bool {
        self.0.uses_combiner()
    }

    fn combine_encoded(&self, values: &mut dyn Iterator<Item = &[u8]>, out: &mut Vec<u8>) -> Result<(), JobError> {
        let mut acc: Option<J::Value> = None;
        for bytes in values {
            let v = J::Value::decode(bytes)?;
            match &mut acc {
                Some(a) => self.0.combine(a, v),
                None => acc = Some(v),
            }
        }
        if let Some(a) = acc {
            a.encode(out);
        }
        Ok(())
    }

    fn reduce_encoded(
        &self,
        key: &[u8],
        values: &mut dyn Iterator<Item = &[u8]>,
        out: &mut ReduceContext<'_>,
    ) -> Result<(), JobError> {
        let key = J::Key::decode(key)?;
        let mut err = None;
        let mut decoded = values.map_while(|b| match J::Value::decode(b) {
            Ok(v) => Some(v),
            Err(e) => {
                err = Some(e);
                None
            }
        });
        self.0.reduce(key, &mut decoded, out)?;
        drop(decoded);
        match err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn partition(&self, key: &[u8], reducers: u32) -> u32 {
        self.0.partition(key, reducers)
    }

    fn sample_key(&self, record: &TextRecord<'_>) -> Option<Vec<u8>> {
        self.0.sample_key(record)
    }

    fn group_len(&self, key: &[u8]) -> usize {
        self.0.group_len(key).min(key.len())
    }

    fn input_format(&self) -> InputFormat {
        self.0.input_format()
    }

    fn output_format(&self) -> OutputFormat {
        self.0.output_format()
    }

    fn reducers(&self) -> Option<u32> {
        self.0.reducers()
    }

    fn generate(&self) -> Option<u64> {
        self.0.generate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Words;
    impl Job for Words {
        type Key = String;
        type Value = u64;
        const COMBINER: bool = true;
        fn map(&self, rec: &TextRecord<'_>, ctx: &mut MapContext<'_, String, u64>) -> Result<(), JobError> {
            for w in rec.line.split_whitespace() {
                ctx.emit_borrowed(w, 1);
            }
            Ok(())
        }
        fn combine(&self, acc: &mut u64, v: u64) {
            *acc += v;
        }
        fn reduce(
            &self,
            k: String,
            vs: &mut dyn Iterator<Item = u64>,
            out: &mut ReduceContext<'_>,
        ) -> Result<(), JobError> {
            out.emit(k, vs.sum::<u64>());
            Ok(())
        }
    }

    struct Collect(Vec<(Vec<u8>, Vec<u8>)>);
    impl PairSink for Collect {
        fn push(&mut self, key: &[u8], value: &[u8]) {
            self.0.push((key.to_vec(), value.to_vec()));
        }
    }

    #[test]
    fn combining_map_counts_and_reduce_writes_lines() {
        let job = JobRunner(Words);
        let lines = ["a b a", "b a"];
        let mut recs = lines.iter().map(|l| TextRecord::text("x", 0, l));
        let mut sink = Collect(Vec::new());
        let mut counters = Counters::new();
        job.map_records(&mut recs, &mut sink, &mut counters, MapOptions::default()).unwrap();
        sink.0.sort();
        assert_eq!(
            sink.0,
            vec![(b"a".to_vec(), 3u64.to_be_bytes().to_vec()), (b"b".to_vec(), 2u64.to_be_bytes().to_vec())]
        );
        assert_eq!(counters.get(names::MAP_INPUT_RECORDS), 2);
        assert_eq!(counters.get(names::MAP_OUTPUT_RECORDS), 5);

        let mut out = TextOutput::new();
        let mut rc = Counters::new();
        let one = 1u64.to_be_bytes();
        let two = 2u64.to_be_bytes();
        let mut vals = [&one[..], &two[..]].into_iter();
        job.reduce_encoded(b"a", &mut vals, &mut ReduceContext::new(&mut out, &mut rc)).unwrap();
        assert_eq!(String::from_utf8(out.into_bytes()).unwrap(), "a\t3\n");
    }

    #[test]
    fn corrupt_values_are_an_error_not_a_panic() {
        let job = JobRunner(Words);
        let mut out = TextOutput::new();
        let mut rc = Counters::new();
        let mut vals = [&b"xyz"[..]].into_iter();
        assert!(job.reduce_encoded(b"a", &mut vals, &mut ReduceContext::new(&mut out, &mut rc)).is_err());
    }

    #[test]
    fn fnv_matches_the_reference_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
    }

    #[test]
    fn output_records_keep_their_kind_through_append_and_rollback() {
        let (mut a, mut b) = (TextOutput::new(), TextOutput::new());
        let mut c = Counters::new();
        ReduceContext::new(&mut a, &mut c).emit("k\u{e9}", 7);
        let mark = a.mark();
        ReduceContext::new(&mut a, &mut c).emit_line("dropped");
        a.rollback(mark);
        ReduceContext::new(&mut b, &mut c).emit_line("a\tline");
        ReduceContext::new(&mut b, &mut c).emit_bytes(&[0, 159, 10]);
        a.append(b);
        assert!(a.iter().any(|r| matches!(r, OutRecord::Bytes(_))));
        assert_eq!(
            a.iter().collect::<Vec<_>>(),
            vec![OutRecord::Pair("k\u{e9}", "7"), OutRecord::Line("a\tline"), OutRecord::Bytes(&[0, 159, 10])]
        );
        assert_eq!(a.records(), 3);
        assert_eq!(a.into_bytes(), b"k\xc3\xa9\t7\na\tline\n\x00\x9f\n".to_vec());
    }
}
