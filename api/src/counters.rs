//! Job counters: named 64-bit integers summed over committed attempts only.

use std::collections::BTreeMap;

/// Built-in counter names, as Hadoop users know them.
pub mod names {
    /// Input records (lines) read by map tasks.
    pub const MAP_INPUT_RECORDS: &str = "MAP_INPUT_RECORDS";
    /// Input bytes of the map tasks' splits.
    pub const MAP_INPUT_BYTES: &str = "MAP_INPUT_BYTES";
    /// Pairs emitted by map functions (before combining).
    pub const MAP_OUTPUT_RECORDS: &str = "MAP_OUTPUT_RECORDS";
    /// Bytes of shuffle objects written by map tasks.
    pub const MAP_OUTPUT_BYTES: &str = "MAP_OUTPUT_BYTES";
    /// Pairs fed into the combiner.
    pub const COMBINE_INPUT_RECORDS: &str = "COMBINE_INPUT_RECORDS";
    /// Pairs the combiner produced.
    pub const COMBINE_OUTPUT_RECORDS: &str = "COMBINE_OUTPUT_RECORDS";
    /// Records written out of memory, as Hadoop counts them: by map tasks to shuffle objects
    /// (after combining) and to local spills, and by intermediate merge passes. Equal to the
    /// map output records (after combining) when every task's buffers fit its memory.
    pub const SPILLED_RECORDS: &str = "SPILLED_RECORDS";
    /// Sorted runs map tasks wrote to local disk because their buffers (their share of the
    /// worker's `--task-memory`) were full; 0 when every map's output fit in memory.
    pub const MAP_SPILLS: &str = "MAP_SPILLS";
    /// Intermediate merge passes through local disk, made by tasks that had more sorted runs
    /// than their memory keeps open at once (Hadoop's `io.sort.factor`).
    pub const MERGE_PASSES: &str = "MERGE_PASSES";
    /// Shuffle bytes reduce tasks fetched to local disk rather than memory (beyond their share
    /// of `--task-memory`).
    pub const REDUCE_SHUFFLE_DISK_BYTES: &str = "REDUCE_SHUFFLE_DISK_BYTES";
    /// Shuffle bytes fetched by reduce tasks.
    pub const REDUCE_SHUFFLE_BYTES: &str = "REDUCE_SHUFFLE_BYTES";
    /// Pairs read by reduce tasks.
    pub const REDUCE_INPUT_RECORDS: &str = "REDUCE_INPUT_RECORDS";
    /// Distinct keys seen by reduce tasks.
    pub const REDUCE_INPUT_GROUPS: &str = "REDUCE_INPUT_GROUPS";
    /// Records written by reduce tasks.
    pub const REDUCE_OUTPUT_RECORDS: &str = "REDUCE_OUTPUT_RECORDS";
    /// Bytes of output parts written.
    pub const OUTPUT_BYTES: &str = "OUTPUT_BYTES";
    /// Records (map) or key groups (reduce) skipped because user code panicked on them.
    pub const SKIPPED_RECORDS: &str = "SKIPPED_RECORDS";
    /// Input bytes map tasks read from their own machine's disk (`--local-data`).
    pub const LOCAL_BYTES_READ: &str = "LOCAL_BYTES_READ";
    /// Input bytes map tasks read from their worker's local cache (`--cache-dir`).
    pub const CACHE_BYTES_READ: &str = "CACHE_BYTES_READ";
    /// Shuffle bytes reduce tasks read from their worker's local cache.
    pub const SHUFFLE_CACHE_BYTES_READ: &str = "SHUFFLE_CACHE_BYTES_READ";
    /// Input bytes map tasks read from elsewhere.
    pub const REMOTE_BYTES_READ: &str = "REMOTE_BYTES_READ";
    /// Backup (speculative) attempts started for slow tasks.
    pub const BACKUP_ATTEMPTS: &str = "BACKUP_ATTEMPTS";
    /// Tasks whose backup attempt finished first.
    pub const BACKUP_ATTEMPTS_WON: &str = "BACKUP_ATTEMPTS_WON";
    /// Attempts taken back (killed, not failed) to give their slots to a starved job
    /// (`--preemption on`).
    pub const PREEMPTED_ATTEMPTS: &str = "PREEMPTED_ATTEMPTS";
    /// Input lines that were not valid UTF-8 (read with U+FFFD replacements).
    pub const MALFORMED_INPUT_LINES: &str = "MALFORMED_INPUT_LINES";
    /// GET requests (HEADs and ranged GETs included) an attempt made of object stores; see
    /// [`crate::counted`] for what counts as which request.
    pub const STORE_GET: &str = "STORE_GET";
    /// PUT requests: whole objects, copies, and each create, part and completion of a
    /// multipart upload.
    pub const STORE_PUT: &str = "STORE_PUT";
    /// LIST requests, one per page of up to 1,000 entries.
    pub const STORE_LIST: &str = "STORE_LIST";
    /// Objects deleted and multipart uploads aborted.
    pub const STORE_DELETE: &str = "STORE_DELETE";
    /// Bytes of object data GETs returned.
    pub const STORE_BYTES_READ: &str = "STORE_BYTES_READ";
    /// Bytes of payload PUTs sent.
    pub const STORE_BYTES_WRITTEN: &str = "STORE_BYTES_WRITTEN";
    /// Store calls made again after a transient failure (5xx, timeout, throttling).
    pub const STORE_RETRIES: &str = "STORE_RETRIES";
}

/// A set of named counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Counters(BTreeMap<String, i64>);

impl Counters {
    /// No counters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `n` to counter `name`.
    pub fn add(&mut self, name: &str, n: i64) {
        if let Some(v) = self.0.get_mut(name) {
            *v = v.saturating_add(n);
        } else {
            self.0.insert(name.to_string(), n);
        }
    }

    /// Adds every counter of `other`.
    pub fn merge(&mut self, other: &Counters) {
        for (k, v) in &other.0 {
            self.add(k, *v);
        }
    }

    /// A counter's value (0 when never touched).
    pub fn get(&self, name: &str) -> i64 {
        self.0.get(name).copied().unwrap_or(0)
    }

    /// All counters by name.
    pub fn as_map(&self) -> &BTreeMap<String, i64> {
        &self.0
    }

    /// Takes the map.
    pub fn into_map(self) -> BTreeMap<String, i64> {
        self.0
    }
}

impl From<BTreeMap<String, i64>> for Counters {
    fn from(m: BTreeMap<String, i64>) -> Self {
        Counters(m)
    }
}
