//! The coordinator's journal: what a restarted (or standby) coordinator needs to resume every
//! job without re-running committed tasks.
//!
//! Records are appended in the order the state machine made its decisions, in batches, each
//! batch one object `STORE/journal/NNNNNNNNNNNN` (JSON lines) written with a create-only put:
//! two coordinators can never both write entry N, so a coordinator that finds its next entry
//! taken knows another has taken over and stops.
//!
//! Every `--journal-snapshot-every` records the writer writes a snapshot as its next entry:
//! a first line `{"snapshot":1,"jobs":J,"records":R}`, then the compacted records that
//! rebuild the state (see [`crate::snapshot`]); it stands for every entry before it, which
//! are then deleted. On start, entries are read from the newest back to the latest snapshot
//! (or entry 0), each one present, and replayed in order into a fresh
//! [`crate::core::Core`]; older entries, left by a crash between a snapshot and the deletes,
//! are ignored (and deleted by the new leader). A journal written before snapshots existed
//! is one without a snapshot and reads as before; coordinators that predate snapshots cannot
//! read a compacted journal (entry 0 is gone).
//!
//! What is journalled: job submissions (with their splits), pipeline stage starts (which
//! stage, with its splits), task successes (with the map output index and the winning
//! attempt's counters; the attempt number names the stage), lost map outputs, the start of a
//! job's commit, job ends, and that an ended job's data is deleted. Running attempts are not: after
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
use crate::snapshot::{self, Compactor};
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
    /// A pipeline stage started over these splits.
    StageStarted {
        /// The job.
        job: JobId,
        /// Which stage (from 0). Absent in journals written when stages ran one at a time,
        /// in order: such a record started the first stage not started yet.
        #[serde(default)]
        stage: Option<usize>,
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
    /// An ended and cleaned job passed the history limits (`--history-jobs`,
    /// `--history-age`): it is forgotten, as if it had never been submitted.
    JobForgotten {
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
#[non_exhaustive]
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
    /// An entry between the latest snapshot and the newest entry is not there.
    #[error("journal entry {url} is corrupt: entry {entry} is missing")]
    Missing {
        /// The entry read before the gap.
        url: String,
        /// The entry that is missing.
        entry: u64,
    },
}

fn entry_name(n: u64) -> String {
    format!("{n:012}")
}

/// The journal's directory under a store root.
pub fn dir(store: &StoreUrl) -> StoreUrl {
    store.join("journal/")
}

/// What replay needs of the journal.
#[derive(Clone, Debug, Default)]
pub struct Contents {
    /// The records of the latest snapshot, then of every entry after it, in order.
    pub records: Vec<Record>,
    /// The number of the next entry to write.
    pub next: u64,
    /// Records written after the latest snapshot (all of them if there is none).
    pub since_snapshot: u64,
    /// The latest snapshot's entry, if there is one.
    pub snapshot: Option<u64>,
    /// Entries older than the latest snapshot, which it stands for: left by a crash
    /// between writing a snapshot and deleting what it covers.
    pub stale: Vec<u64>,
}

/// How often an entry deleted while it is being read (by a leader compacting the journal)
/// makes the read start over before it gives up.
const READ_TRIES: u32 = 5;

/// Reads the journal: the latest snapshot and every entry after it.
pub async fn read_all(store: &StoreUrl) -> Result<Contents, JournalError> {
    let mut tries = 0;
    loop {
        match read_once(store).await {
            // A leader deleted entries its new snapshot covers: read again, from that. A
            // listing is not taken at one instant either, so it may have missed the new
            // snapshot and the deleted entries both: a gap is read again too.
            Err(JournalError::Store(StoreError::NotFound { .. }) | JournalError::Missing { .. })
                if tries + 1 < READ_TRIES =>
            {
                tries += 1
            }
            other => return other,
        }
    }
}

async fn read_once(store: &StoreUrl) -> Result<Contents, JournalError> {
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
    let next = names.last().map_or(0, |(n, _)| n + 1);
    // Newest first, back to the latest snapshot or entry 0; every entry in between present.
    let mut entries = Vec::new();
    let mut base = None;
    let mut expected = next;
    for (n, url) in names.iter().rev() {
        if *n + 1 != expected {
            return Err(missing(url, expected - 1));
        }
        expected = *n;
        let bytes = match os.get(&url.path()).await {
            Ok(got) => got.bytes().await,
            Err(e) => Err(e),
        }
        .map_err(|e| StoreError::from_store(url.as_str(), e))?;
        let (snapshot, records) = parse_entry(url, &bytes)?;
        entries.push(records);
        if snapshot {
            base = Some(*n);
            break;
        }
    }
    if base.is_none() && expected != 0 {
        let url = names.first().map_or_else(|| dir.to_string(), |(_, u)| u.to_string());
        return Err(JournalError::Missing { url, entry: expected - 1 });
    }
    let since_snapshot = entries.iter().take(entries.len() - usize::from(base.is_some())).map(Vec::len).sum::<usize>();
    let stale = names.iter().map(|(n, _)| *n).filter(|n| base.is_some_and(|b| *n < b)).collect();
    let records = entries.into_iter().rev().flatten().collect();
    Ok(Contents { records, next, since_snapshot: since_snapshot as u64, snapshot: base, stale })
}

fn missing(url: &StoreUrl, n: u64) -> JournalError {
    JournalError::Missing { url: url.to_string(), entry: n }
}

/// An entry's records, and whether it is a snapshot (its first line a [`snapshot::Header`]).
fn parse_entry(url: &StoreUrl, bytes: &[u8]) -> Result<(bool, Vec<Record>), JournalError> {
    let corrupt = |e: serde_json::Error| JournalError::Corrupt { url: url.to_string(), reason: e.to_string() };
    let mut lines = bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()).peekable();
    let header = lines.peek().and_then(|l| serde_json::from_slice::<snapshot::Header>(l).ok());
    if let Some(h) = &header {
        if h.snapshot != snapshot::FORMAT {
            return Err(JournalError::Corrupt {
                url: url.to_string(),
                reason: format!("snapshot format {} is not one this coordinator reads", h.snapshot),
            });
        }
        lines.next();
    }
    let records = lines.map(|l| serde_json::from_slice(l).map_err(corrupt)).collect::<Result<_, _>>()?;
    Ok((header.is_some(), records))
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

/// How the writer takes snapshots (see [`crate::snapshot`]).
#[derive(Debug)]
pub struct Snapshots {
    /// A snapshot once this many records have been written since the last one (0: never).
    pub every: u64,
    /// The compacted records of every entry so far (from the journal as replayed).
    pub state: Compactor,
    /// Records written since the last snapshot.
    pub since: u64,
    /// The oldest entry that may still exist and that the next snapshot covers: the
    /// latest snapshot's, or 0.
    pub low: u64,
    /// Older entries that the latest snapshot covers, still to delete.
    pub stale: Vec<u64>,
}

impl Snapshots {
    /// Snapshots every `every` records, for a writer resuming after `contents` (replayed).
    pub fn after(contents: &Contents, every: u64) -> Self {
        Snapshots {
            every,
            state: Compactor::new(contents.records.iter().cloned()),
            since: contents.since_snapshot,
            low: contents.snapshot.unwrap_or(0),
            stale: contents.stale.clone(),
        }
    }
}

impl Journal {
    /// Starts the writer at entry `next`, without snapshots. If another coordinator writes
    /// an entry first, or an entry cannot be written for `give_up`, the writer stops, says
    /// why in `failed` and cancels `lost`: a coordinator whose decisions are no longer
    /// durable must stop acting.
    pub fn start(store: &StoreUrl, next: u64, give_up: Duration, lost: CancellationToken) -> Journal {
        Self::start_with(store, next, None, give_up, lost)
    }

    /// Like [`Journal::start`], taking snapshots as `snapshots` say.
    pub fn start_with(
        store: &StoreUrl,
        next: u64,
        snapshots: Option<Snapshots>,
        give_up: Duration,
        lost: CancellationToken,
    ) -> Journal {
        let (tx, rx) = mpsc::unbounded_channel();
        let (done_tx, persisted) = watch::channel(0u64);
        let failed = Arc::new(std::sync::OnceLock::new());
        let writer = Writer { dir: dir(store), give_up, done: done_tx, failed: failed.clone(), lost, snapshots };
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
    snapshots: Option<Snapshots>,
}

impl Writer {
    async fn run(mut self, mut next: u64, mut rx: mpsc::UnboundedReceiver<Record>) {
        // Left by a crash after the latest snapshot was written.
        let stale = self.snapshots.as_mut().map(|s| std::mem::take(&mut s.stale)).unwrap_or_default();
        self.delete(stale);
        if self.snapshot_due() && self.snapshot(&mut next).await.is_err() {
            return;
        }
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
                self.fail(&url, why);
                return;
            }
            next += 1;
            written += batch.len() as u64;
            self.done.send_replace(written);
            if let Some(s) = &mut self.snapshots {
                s.since += batch.len() as u64;
                s.state.extend(batch);
            }
            if self.snapshot_due() && self.snapshot(&mut next).await.is_err() {
                return;
            }
        }
    }

    fn fail(&self, url: &StoreUrl, why: JournalFailure) {
        tracing::error!(entry = %url, error = %why, "journal lost; this coordinator stops");
        let _ = self.failed.set(why);
        self.lost.cancel();
    }

    fn snapshot_due(&self) -> bool {
        self.snapshots.as_ref().is_some_and(|s| s.every > 0 && s.since >= s.every)
    }

    /// Writes a snapshot as entry `next` (fenced like any entry), then deletes the entries
    /// it covers in the background. Err once the writer has failed.
    async fn snapshot(&mut self, next: &mut u64) -> Result<(), ()> {
        let Some(s) = &self.snapshots else { return Ok(()) };
        let (body, jobs, records) = (s.state.encode(), s.state.jobs(), s.state.len());
        let bytes = body.len();
        let url = self.dir.join(&entry_name(*next));
        if let Err(why) = self.write(&url, body).await {
            self.fail(&url, why);
            return Err(());
        }
        let Some(s) = &mut self.snapshots else { return Ok(()) };
        tracing::info!(entry = *next, jobs, records, bytes, covers = *next - s.low, "journal snapshot written");
        let covered: Vec<u64> = (s.low..*next).collect();
        s.low = *next;
        s.since = 0;
        *next += 1;
        self.delete(covered);
        Ok(())
    }

    /// Deletes entries a snapshot covers, in the background: one still there when this
    /// coordinator stops is ignored by replay, and deleted by the next leader.
    fn delete(&self, entries: Vec<u64>) {
        if entries.is_empty() {
            return;
        }
        let dir = self.dir.clone();
        tokio::spawn(async move {
            let Ok(store) = dir.store() else { return };
            let paths = entries.iter().map(|n| Ok(dir.join(&entry_name(*n)).path())).collect::<Vec<_>>();
            let mut deleted = store.delete_stream(futures::stream::iter(paths).boxed());
            while let Some(r) = deleted.next().await {
                match r {
                    Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => tracing::warn!(error = %e, "could not delete a journal entry a snapshot covers"),
                }
            }
        });
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A job's submission record (its spec matters not here).
    fn submitted(seq: u64) -> Record {
        let url = |p: &str| StoreUrl::parse(p).unwrap();
        let spec = JobSpec {
            name: "wordcount".into(),
            inputs: vec![url("memory:///in/")],
            output: url(&format!("memory:///out-{seq}/")),
            reducers: 1,
            split_size: 100,
            params: Default::default(),
            priority: 0,
            skip_bad_records: false,
            stages: Vec::new(),
            side: Default::default(),
            formats: Default::default(),
            generate_rows: 0,
        };
        Record::JobSubmitted { id: JobId::new(1, seq), seq, spec: Box::new(spec), splits: Vec::new(), submitted_ms: 1 }
    }

    fn ended(seq: u64) -> Record {
        Record::JobEnded { job: JobId::new(1, seq), outcome: Ended::Killed, finished_ms: 2 }
    }

    /// Appends records one entry each.
    async fn write_each(journal: &Journal, records: &[Record]) {
        for r in records {
            let n = journal.append(vec![r.clone()]);
            assert!(journal.durable(n, Duration::from_secs(10)).await);
        }
    }

    async fn entries(store: &StoreUrl) -> Vec<u64> {
        let dir = dir(store);
        let metas: Vec<_> =
            futures::TryStreamExt::try_collect(dir.store().unwrap().list(Some(&dir.path()))).await.unwrap();
        let mut names: Vec<u64> = metas.iter().filter_map(|m| m.location.filename()?.parse().ok()).collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn a_snapshot_stands_for_the_entries_before_it_even_when_a_crash_left_them() {
        let tmp = tempfile::tempdir().unwrap();
        let store = StoreUrl::from_user(&format!("{}/store/", tmp.path().display())).unwrap();
        let first: Vec<Record> = (1..=5).flat_map(|n| [submitted(n), ended(n)]).collect();
        let plain = Journal::start(&store, 0, Duration::from_secs(5), CancellationToken::new());
        write_each(&plain, &first).await;
        let read = read_all(&store).await.unwrap();
        assert_eq!((read.records.len(), read.next, read.snapshot, read.since_snapshot), (10, 10, None, 10));

        // A crash right after a snapshot (entry 10) was written: the entries it covers stay.
        let snapshot = Compactor::new(first.clone());
        let opts = PutOptions { mode: PutMode::Create, ..Default::default() };
        let url = dir(&store).join(&entry_name(10));
        store.store().unwrap().put_opts(&url.path(), snapshot.encode().into(), opts).await.unwrap();
        let read = read_all(&store).await.unwrap();
        assert_eq!(read.records, snapshot.records().cloned().collect::<Vec<_>>());
        assert_eq!((read.next, read.snapshot, read.since_snapshot), (11, Some(10), 0));
        assert_eq!(read.stale, (0..10).collect::<Vec<_>>());

        // The next leader deletes them, and snapshots again after 4 more records: entries
        // 11 to 14, then the snapshot 15, then 16.
        let more: Vec<Record> = (6..=7).flat_map(|n| [submitted(n), ended(n)]).chain([submitted(8)]).collect();
        let every = Snapshots::after(&read, 4);
        let journal =
            Journal::start_with(&store, read.next, Some(every), Duration::from_secs(5), CancellationToken::new());
        write_each(&journal, &more).await;
        let mut all = first.clone();
        all.extend(more.clone());
        let read = read_all(&store).await.unwrap();
        assert_eq!((read.next, read.snapshot, read.since_snapshot), (17, Some(15), 1));
        let mut expected: Vec<Record> = Compactor::new(all[..all.len() - 1].to_vec()).records().cloned().collect();
        expected.push(submitted(8));
        assert_eq!(read.records, expected);
        // Deleting what a snapshot covers runs in the background: bounded wait.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while entries(&store).await != [15, 16] && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(entries(&store).await, [15, 16]);
    }
}
