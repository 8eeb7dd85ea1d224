//! The typed job API: what a user writes to define a MapReduce job.
//!
//! A job is a type implementing [`Job`]. Its methods fall into three groups, each with a
//! default so the common case stays small:
//!
//! - **compute**: [`Job::map`] from input [`Record`]s to typed (key, value) pairs (or
//!   [`Job::map_block`] over a run of whole lines at once), an optional [`Job::combiner`], and
//!   [`Job::reduce`] from a key and all its values to output records;
//! - **shuffle policy**: [`Job::partitioning`] (hash, total order or custom, optionally
//!   grouped for secondary sort) and a fixed number of reduce tasks, [`Job::reducers`];
//! - **I/O**: [`Job::io`], the formats read and written and, for a generator, how many records
//!   to make ([`Io`]).
//!
//! A job without a reduce phase implements [`MapOnlyJob`] instead: its map writes output
//! records itself. The framework moves only bytes; [`crate::runner`] turns a typed job into the
//! type-erased [`crate::DynJob`] the worker calls, so user code never sees the shuffle format.
//!
//! ```
//! use quern_api::{Combiner, Job, JobError, MapContext, OutputContext, Record};
//!
//! /// Counts lines by their length.
//! struct LineLengths;
//!
//! impl Job for LineLengths {
//!     type Key = u64;
//!     type Value = u64;
//!
//!     fn map(&self, rec: &Record<'_>, ctx: &mut MapContext<'_, u64, u64>) -> Result<(), JobError> {
//!         ctx.emit(&(rec.line.len() as u64), 1);
//!         Ok(())
//!     }
//!     fn combiner(&self) -> Option<Combiner<'_, u64>> {
//!         Some(Combiner::sum())
//!     }
//!     fn reduce(&self, len: u64, counts: &mut dyn Iterator<Item = u64>, out: &mut OutputContext<'_>) -> Result<(), JobError> {
//!         out.emit(len, counts.sum::<u64>());
//!         Ok(())
//!     }
//! }
//! ```

use std::borrow::Cow;
use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::Arc;

pub use crate::context::{MapContext, TaskInfo};
use crate::data::Data;
use crate::error::JobError;
use crate::format::{InputFormat, OutputFormat};
pub use crate::output::{OutRecord, OutputContext, PartWriter};
pub use crate::total_order::{CUTS_PARAM, TotalOrder};

/// One input record: a line of text, a whole object, a fixed-length binary record, or a
/// row of an Arrow or Parquet file, depending on the job's [`InputFormat`] (see
/// [`crate::format`]). Every kind has a text form (`line`) and raw bytes (`bytes`); Arrow and
/// Parquet rows also come as themselves (`row`).
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct Record<'a> {
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
#[non_exhaustive]
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

impl<'a> Record<'a> {
    /// A record holding one line of text.
    pub fn text(source: &'a str, offset: u64, line: &'a str) -> Self {
        Record { source, url: "", offset, line, bytes: line.as_bytes(), row: None, kind: RecordKind::Line }
    }

    /// A record of any kind: what input readers build (`line` is the text form of `bytes`).
    pub fn new(source: &'a str, url: &'a str, offset: u64, line: &'a str, bytes: &'a [u8], kind: RecordKind) -> Self {
        Record { source, url, offset, line, bytes, row: None, kind }
    }

    /// The same record with its Arrow or Parquet row.
    pub fn with_row(mut self, row: Row<'a>) -> Self {
        self.row = Some(row);
        self
    }
}

/// A run of whole lines of one text input object, handed to [`Job::map_block`] in one piece:
/// for jobs that scan bytes faster than they could take a call per line.
#[derive(Debug)]
pub struct Block<'a> {
    /// Base name of the input object.
    pub source: &'a str,
    /// The input object's full URL.
    pub url: &'a str,
    /// Byte offset of `bytes` within the object.
    pub offset: u64,
    /// Whole lines, each ending in `\n` (`\r\n`), except perhaps the object's last.
    pub bytes: &'a [u8],
    /// `bytes` as text: borrowed when they are valid UTF-8, else with U+FFFD replacements.
    text: Cow<'a, str>,
}

impl<'a> Block<'a> {
    /// A block over `bytes` (whole lines) starting at `offset` of object `url`.
    pub fn new(source: &'a str, url: &'a str, offset: u64, bytes: &'a [u8]) -> Self {
        Block { source, url, offset, bytes, text: String::from_utf8_lossy(bytes) }
    }

    /// The block as text (invalid UTF-8 replaced by U+FFFD; `\n` and `\r` kept, so its lines
    /// match the raw lines one to one).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether the bytes are valid UTF-8 (then [`Block::text`] is exactly them).
    pub fn is_utf8(&self) -> bool {
        matches!(self.text, Cow::Borrowed(_))
    }

    /// Lines that are not valid UTF-8 (counted as `MALFORMED_INPUT_LINES`).
    pub fn malformed_lines(&self) -> usize {
        if self.is_utf8() {
            return 0;
        }
        crate::split::lines(self.bytes).filter(|(_, l)| std::str::from_utf8(l).is_err()).count()
    }

    /// The block's records, one per line, as [`Job::map`] would get them.
    pub fn records(&self) -> impl Iterator<Item = Record<'_>> {
        let (source, url, base) = (self.source, self.url, self.offset);
        crate::split::lines(self.bytes).zip(crate::split::lines(self.text.as_bytes())).map(
            move |((off, raw), (_, line))| Record {
                source,
                url,
                offset: base.saturating_add(off as u64),
                line: std::str::from_utf8(line).unwrap_or(""),
                bytes: raw,
                row: None,
                kind: RecordKind::Line,
            },
        )
    }
}

/// A job's map-side combiner: folds a value into the accumulated value of the same key, as
/// Spark's `reduceByKey` function does. It must be associative and commutative, and `reduce`
/// must accept combined values. Returned by [`Job::combiner`].
pub struct Combiner<'a, V>(Box<CombineFn<'a, V>>);

/// The function inside a [`Combiner`].
type CombineFn<'a, V> = dyn Fn(&mut V, V) + Send + Sync + 'a;

impl<'a, V> Combiner<'a, V> {
    /// A combiner calling `f(acc, value)`.
    pub fn new(f: impl Fn(&mut V, V) + Send + Sync + 'a) -> Self {
        Combiner(Box::new(f))
    }

    /// Folds `value` into `acc`.
    pub fn call(&self, acc: &mut V, value: V) {
        (self.0)(acc, value)
    }
}

impl<V: std::ops::AddAssign + 'static> Combiner<'_, V> {
    /// The combiner that adds values (counts, sums).
    pub fn sum() -> Self {
        Combiner::new(|acc: &mut V, v| *acc += v)
    }
}

/// The encoded key `map` would emit for a record (see [`Partitioning::total_order`]).
pub type SampleFn = dyn Fn(&Record<'_>) -> Option<Vec<u8>> + Send + Sync;
/// A partition for an encoded key (or its group) and a number of reducers.
pub type PartitionFn = dyn Fn(&[u8], u32) -> u32 + Send + Sync;
/// How many leading bytes of an encoded key form its group (see [`Partitioning::grouped`]).
pub type GroupFn = dyn Fn(&[u8]) -> usize + Send + Sync;

/// How map output keys are spread over reduce tasks (the partitioner), and optionally which
/// keys `reduce` sees together (the grouping), two independent choices as in Hadoop.
///
/// - [`Partitioning::hash`] (the default): FNV-1a (64-bit) of the encoded key modulo the
///   reducers (see CONTRACT.md);
/// - [`Partitioning::total_order`]: globally sorted output (Hadoop's `TotalOrderPartitioner`).
///   Before submitting, the client samples the input with `sample` (the encoded key a record
///   maps to) and picks cut points, so that part `k` holds only keys below those of part
///   `k + 1`;
/// - [`Partitioning::custom`]: the job's own function of an encoded key and the number of
///   reducers (a partition out of range fails the task);
/// - [`Partitioning::grouped`], on top of any of them: secondary sort (Hadoop's grouping
///   comparator). `prefix(key)` leading bytes of an encoded key form its group; keys are
///   sorted by all their bytes, so a group's values arrive in the order of the rest of the
///   key, and `reduce` is called once per group with its first key. The partitioner then sees
///   only the group's bytes, so a group never spans two reduce tasks.
///
/// The functions are closures: a job captures what its parameters say (a column number, a
/// separator) by value.
///
/// ```
/// use quern_api::Partitioning;
///
/// // Keys `STATION\0DAY`, grouped by station, each station's days in order.
/// let p = Partitioning::hash().grouped(|key| key.iter().position(|&b| b == 0).unwrap_or(key.len()));
/// assert_eq!(p.group_len(b"oslo\x0020260101"), 4);
/// assert_eq!(p.partition(b"oslo\x0020260101", 8, None), p.partition(b"oslo\x0020261231", 8, None));
/// ```
#[derive(Clone, Default)]
pub struct Partitioning {
    by: Partitioner,
    group: Option<Arc<GroupFn>>,
}

#[derive(Clone, Default)]
enum Partitioner {
    #[default]
    Hash,
    TotalOrder(Arc<SampleFn>),
    Custom(Arc<PartitionFn>),
}

impl Partitioning {
    /// FNV-1a of the encoded key (of its group, when grouped) modulo the reducers.
    pub fn hash() -> Self {
        Partitioning::default()
    }

    /// Globally sorted parts: `sample` gives the encoded key a record maps to, from which the
    /// submitting client picks cut points.
    pub fn total_order(sample: impl Fn(&Record<'_>) -> Option<Vec<u8>> + Send + Sync + 'static) -> Self {
        Partitioning { by: Partitioner::TotalOrder(Arc::new(sample)), group: None }
    }

    /// The job's own partitioner: `partition(key, reducers)` must be below `reducers`.
    pub fn custom(partition: impl Fn(&[u8], u32) -> u32 + Send + Sync + 'static) -> Self {
        Partitioning { by: Partitioner::Custom(Arc::new(partition)), group: None }
    }

    /// Secondary sort: `prefix(key)` leading bytes of an encoded key (capped at its length)
    /// form its reduce group, and the partitioner sees only them.
    pub fn grouped(mut self, prefix: impl Fn(&[u8]) -> usize + Send + Sync + 'static) -> Self {
        self.group = Some(Arc::new(prefix));
        self
    }

    /// Whether the client samples the input for cut points.
    pub fn is_total_order(&self) -> bool {
        matches!(self.by, Partitioner::TotalOrder(_))
    }

    /// The key a record maps to, for total-order sampling (None for other partitioners).
    pub fn sample(&self, record: &Record<'_>) -> Option<Vec<u8>> {
        match &self.by {
            Partitioner::TotalOrder(sample) => sample(record),
            _ => None,
        }
    }

    /// How many leading bytes of `key` form its reduce group (all of them unless grouped).
    pub fn group_len(&self, key: &[u8]) -> usize {
        self.group.as_ref().map_or(key.len(), |prefix| prefix(key).min(key.len()))
    }

    /// The partition of `key` among `reducers`, with a total order's cut points when there are
    /// some (without them a total-order job falls back to hashing).
    pub fn partition(&self, key: &[u8], reducers: u32, order: Option<&TotalOrder>) -> u32 {
        let key = &key[..self.group_len(key)];
        match (&self.by, order) {
            (Partitioner::TotalOrder(_), Some(order)) => order.partition(key, reducers),
            (Partitioner::Custom(partition), _) => partition(key, reducers),
            _ => (fnv1a64(key) % u64::from(reducers.max(1))) as u32,
        }
    }
}

impl std::fmt::Debug for Partitioning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let by = match self.by {
            Partitioner::Hash => "hash",
            Partitioner::TotalOrder(_) => "total order",
            Partitioner::Custom(_) => "custom",
        };
        f.debug_struct("Partitioning").field("by", &by).field("grouped", &self.group.is_some()).finish()
    }
}

/// What a job reads and writes: see [`Job::io`] and [`MapOnlyJob::io`].
///
/// ```
/// use quern_api::{InputFormat, Io, OutputFormat};
///
/// let io = Io::default().input(InputFormat::Fixed(100)).output(OutputFormat::Fixed(100));
/// assert_eq!(io.generate, None);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Io {
    /// The input format unless the user picks one (`--input-format`). Default:
    /// [`InputFormat::Auto`] (text, Arrow or Parquet by object name).
    pub input_format: InputFormat,
    /// The output format unless the user picks one (`--output-format`). Default: text.
    pub output_format: OutputFormat,
    /// For a generator (a job that reads no input, such as `teragen`): how many records it
    /// makes. `map` is then called once per record number `n` in `0..rows`, with an empty
    /// record whose `offset` is `n`.
    pub generate: Option<u64>,
}

impl Default for Io {
    fn default() -> Self {
        Io { input_format: InputFormat::Auto, output_format: OutputFormat::Text, generate: None }
    }
}

impl Io {
    /// With this input format.
    pub fn input(mut self, format: InputFormat) -> Self {
        self.input_format = format;
        self
    }

    /// With this output format.
    pub fn output(mut self, format: OutputFormat) -> Self {
        self.output_format = format;
        self
    }

    /// A generator of `rows` records.
    pub fn generate(mut self, rows: u64) -> Self {
        self.generate = Some(rows);
        self
    }
}

/// A MapReduce job: map, shuffle by key, reduce.
pub trait Job: Send + Sync + 'static {
    /// The map output key. Keys are grouped and sorted by their encoding's bytes.
    type Key: Data + Hash + Eq;
    /// The map output value.
    type Value: Data;

    /// Turns one input record into any number of pairs.
    fn map(&self, record: &Record<'_>, ctx: &mut MapContext<'_, Self::Key, Self::Value>) -> Result<(), JobError>;

    /// Maps a run of whole lines of text input at once (the bulk entry point; other input
    /// formats always go through [`Job::map`]). The default calls `map` once per line; a job
    /// that scans bytes (a tokenizer, a byte search) can override it to skip the per-line
    /// calls. With `--skip-bad-records` the framework calls `map` per line instead, so a
    /// record that panics can be skipped alone.
    fn map_block(&self, block: &Block<'_>, ctx: &mut MapContext<'_, Self::Key, Self::Value>) -> Result<(), JobError> {
        for record in block.records() {
            self.map(&record, ctx)?;
        }
        Ok(())
    }

    /// The map-side combiner, if the job has one (default: none). A job may decide by its
    /// parameters; the output must not change.
    fn combiner(&self) -> Option<Combiner<'_, Self::Value>> {
        None
    }

    /// Turns a key and all its values into output records.
    fn reduce(
        &self,
        key: Self::Key,
        values: &mut dyn Iterator<Item = Self::Value>,
        out: &mut OutputContext<'_>,
    ) -> Result<(), JobError>;

    /// How keys reach reduce tasks and form groups (default: [`Partitioning::hash`]). Asked
    /// once per task.
    ///
    /// ```
    /// use quern_api::{Job, JobError, MapContext, OutputContext, Partitioning, Record};
    ///
    /// /// `STATION<TAB>DAY<TAB>TEMP` lines to `STATION<TAB>temps by day`: the key is
    /// /// `STATION\0DAY`, grouped by station, so each station's values arrive sorted by day.
    /// struct ByStation;
    /// impl Job for ByStation {
    ///     type Key = String;
    ///     type Value = String;
    ///     fn map(&self, r: &Record<'_>, ctx: &mut MapContext<'_, String, String>) -> Result<(), JobError> {
    ///         if let [station, day, temp] = r.line.split('\t').collect::<Vec<_>>()[..] {
    ///             ctx.emit_owned(format!("{station}\0{day}"), temp.to_string());
    ///         }
    ///         Ok(())
    ///     }
    ///     fn partitioning(&self) -> Partitioning {
    ///         Partitioning::hash().grouped(|key| key.iter().position(|&b| b == 0).unwrap_or(key.len()))
    ///     }
    ///     fn reduce(&self, key: String, temps: &mut dyn Iterator<Item = String>, out: &mut OutputContext<'_>) -> Result<(), JobError> {
    ///         let station = key.split('\0').next().unwrap_or_default();
    ///         out.emit(station, temps.collect::<Vec<_>>().join(","));
    ///         Ok(())
    ///     }
    /// }
    /// assert_eq!(ByStation.partitioning().group_len(b"oslo\x0020260101"), 4);
    /// ```
    fn partitioning(&self) -> Partitioning {
        Partitioning::hash()
    }

    /// A fixed number of reduce tasks, if the job needs one (`Some(1)` for a job that must
    /// see every key in one place). None (the default): the user's `--reducers`.
    fn reducers(&self) -> Option<NonZeroU32> {
        None
    }

    /// What the job reads and writes (default: [`Io::default`]).
    fn io(&self) -> Io {
        Io::default()
    }
}

/// A job without a reduce phase (Hadoop's `setNumReduceTasks(0)`): each map task's output is
/// a part, written by the map in input order; nothing is sorted, shuffled or combined.
///
/// A map-only generator of binary records:
///
/// ```
/// use quern_api::{Io, JobError, MapOnlyJob, OutputContext, OutputFormat, Record};
///
/// /// The squares of 0..n as 8-byte big-endian records, in order.
/// struct Squares {
///     n: u64,
/// }
/// impl MapOnlyJob for Squares {
///     fn map(&self, r: &Record<'_>, out: &mut OutputContext<'_>) -> Result<(), JobError> {
///         out.emit_bytes(&(r.offset * r.offset).to_be_bytes());
///         Ok(())
///     }
///     fn io(&self) -> Io {
///         Io::default().generate(self.n).output(OutputFormat::Fixed(8))
///     }
/// }
/// assert_eq!(Squares { n: 1_000 }.io().generate, Some(1_000));
/// ```
pub trait MapOnlyJob: Send + Sync + 'static {
    /// Turns one input record into any number of output records.
    fn map(&self, record: &Record<'_>, out: &mut OutputContext<'_>) -> Result<(), JobError>;

    /// Maps a run of whole lines of text input at once; see [`Job::map_block`].
    fn map_block(&self, block: &Block<'_>, out: &mut OutputContext<'_>) -> Result<(), JobError> {
        for record in block.records() {
            self.map(&record, out)?;
        }
        Ok(())
    }

    /// What the job reads and writes (default: [`Io::default`]).
    fn io(&self) -> Io {
        Io::default()
    }
}

/// FNV-1a, 64 bit: the default partitioning hash (see CONTRACT.md).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_matches_the_reference_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
    }

    #[test]
    fn a_block_yields_the_records_of_its_lines() {
        let block = Block::new("f", "file:///f", 10, b"ab\r\n\xffc\n\nlast");
        let recs: Vec<(u64, &str, &[u8])> = block.records().map(|r| (r.offset, r.line, r.bytes)).collect();
        assert_eq!(
            recs,
            vec![
                (10, "ab", &b"ab"[..]),
                (14, "\u{fffd}c", &b"\xffc"[..]),
                (17, "", &b""[..]),
                (18, "last", &b"last"[..])
            ]
        );
        assert_eq!((block.is_utf8(), block.malformed_lines()), (false, 1));
    }
}
