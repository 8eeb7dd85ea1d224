//! The coordinator's journal: what a restarted (or standby) coordinator needs to resume every
//! job without re-running committed tasks.
//!
//! Records are appended in the order the state machine made its decisions, in batches, each
//! batch one object `STORE/journal/NNNNNNNNNNNN` (JSON lines) written with a create-only put:
//! two coordinators can never both write entry N, so a coordinator that finds its next entry
//! taken knows another has taken over and stops. On start, every entry is read back in order
//! and replayed into a fresh [`crate::core::Core`].
//!
//! What is journalled: job submissions (with their splits), task successes (with the map
//! output index and the winning attempt's counters), lost map outputs, the start of a job's
//! commit, job ends, and that an ended job's data is deleted. Running attempts are not: after
//! a restart they simply run again.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use quern_api::split::Split;
use quern_api::{JobId, StoreError, StoreUrl, TaskKind, WorkerId};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::job::JobSpec;
use crate::task::MapOutput;

/// One decision of the state machine worth surviving a restart.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Record {
    /// A job was accepted.
    JobSubmitted {
        /// Its id.
        id: JobId,
        /// Submission order.
        seq: u64,
        /// What was asked.
        spec: Box<JobSpec>,
        /// Its splits (inputs are not listed again).
        splits: Vec<Split>,
        /// Wall-clock submit time.
        submitted_ms: u64,
    },
    /// A task's attempt won.
    TaskSucceeded {
        /// The job.
        job: JobId,
        /// Map or reduce.
        kind: TaskKind,
        /// Task index.
        index: u32,
        /// Winning attempt.
        attempt: u32,
        /// Where it ran.
        worker: WorkerId,
        /// Map output index (maps).
        output: Option<MapOutput>,
        /// Its counters.
        counters: BTreeMap<String, i64>,
        /// How close to its data a map ran.
        #[serde(default)]
        level: Option<crate::placement::Level>,
    },
    /// A pipeline's next stage started over these splits.
    StageStarted {
        /// The job.
        job: JobId,
        /// The new stage's splits.
        splits: Vec<Split>,
    },
    /// A map's output was found missing or corrupt; the map runs again.
    MapOutputLost {
        /// The job.
        job: JobId,
        /// The map task.
        index: u32,
        /// The attempt whose output was lost.
        attempt: u32,
    },
    /// Every part is committed; `_SUCCESS` is being written.
    JobCommitting {
        /// The job.
        job: JobId,
    },
    /// A job ended.
    JobEnded {
        /// The job.
        job: JobId,
        /// How.
        outcome: Ended,
        /// Wall-clock end time.
        finished_ms: u64,
    },
    /// An ended job's data (its scratch and temporary directories) is deleted: a sweep need
    /// not look for it again.
    JobCleaned {
        /// The job.
        job: JobId,
    },
}

/// How a job ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Ended {
    /// Output complete.
    Succeeded,
    /// Gave up.
    Failed {
        /// Why.
        error: String,
    },
    /// Killed by a user.
    Killed,
}

/// Reading or writing the journal failed.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An entry is not a journal batch.
    #[error("journal entry {url} is corrupt: {reason}")]
    Corrupt {
        /// The entry.
        url: String,
        /// What was wrong.
        reason: String,
    },
}

fn entry_name(n: u64) -> String {
    format!("{n:012}")
}

/// The journal's directory under a store root.
pub fn dir(store: &StoreUrl) -> StoreUrl {
    store.join("journal/")
}

/// Reads every entry in order; returns the records and the number of the next entry.
pub async fn read_all(store: &StoreUrl) -> Result<(Vec<Record>, u64), JournalError> {
    let dir = dir(store);
    let os = dir.store()?;
    let mut names = Vec::new();
    let mut list = os.list(Some(&dir.path()));
    while let Some(meta) = list.next().await {
        let meta = meta.map_err(|e| StoreError::from_store(dir.as_str(), e))?;
        let url = dir.with_path(&meta.location);
        if let Ok(n) = url.base_name().parse::<u64>() {
            names.push((n, url));
        }
    }
    names.sort();
    let mut records = Vec::new();
    for (expected, (n, url)) in names.iter().enumerate() {
        if *n != expected as u64 {
            return Err(JournalError::Corrupt { url: url.to_string(), reason: format!("entry {expected} is missing") });
        }
        let bytes = os
            .get(&url.path())
            .await
            .map_err(|e| StoreError::from_store(url.as_str(), e))?
            .bytes()
            .await
            .map_err(|e| StoreError::from_store(url.as_str(), e))?;
        for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let rec = serde_json::from_slice(line)
                .map_err(|e| JournalError::Corrupt { url: url.to_string(), reason: e.to_string() })?;
            records.push(rec);
        }
    }
    Ok((records, names.len() as u64))
}

/// The writing end: records go in under the coordinator's lock (so in decision order) and a
/// background task writes them out in batches.
#[derive(Clone)]
pub struct Journal {
    tx: mpsc::UnboundedSender<Record>,
    enqueued: Arc<AtomicU64>,
    persisted: watch::Receiver<u64>,
    failed: Arc<std::sync::OnceLock<JournalFailure>>,
}

/// Why the journal writer stopped.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JournalFailure {
    /// Another coordinator wrote the next entry: it leads now.
    #[error("another coordinator wrote journal entry {0}")]
    Superseded(String),
    /// The store refused every write of an entry for too long.
    #[error("cannot write journal entry {entry} to the store: {error}")]
    Unwritable {
        /// The entry.
        entry: String,
        /// The store's last error.
        error: String,
    },
}

impl Journal {
    /// Starts the writer at entry `next`. If another coordinator writes an entry first, or
    /// an entry cannot be written for `give_up`, the writer stops, says why in `failed` and
    /// cancels `lost`: a coordinator whose decisions are no longer durable must stop acting.
    pub fn start(store: &StoreUrl, next: u64, give_up: Duration, lost: CancellationToken) -> Journal {
        let (tx, rx) = mpsc::unbounded_channel();
        let (done_tx, persisted) = watch::channel(0u64);
        let failed = Arc::new(std::sync::OnceLock::new());
        let writer = Writer { dir: dir(store), give_up, done: done_tx, failed: failed.clone(), lost };
        tokio::spawn(writer.run(next, rx));
        Journal { tx, enqueued: Arc::new(AtomicU64::new(0)), persisted, failed }
    }

    /// Why the writer stopped, once it has.
    pub fn failure(&self) -> Option<JournalFailure> {
        self.failed.get().cloned()
    }

    /// Queues records; returns how many have been queued in all, so a caller can wait for its
    /// own to be durable.
    pub fn append(&self, records: Vec<Record>) -> u64 {
        let n = records.len() as u64;
        for r in records {
            let _ = self.tx.send(r);
        }
        self.enqueued.fetch_add(n, Ordering::SeqCst) + n
    }

    /// Records queued so far.
    pub fn enqueued(&self) -> u64 {
        self.enqueued.load(Ordering::SeqCst)
    }

    /// Waits until the first `upto` records are written, at most `limit`.
    pub async fn durable(&self, upto: u64, limit: Duration) -> bool {
        let mut rx = self.persisted.clone();
        tokio::time::timeout(limit, rx.wait_for(|&p| p >= upto)).await.is_ok_and(|r| r.is_ok())
    }
}

/// The background writer of journal entries.
struct Writer {
    dir: StoreUrl,
    give_up: Duration,
    done: watch::Sender<u64>,
    failed: Arc<std::sync::OnceLock<JournalFailure>>,
    lost: CancellationToken,
}

impl Writer {
    async fn run(self, mut next: u64, mut rx: mpsc::UnboundedReceiver<Record>) {
        let mut written = 0u64;
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            while let Ok(more) = rx.try_recv() {
                batch.push(more);
            }
            let mut body = Vec::new();
            for r in &batch {
                // Serialising plain data cannot fail.
                if let Ok(line) = serde_json::to_vec(r) {
                    body.extend_from_slice(&line);
                    body.push(b'\n');
                }
            }
            let url = self.dir.join(&entry_name(next));
            if let Err(why) = self.write(&url, body).await {
                tracing::error!(entry = %url, error = %why, "journal lost; this coordinator stops");
                let _ = self.failed.set(why);
                self.lost.cancel();
                return;
            }
            next += 1;
            written += batch.len() as u64;
            self.done.send_replace(written);
        }
    }

    /// Writes one entry, retrying transient errors with backoff for at most `give_up`.
    async fn write(&self, url: &StoreUrl, body: Vec<u8>) -> Result<(), JournalFailure> {
        let store = self
            .dir
            .store()
            .map_err(|e| JournalFailure::Unwritable { entry: url.to_string(), error: e.to_string() })?;
        let deadline = tokio::time::Instant::now() + self.give_up;
        let mut delay = Duration::from_millis(50);
        let payload = PutPayload::from(body);
        loop {
            let opts = PutOptions { mode: PutMode::Create, ..Default::default() };
            // A put that hangs is as bad as one that fails: bounded by what is left.
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let error = match tokio::time::timeout(left, store.put_opts(&url.path(), payload.clone(), opts)).await {
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(object_store::Error::AlreadyExists { .. })) => {
                    return Err(JournalFailure::Superseded(url.to_string()));
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => "the store did not answer in time".to_string(),
            };
            if tokio::time::Instant::now() + delay > deadline {
                return Err(JournalFailure::Unwritable { entry: url.to_string(), error });
            }
            tracing::warn!(entry = %url, %error, "journal write failed; retrying");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }
}
