//! What reduce (and map-only) tasks write: [`OutputContext`] is the job's side, [`PartWriter`]
//! the task's: the records of one output part, in any output format. The output keeps the text form of every record (what a `text` part holds) and
//! where each record lies in it, so the worker can write the same records as fixed-length
//! binary, Arrow IPC or Parquet (see [`crate::format`]).

use std::fmt::Display;
use std::io::Write as _;

use crate::context::TaskInfo;
use crate::counters::Counters;

/// How one output record was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OutKind {
    /// `key<TAB>value\n`; the tab is at this offset from the record's start.
    Pair(usize),
    /// `line\n`.
    Line,
    /// Raw bytes.
    Raw,
}

/// One record of an output, as the job wrote it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutRecord<'a> {
    /// From [`OutputContext::emit`].
    Pair(&'a str, &'a str),
    /// From [`OutputContext::emit_line`].
    Line(&'a str),
    /// From [`OutputContext::emit_bytes`].
    Bytes(&'a [u8]),
}

/// The output of a task: the text form of every record (what a `text` part holds), plus
/// where each record lies in it, so other formats can be written from the same records.
#[derive(Debug, Default)]
pub struct PartWriter {
    text: Vec<u8>,
    recs: Vec<(usize, OutKind)>,
}

impl PartWriter {
    /// An empty output.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records written so far.
    pub fn records(&self) -> u64 {
        self.recs.len() as u64
    }

    /// A point to roll back to (see [`PartWriter::rollback`]).
    pub fn mark(&self) -> (usize, u64) {
        (self.text.len(), self.records())
    }

    /// Drops everything written since `mark` (a skipped key group's partial output).
    pub fn rollback(&mut self, mark: (usize, u64)) {
        self.text.truncate(mark.0);
        self.recs.truncate(mark.1 as usize);
    }

    /// Appends another output's records after this one's.
    pub fn append(&mut self, other: PartWriter) {
        let base = self.text.len();
        self.text.extend_from_slice(&other.text);
        self.recs.extend(other.recs.into_iter().map(|(at, k)| (at + base, k)));
    }

    /// The records, in the order written.
    pub fn iter(&self) -> impl Iterator<Item = OutRecord<'_>> {
        self.recs.iter().enumerate().map(|(i, &(at, kind))| {
            let end = self.recs.get(i + 1).map_or(self.text.len(), |r| r.0);
            let bytes = &self.text[at..end];
            // Records from emit and emit_line are Display output, so valid UTF-8.
            match kind {
                OutKind::Raw => OutRecord::Bytes(bytes),
                OutKind::Line => OutRecord::Line(std::str::from_utf8(&bytes[..bytes.len() - 1]).unwrap_or_default()),
                OutKind::Pair(tab) => OutRecord::Pair(
                    std::str::from_utf8(&bytes[..tab]).unwrap_or_default(),
                    std::str::from_utf8(&bytes[tab + 1..bytes.len() - 1]).unwrap_or_default(),
                ),
            }
        })
    }

    /// The bytes of a `text` part so far: what the records take in memory, less their index.
    pub fn as_bytes(&self) -> &[u8] {
        &self.text
    }

    /// The bytes of a `text` part.
    pub fn into_bytes(self) -> Vec<u8> {
        self.text
    }
}

/// What a reduce function (or a map-only job's map) writes output records to.
pub struct OutputContext<'a> {
    out: &'a mut PartWriter,
    counters: &'a mut Counters,
    task: &'a TaskInfo,
}

impl<'a> OutputContext<'a> {
    /// A context of task `task` writing into `out` and counting into `counters`.
    pub fn new(out: &'a mut PartWriter, counters: &'a mut Counters, task: &'a TaskInfo) -> Self {
        OutputContext { out, counters, task }
    }

    /// The task attempt this code runs in.
    pub fn task(&self) -> &TaskInfo {
        self.task
    }

    /// Writes one output record: the line `key<TAB>value` in text output, a (key, value)
    /// row in Arrow and Parquet output.
    pub fn emit(&mut self, key: impl Display, value: impl Display) {
        let at = self.out.text.len();
        // Writing into a Vec cannot fail.
        let _ = write!(self.out.text, "{key}");
        let tab = self.out.text.len() - at;
        let _ = writeln!(self.out.text, "\t{value}");
        self.out.recs.push((at, OutKind::Pair(tab)));
    }

    /// Writes one output line as it is (no tab), e.g. for sorting lines.
    pub fn emit_line(&mut self, line: impl Display) {
        let at = self.out.text.len();
        let _ = writeln!(self.out.text, "{line}");
        self.out.recs.push((at, OutKind::Line));
    }

    /// Writes one binary record as it is (no newline), e.g. a fixed-length record.
    pub fn emit_bytes(&mut self, bytes: &[u8]) {
        let at = self.out.text.len();
        self.out.text.extend_from_slice(bytes);
        self.out.recs.push((at, OutKind::Raw));
    }

    /// Adds `n` to a user-defined counter.
    pub fn count(&mut self, counter: &str, n: i64) {
        self.counters.add(counter, n);
    }
}
