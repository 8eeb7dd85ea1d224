//! Running one assignment: the I/O around [`crate::map`] and [`crate::reduce`].
//!
//! Storage I/O happens on tokio; all CPU work goes to rayon through [`spawn_compute`], which
//! also turns a panic in user code (building the job from its parameters included) into a
//! failed attempt instead of a dead worker or a lost slot.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use quern_api::counted::StoreStats;
use quern_api::counters::names;
use quern_api::format::ObjectFormat;
use quern_api::split::{GENERATE_URL, has_enough};
use quern_api::{
    AttemptId, Counters, DynJob, InputFormat, OutputFormat, Params, Registry, StoreError, StoreUrl, TaskInfo, WorkerId,
    pb,
};
use tokio_util::sync::CancellationToken;

use crate::blob::{Blob, read_piece};
use crate::error::{InputError, TaskError};
use crate::map::{Inputs, map_only_split, map_split};
use crate::merge::{RunBytes, SortedRun, merge_passes};
use crate::output::PartSink;
use crate::reduce::reduce_runs;
use crate::shuffle::{ShuffleError, checksum};
use crate::spill::TaskMemory;
use crate::streamed::map_input;
use quern_api::input::{InputLimits, SplitData, arrow_split};
use tempfile::TempDir;

/// Runs `f` on the rayon pool and awaits it; a panic becomes [`TaskError::User`].
pub async fn spawn_compute<T, F>(f: F) -> Result<T, TaskError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    spawn_caught(f).await.map_err(|msg| TaskError::User(format!("user code panicked: {msg}")))
}

/// Runs `f` on the rayon pool and awaits it; a panic comes back as its message, for the
/// caller to say what kind of failure it was.
async fn spawn_caught<T, F>(f: F) -> Result<T, String>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    // The attempt's span follows its work onto the pool: what user code logs there is the
    // attempt's (see `logs`).
    let span = tracing::Span::current();
    rayon::spawn(move || {
        let result = span.in_scope(|| std::panic::catch_unwind(AssertUnwindSafe(f)));
        let _ = tx.send(result);
    });
    match rx.await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(panic)) => Err(panic_message(panic.as_ref())),
        Err(_) => Err("compute task vanished".into()),
    }
}

/// The message a panic was raised with (`panic!` gives a `&str` or a `String`).
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    quern_api::panic_message(panic).unwrap_or_else(|| "a panic without a message".into())
}

/// Retries transient store failures with exponential backoff; not-found is final.
pub async fn with_retries<T, F, Fut>(what: &str, mut op: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let mut delay = Duration::from_millis(50);
    let mut attempt = 1;
    loop {
        match op().await {
            Err(StoreError::Io { url, source }) if attempt < 5 => {
                tracing::warn!(%url, error = %source, attempt, "store call failed for {what}; retrying");
                quern_api::counted::StoreStats::retried();
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// What a task needs from its worker.
#[derive(Clone)]
pub struct TaskEnv {
    /// Jobs this worker can run.
    pub registry: Registry,
    /// For commit requests.
    pub client: quern_api::client::WorkerClient,
    /// This worker's current identity.
    pub worker_id: WorkerId,
    /// The secret that proves it (from registration), sent with every call.
    pub worker_secret: String,
    /// URL prefixes of input on this machine's own disk.
    pub local_data: Vec<String>,
    /// The local cache, with `--cache-dir`.
    pub cache: Option<Arc<crate::cache::Cache>>,
    /// Side data already fetched, by (job, URL): each is shipped to this worker once per job.
    pub side: Arc<std::sync::Mutex<std::collections::HashMap<(String, String), Bytes>>>,
    /// Steps the running attempt has made (input read, segments fetched, output computed and
    /// written), sent with heartbeats: an attempt whose count stands still for the
    /// coordinator's `--task-timeout` is failed and run again.
    pub progress: Arc<std::sync::atomic::AtomicU64>,
    /// What one attempt may hold in its buffers (see [`TaskMemory`]).
    pub memory: TaskMemory,
    /// Where attempts keep their local files (spills, fetched segments, output beyond
    /// memory): a directory of their own under this one (None: the system's temporary
    /// directory).
    pub spill_root: Option<std::path::PathBuf>,
    /// How map output segments are compressed.
    pub shuffle_compression: crate::shuffle::Codec,
}

impl TaskEnv {
    /// Counts one step of progress of the running attempt.
    pub(crate) fn step(&self) {
        self.progress.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The side data object `url` of job `job`, fetched once per worker.
async fn side_data(env: &TaskEnv, job: &str, url: &str) -> Result<Bytes, TaskError> {
    let key = (job.to_string(), url.to_string());
    if let Some(b) = env.side.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return Ok(b.clone());
    }
    let (u, store) = self::url(url)?;
    let path = u.path();
    // The coordinator checked the size at submit, but the object may have been replaced
    // since: look before reading it all.
    let limits = InputLimits::DEFAULT;
    let fetched = with_retries("side data", || async {
        let got = store.get(&path).await.map_err(|e| StoreError::from_store(u.as_str(), e))?;
        if let Err(too_large) = limits.check_read("side data", got.meta.size) {
            return Ok(Err(too_large));
        }
        got.bytes().await.map(Ok).map_err(|e| StoreError::from_store(u.as_str(), e))
    })
    .await
    .map_err(TaskError::Input)?;
    let bytes = fetched.map_err(|source| TaskError::BadInput { url: url.to_string(), source })?;
    let mut memo = env.side.lock().unwrap_or_else(|e| e.into_inner());
    // Side data is small, but jobs keep coming: forget other jobs' now and then.
    if memo.len() > 64 {
        memo.clear();
    }
    memo.insert(key, bytes.clone());
    Ok(bytes)
}

/// What an assignment says about how to run its task.
struct AssignmentInfo {
    skip: bool,
    reducers: u32,
    input_format: InputFormat,
    output_format: OutputFormat,
}

/// Runs one assignment to its outcome. Every store request the attempt makes counts in its
/// own [`StoreStats`] scope, reported with its other counters as `STORE_GET`, `STORE_PUT`, …
/// (only a committed attempt's counters count in the job). No store call of an attempt runs in
/// a task of its own, so none escapes the scope.
pub async fn run_assignment(
    env: TaskEnv,
    a: pb::TaskAssignment,
    cancel: CancellationToken,
) -> Result<pb::Succeeded, TaskError> {
    let stats = Arc::new(StoreStats::new());
    let mut succeeded = StoreStats::scope(stats.clone(), run_attempt(env, a, cancel)).await?;
    let mut counters = Counters::from(std::mem::take(&mut succeeded.counters));
    stats.snapshot().add_to(&mut counters);
    succeeded.counters = counters.into_map();
    Ok(succeeded)
}

async fn run_attempt(
    env: TaskEnv,
    a: pb::TaskAssignment,
    cancel: CancellationToken,
) -> Result<pb::Succeeded, TaskError> {
    let attempt = AttemptId::try_from(a.attempt.as_ref()).map_err(|e| TaskError::Config(e.to_string()))?;
    let mut params = Params::new(a.params.clone());
    for (name, side_url) in &a.side {
        params = params.with_side(name, side_data(&env, &attempt.task.job.to_string(), side_url).await?);
    }
    // Building a job runs user code (the factory parsing the parameters and side data), so it
    // runs under the same panic guard as map and reduce: a factory that panics on a hostile
    // spec fails this attempt like bad parameters do, and the worker and its slot live on.
    let (registry, name) = (env.registry.clone(), a.job.clone());
    let job = spawn_caught(move || registry.create(&name, &params))
        .await
        .map_err(|msg| TaskError::Config(format!("building job {:?} panicked: {msg}", a.job)))?
        .map_err(|e| TaskError::Config(e.to_string()))?;
    let bad_format = |e: quern_api::format::FormatError| TaskError::Config(e.to_string());
    let info = AssignmentInfo {
        // Skipping mode starts with the second attempt: the first one failing is what says
        // there may be a bad record (MapReduce paper, 4.6).
        skip: a.skip_bad_records && attempt.attempt > 1,
        reducers: a.reducers,
        input_format: a.input_format.parse().map_err(bad_format)?,
        output_format: a.output_format.parse().map_err(bad_format)?,
    };
    // The attempt's local files go with this directory: when the attempt ends, however it
    // ends, and when any compute still using it is done.
    let dir = crate::spill::attempt_dir(env.spill_root.as_deref())
        .map_err(|e| TaskError::Internal(format!("creating a local directory for spills: {e}")))?;
    match a.task {
        Some(pb::task_assignment::Task::Map(m)) => run_map(&env, &attempt, job, m, &info, (&cancel, &dir)).await,
        Some(pb::task_assignment::Task::Reduce(r)) => run_reduce(&env, &attempt, job, r, &info, (&cancel, &dir)).await,
        None => Err(TaskError::Config("assignment without a task".into())),
    }
}

pub(crate) fn url(s: &str) -> Result<(StoreUrl, Arc<dyn ObjectStore>), TaskError> {
    let u = StoreUrl::parse(s).map_err(|e| TaskError::Config(e.to_string()))?;
    let store = u.store().map_err(TaskError::Store)?;
    Ok((u, store))
}

pub(crate) async fn get_range(
    store: &Arc<dyn ObjectStore>,
    u: &StoreUrl,
    range: std::ops::Range<u64>,
) -> Result<Bytes, StoreError> {
    let path = u.path();
    with_retries("read", || async {
        store.get_range(&path, range.clone()).await.map_err(|e| StoreError::from_store(u.as_str(), e))
    })
    .await
}

/// Objects larger than this (a big map output) go up as multipart uploads: S3 refuses a
/// single PUT over 5 GiB, and a failed piece is retried alone instead of the whole object.
const MULTIPART_OVER: usize = 64 << 20;
/// The pieces of such an upload (S3 wants at least 5 MiB for all but the last).
const PIECE: usize = 16 << 20;

async fn put(store: &Arc<dyn ObjectStore>, u: &StoreUrl, bytes: Bytes) -> Result<(), StoreError> {
    let path = u.path();
    with_retries("write", || async {
        if bytes.len() <= MULTIPART_OVER {
            store.put(&path, PutPayload::from_bytes(bytes.clone())).await.map(|_| ())
        } else {
            // `finish` aborts the upload when a piece or the completion fails.
            let upload = store.put_multipart(&path).await.map_err(|e| StoreError::from_store(u.as_str(), e))?;
            let mut pieces = object_store::WriteMultipart::new_with_chunk_size(upload, PIECE);
            pieces.put(bytes.clone());
            pieces.finish().await.map(|_| ())
        }
        .map_err(|e| StoreError::from_store(u.as_str(), e))
    })
    .await
}

/// Uploads `blob` to `u`: in one PUT when it is small and in memory, else as a multipart
/// upload streamed from its pieces, holding at most a few pieces in memory.
async fn upload(store: &Arc<dyn ObjectStore>, u: &StoreUrl, blob: &Blob) -> Result<(), TaskError> {
    if blob.len() <= MULTIPART_OVER as u64
        && let Some(bytes) = blob.in_memory()
    {
        return put(store, u, bytes).await.map_err(TaskError::Store);
    }
    let path = u.path();
    let store_error = |e| StoreError::from_store(u.as_str(), e);
    let local = with_retries("write", || async {
        let upload = store.put_multipart(&path).await.map_err(store_error)?;
        let mut pieces = object_store::WriteMultipart::new_with_chunk_size(upload, PIECE);
        let mut reader = match blob.reader() {
            Ok(r) => r,
            Err(e) => {
                let _ = pieces.abort().await;
                return Ok(Err(e));
            }
        };
        loop {
            let chunk = match read_piece(reader, PIECE).await {
                Ok((r, chunk)) => {
                    reader = r;
                    chunk
                }
                Err(e) => {
                    let _ = pieces.abort().await;
                    return Ok(Err(e));
                }
            };
            if chunk.is_empty() {
                break;
            }
            // At most two pieces in flight besides the one being read.
            if let Err(e) = pieces.wait_for_capacity(2).await {
                let _ = pieces.abort().await;
                return Err(store_error(e));
            }
            pieces.put(chunk);
        }
        // `finish` aborts the upload when a piece or the completion fails.
        pieces.finish().await.map_err(store_error)?;
        Ok(Ok(()))
    })
    .await
    .map_err(TaskError::Store)?;
    local.map_err(|e| TaskError::Shuffle(e.into()))
}

/// Reads the split's bytes from its start through the end of its last line, which may be
/// at most `max_line` bytes long (else it would read the rest of an object without newlines).
async fn fetch_split(split: &pb::Split, max_line: usize) -> Result<Bytes, TaskError> {
    let (u, store) = url(&split.url)?;
    let (start, end, size) = (split.start, split.end.min(split.object_size), split.object_size);
    if start >= end {
        return Ok(Bytes::new());
    }
    let first = get_range(&store, &u, start..end).await.map_err(TaskError::Input)?;
    if has_enough(&first, start, end, size) {
        return Ok(first);
    }
    // The last line runs past the split's end: read on in growing steps until it ends.
    let mut buf = first.to_vec();
    let mut step = (64 * 1024u64).min(max_line as u64 + 1);
    let split_len = end - start;
    while !has_enough(&buf, start, end, size) {
        // No newline since the split's end: the line crossing it is at least this long.
        if (buf.len() as u64).saturating_sub(split_len) > max_line as u64 {
            return Err(TaskError::BadInput {
                url: split.url.clone(),
                source: InputError::LineTooLong { limit: max_line },
            });
        }
        let from = start + buf.len() as u64;
        let to = from.saturating_add(step).min(size);
        let more = get_range(&store, &u, from..to).await.map_err(TaskError::Input)?;
        if more.is_empty() {
            break;
        }
        buf.extend_from_slice(&more);
        step = (step * 2).min(max_line as u64 + 1);
    }
    Ok(Bytes::from(buf))
}

/// What a map task reads: the split's bytes (from the cache, this machine's disk or the
/// store) and the counter they count in.
pub(crate) async fn read_split(
    env: &TaskEnv,
    split: &pb::Split,
    format: ObjectFormat,
) -> Result<(SplitData, Option<&'static str>), TaskError> {
    if split.url == GENERATE_URL {
        return Ok((SplitData::Bytes(Bytes::new()), None));
    }
    if format == ObjectFormat::Parquet {
        return crate::columnar::read_parquet_split(env, split).await;
    }
    if format == ObjectFormat::Arrow && arrow_split::reads_in_parts(split.start, split.end, split.object_size) {
        return crate::columnar::read_arrow_split(env, split).await;
    }
    // Splits come from the coordinator, but their sizes from whoever submitted the job.
    let limits = InputLimits::DEFAULT;
    let whole = if format.splittable() { "split" } else { "object read whole" };
    limits
        .check_read(whole, split.end.saturating_sub(split.start))
        .map_err(|source| TaskError::BadInput { url: split.url.clone(), source })?;
    let local = env.local_data.iter().any(|p| split.url.starts_with(p.as_str()));
    // Only text reads past its split's end (to finish its last line).
    let text = format == ObjectFormat::Text(None);
    let cached = env.cache.as_ref().and_then(|c| {
        if text {
            c.get_from(&split.url, split.start, split.object_size)
                .filter(|b| has_enough(b, split.start, split.end, split.object_size))
        } else {
            c.get(&split.url, split.start, split.end, Some(split.object_size))
        }
    });
    if let Some(b) = cached {
        return Ok((SplitData::Bytes(b), Some(names::CACHE_BYTES_READ)));
    }
    let b = if text {
        fetch_split(split, limits.max_line_bytes).await?
    } else if split.start >= split.end {
        Bytes::new()
    } else {
        let (u, store) = url(&split.url)?;
        get_range(&store, &u, split.start..split.end).await.map_err(TaskError::Input)?
    };
    if let Some(c) = &env.cache {
        c.put(&split.url, split.start, split.object_size, &b);
    }
    Ok((SplitData::Bytes(b), Some(if local { names::LOCAL_BYTES_READ } else { names::REMOTE_BYTES_READ })))
}

async fn run_map(
    env: &TaskEnv,
    attempt: &AttemptId,
    job: Arc<dyn DynJob>,
    m: pb::MapTask,
    a: &AssignmentInfo,
    (cancel, dir): (&CancellationToken, &Arc<TempDir>),
) -> Result<pb::Succeeded, TaskError> {
    let split = m.split.ok_or_else(|| TaskError::Config("map task without a split".into()))?;
    let format = a.input_format.resolve(&split.url);
    let source = StoreUrl::parse(&split.url).map(|u| u.base_name()).unwrap_or_default();
    let input_url = if split.url == GENERATE_URL { String::new() } else { split.url.clone() };
    let task = TaskInfo::new(attempt.clone(), env.worker_id.clone());
    let (skip, reducers, output_format) = (a.skip, a.reducers, a.output_format);
    let progress = env.progress.clone();
    let (memory, codec, local) = (env.memory, env.shuffle_compression, dir.clone());
    if reducers == 0 {
        // Map-only: this task's output is a part, committed like a reduce task's; it stays in
        // memory up to a quarter of the budget, like a reduce task's.
        let work = move |inputs: &mut Inputs<'_>| {
            let mut part = PartSink::new(output_format, local.path(), memory.bytes() / 4)?;
            let (id, task) = ((&source[..], &input_url[..]), &task);
            let mut counters = map_only_split(job.as_ref(), inputs, id, task, skip, &progress, &mut part)?;
            let part = part.finish()?;
            counters.add(names::OUTPUT_BYTES, part.len() as i64);
            Ok::<_, TaskError>((part, counters))
        };
        let ((part, mut counters), read) = map_input(env, &split, format, (dir, cancel), work).await?;
        read.count(&mut counters);
        if cancel.is_cancelled() {
            return Err(TaskError::Cancelled);
        }
        commit_part(env, attempt, &m.temp_url, part).await?;
        return Ok(pb::Succeeded { counters: counters.into_map(), map_output: None });
    }
    let (out_url, out_store) = url(&m.output_url)?;
    let work = move |inputs: &mut Inputs<'_>| {
        let (id, task) = ((&source[..], &input_url[..]), &task);
        map_split(job.as_ref(), inputs, id, task, (reducers, codec), skip, &progress, (memory, local.path()))
    };
    let (mut result, read) = map_input(env, &split, format, (dir, cancel), work).await?;
    // Where the input came from: this worker's cache, its own disk, or elsewhere.
    read.count(&mut result.counters);
    if cancel.is_cancelled() {
        return Err(TaskError::Cancelled);
    }
    let object = result.object;
    env.step();
    upload(&out_store, &out_url, &object).await?;
    env.step();
    // Keep the output too: reducers scheduled here read it from local disk.
    if let Some(c) = &env.cache
        && let Ok(mut r) = object.reader()
    {
        c.put_from(out_url.as_str(), 0, object.len(), object.len(), &mut r);
    }
    Ok(pb::Succeeded {
        counters: result.counters.into_map(),
        map_output: Some(pb::MapOutput { partitions: result.segments }),
    })
}

/// Writes a part where only the coordinator can make it visible, then asks to commit: on
/// local files to this attempt's own temporary object, which the coordinator renames into
/// place; on stores without rename (S3) as a multipart upload the coordinator started and
/// completes only for the attempt it grants. A cut-off attempt can never touch the part.
async fn commit_part(env: &TaskEnv, attempt: &AttemptId, temp_url: &str, part: Blob) -> Result<(), TaskError> {
    env.step();
    let (temp_url, temp_store) = url(temp_url)?;
    let renames = temp_url.multipart_store().map_err(TaskError::Store)?.is_none();
    let upload_parts = if renames {
        upload(&temp_store, &temp_url, &part).await?;
        Vec::new()
    } else {
        upload_part(env, attempt, &part).await?
    };
    let mut client = env.client.clone();
    let resp = client
        .commit(pb::CommitRequest {
            worker_id: env.worker_id.to_string(),
            worker_secret: env.worker_secret.clone(),
            attempt: Some(attempt.into()),
            upload_parts,
        })
        .await
        .map(|r| r.into_inner())
        .unwrap_or_else(|s| pb::CommitResponse { granted: false, reason: s.message().to_string() });
    if !resp.granted {
        // A refused upload is the coordinator's to abort; a temporary object is ours.
        if renames {
            let _ = temp_store.delete(&temp_url.path()).await;
        }
        return Err(TaskError::CommitRefused(resp.reason));
    }
    Ok(())
}

/// Uploads `part` as the parts of the upload the coordinator starts for this attempt, one
/// upload part in memory at a time; returns the part ids to commit with.
async fn upload_part(env: &TaskEnv, attempt: &AttemptId, part_bytes: &Blob) -> Result<Vec<String>, TaskError> {
    let mut client = env.client.clone();
    let up = client
        .start_part(pb::StartPartRequest {
            worker_id: env.worker_id.to_string(),
            worker_secret: env.worker_secret.clone(),
            attempt: Some(attempt.into()),
        })
        .await
        .map_err(|s| TaskError::CommitRefused(s.message().to_string()))?
        .into_inner();
    let part = StoreUrl::parse(&up.part_url).map_err(|e| TaskError::Config(e.to_string()))?;
    let store = part
        .multipart_store()
        .map_err(TaskError::Store)?
        .ok_or_else(|| TaskError::Config(format!("{part}: the store has no multipart uploads")))?;
    // S3's limits: parts of 5 MiB to 5 GiB but the last; at least one part, empty or not.
    let size = usize::try_from(up.part_size.clamp(5 << 20, 5 << 30)).unwrap_or(usize::MAX);
    let path = part.path();
    let local = |e: std::io::Error| TaskError::Shuffle(e.into());
    let mut reader = part_bytes.reader().map_err(local)?;
    let mut ids = Vec::new();
    for i in 0.. {
        env.step();
        let (r, chunk) = read_piece(reader, size).await.map_err(local)?;
        reader = r;
        if chunk.is_empty() && i > 0 {
            break;
        }
        let id = with_retries("upload", || async {
            store
                .put_part(&path, &up.upload_id, i, PutPayload::from_bytes(chunk.clone()))
                .await
                .map_err(|e| StoreError::from_store(part.as_str(), e))
        })
        .await
        .map_err(TaskError::Store)?;
        ids.push(id.content_id);
        if chunk.len() < size {
            break;
        }
    }
    Ok(ids)
}

/// One map output's segment as a reducer fetched it.
struct Fetched {
    run: SortedRun,
    len: u64,
    /// Whether it came from the worker's cache rather than the store.
    from_cache: bool,
    /// Whether it went to a local file rather than memory.
    on_disk: bool,
}

/// Fetches one map output's segment for a reduce: into memory, or (`to_disk`) into a file
/// in `dir` by ranged reads of at most `piece` bytes, checking its CRC-32 as it arrives.
async fn fetch_segment(
    env: &TaskEnv,
    input: pb::ReduceInput,
    to_disk: bool,
    (dir, piece): (&std::path::Path, u64),
) -> Result<Fetched, TaskError> {
    let segment = input.segment.unwrap_or_default();
    let origin = (input.map_index, input.map_attempt);
    let lost = |reason: String| TaskError::MapOutputLost { map_index: origin.0, map_attempt: origin.1, reason };
    let local = |e: std::io::Error| TaskError::Shuffle(ShuffleError::Io(e));
    let (start, end) = (segment.offset, segment.offset + segment.length);
    let cache = env.cache.as_deref();
    let fetched = |bytes: RunBytes, from_cache: bool| {
        env.step();
        let run = SortedRun { bytes, records: segment.records, origin: Some(origin) };
        Fetched { run, len: segment.length, from_cache, on_disk: to_disk }
    };
    let check = |found: u32| {
        if found == segment.crc32 {
            Ok(())
        } else {
            Err(lost(ShuffleError::Checksum { expected: segment.crc32, found }.to_string()))
        }
    };
    if segment.length == 0 {
        check(checksum(&[]))?;
        return Ok(fetched(RunBytes::Memory(Bytes::new()), false));
    }
    if !to_disk {
        let (bytes, from_cache) = match cache.and_then(|c| c.get(&input.url, start, end, None)) {
            Some(hit) => (hit, true),
            None => {
                let (u, store) = url(&input.url)?;
                let bytes = get_range(&store, &u, start..end).await.map_err(|e| match e {
                    StoreError::NotFound { .. } => lost(e.to_string()),
                    e => TaskError::Store(e),
                })?;
                (bytes, false)
            }
        };
        if bytes.len() as u64 != segment.length {
            return Err(lost(format!("short read: {} of {} bytes", bytes.len(), segment.length)));
        }
        check(checksum(&bytes))?;
        return Ok(fetched(RunBytes::Memory(bytes), from_cache));
    }
    let (file, path) = tempfile::NamedTempFile::new_in(dir).map_err(local)?.into_parts();
    let mut crc = crc32fast::Hasher::new();
    let mut written = 0u64;
    let from_cache = match cache.and_then(|c| c.open_range(&input.url, start, end, None)) {
        Some(mut hit) => {
            let (w, c) = tokio::task::spawn_blocking(move || {
                let mut out = std::io::BufWriter::new(file);
                let mut buf = vec![0u8; 64 << 10];
                let (mut n, mut crc) = (0u64, crc32fast::Hasher::new());
                loop {
                    let got = std::io::Read::read(&mut hit, &mut buf)?;
                    if got == 0 {
                        break;
                    }
                    crc.update(&buf[..got]);
                    std::io::Write::write_all(&mut out, &buf[..got])?;
                    n += got as u64;
                }
                std::io::Write::flush(&mut out)?;
                Ok::<_, std::io::Error>((n, crc))
            })
            .await
            .map_err(|e| local(std::io::Error::other(e)))?
            .map_err(local)?;
            (written, crc) = (w, c);
            true
        }
        None => {
            use tokio::io::AsyncWriteExt;
            let (u, store) = url(&input.url)?;
            let mut out = tokio::fs::File::from_std(file);
            while written < segment.length {
                let from = start + written;
                let to = (from + piece).min(end);
                let bytes = get_range(&store, &u, from..to).await.map_err(|e| match e {
                    StoreError::NotFound { .. } => lost(e.to_string()),
                    e => TaskError::Store(e),
                })?;
                if bytes.len() as u64 != to - from {
                    return Err(lost(format!("short read: {} of {} bytes", bytes.len(), to - from)));
                }
                crc.update(&bytes);
                out.write_all(&bytes).await.map_err(local)?;
                written += bytes.len() as u64;
                env.step();
            }
            out.flush().await.map_err(local)?;
            false
        }
    };
    if written != segment.length {
        return Err(lost(format!("short read: {written} of {} bytes", segment.length)));
    }
    check(crc.finalize())?;
    Ok(fetched(RunBytes::File { path: Arc::new(path), offset: 0, len: written }, from_cache))
}

async fn run_reduce(
    env: &TaskEnv,
    attempt: &AttemptId,
    job: Arc<dyn DynJob>,
    r: pb::ReduceTask,
    info: &AssignmentInfo,
    (cancel, dir): (&CancellationToken, &Arc<TempDir>),
) -> Result<pb::Succeeded, TaskError> {
    let (skip, format, memory) = (info.skip, info.output_format, env.memory);
    // A quarter of the budget for segments kept in memory, first come first kept; the rest
    // go to local files, fetched in pieces so that 16 fetches in flight hold another quarter.
    let mut in_memory = (memory.bytes() / 4) as u64;
    let piece = (memory.bytes() as u64 / 64).clamp(64 << 10, 8 << 20);
    let plan: Vec<(pb::ReduceInput, bool)> = r
        .inputs
        .into_iter()
        .map(|input| {
            let len = input.segment.as_ref().map_or(0, |s| s.length);
            let to_disk = len > in_memory;
            if !to_disk {
                in_memory -= len;
            }
            (input, to_disk)
        })
        .collect();
    let fetches = plan.into_iter().map(|(input, to_disk)| fetch_segment(env, input, to_disk, (dir.path(), piece)));
    let fetched: Vec<Fetched> = futures::stream::iter(fetches).buffered(16).try_collect().await?;
    let from_cache: u64 = fetched.iter().filter(|f| f.from_cache).map(|f| f.len).sum();
    let on_disk: u64 = fetched.iter().filter(|f| f.on_disk).map(|f| f.len).sum();
    if cancel.is_cancelled() {
        return Err(TaskError::Cancelled);
    }
    let shuffle_bytes: u64 = fetched.iter().map(|f| f.len).sum();
    let progress = env.progress.clone();
    let task = TaskInfo::new(attempt.clone(), env.worker_id.clone());
    let dir = dir.clone();
    let (part, mut counters) = spawn_compute(move || {
        let runs: Vec<SortedRun> = fetched.into_iter().map(|f| f.run).collect();
        let (runs, passes) = merge_passes(runs, memory.merge_factor(1), dir.path(), memory.batch_bytes())?;
        // Output goes to the sink every eighth of the budget, and stays in memory up to a
        // quarter.
        let mut sink = PartSink::new(format, dir.path(), memory.bytes() / 4)?;
        let mut counters = reduce_runs(job.as_ref(), &task, &runs, skip, (&mut sink, memory.bytes() / 8), &progress)?;
        let part = sink.finish()?;
        counters.add(names::OUTPUT_BYTES, part.len() as i64);
        if passes.passes > 0 {
            counters.add(names::MERGE_PASSES, passes.passes as i64);
            counters.add(names::SPILLED_RECORDS, passes.records as i64);
        }
        Ok::<_, TaskError>((part, counters))
    })
    .await??;
    counters.add(names::REDUCE_SHUFFLE_BYTES, shuffle_bytes as i64);
    if from_cache > 0 {
        counters.add(names::SHUFFLE_CACHE_BYTES_READ, from_cache as i64);
    }
    if on_disk > 0 {
        counters.add(names::REDUCE_SHUFFLE_DISK_BYTES, on_disk as i64);
    }
    if cancel.is_cancelled() {
        return Err(TaskError::Cancelled);
    }
    commit_part(env, attempt, &r.temp_url, part).await?;
    Ok(pb::Succeeded { counters: counters.into_map(), map_output: None })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn transient() -> StoreError {
        StoreError::Io {
            url: "u".into(),
            source: object_store::Error::Generic { store: "test", source: "flaky".into() },
        }
    }

    #[tokio::test]
    async fn a_line_running_far_past_its_split_is_refused_not_read_to_the_end() {
        let u = StoreUrl::parse("memory:///fetch-test/long.txt").unwrap();
        let data = [b"ab\n".to_vec(), vec![b'x'; 5000], b"\nend\n".to_vec()].concat();
        u.store().unwrap().put(&u.path(), PutPayload::from(data.clone())).await.unwrap();
        let split = pb::Split { url: u.to_string(), start: 0, end: 10, object_size: data.len() as u64 };
        // The split's last line starts at 3 and ends at 5003.
        let e = fetch_split(&split, 1000).await.unwrap_err();
        assert!(matches!(e, TaskError::BadInput { source: InputError::LineTooLong { limit: 1000 }, .. }), "{e}");
        let ok = fetch_split(&split, 10_000).await.unwrap();
        assert!(ok.len() > 5003 && data.starts_with(&ok), "{} bytes", ok.len());
    }

    #[tokio::test]
    async fn a_big_object_goes_up_in_pieces_and_a_small_one_in_one_put() {
        let url = StoreUrl::parse("memory:///put-test/big").unwrap();
        let store = url.store().unwrap();
        let big = Bytes::from(vec![7u8; MULTIPART_OVER + 3 * PIECE + 1]);
        let stats = Arc::new(StoreStats::new());
        StoreStats::scope(stats.clone(), put(&store, &url, big.clone())).await.unwrap();
        // Create, eight pieces (7 of 16 MiB and one of 1 byte), complete.
        assert_eq!((stats.snapshot().put, stats.snapshot().bytes_written), (10, big.len() as u64));
        assert_eq!(store.get(&url.path()).await.unwrap().bytes().await.unwrap(), big);
        let small = StoreUrl::parse("memory:///put-test/small").unwrap();
        let stats = Arc::new(StoreStats::new());
        StoreStats::scope(stats.clone(), put(&store, &small, Bytes::from_static(b"x"))).await.unwrap();
        assert_eq!(stats.snapshot().put, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn transient_store_errors_are_retried_with_backoff_and_not_found_is_final() {
        let calls = AtomicU32::new(0);
        let stats = Arc::new(quern_api::counted::StoreStats::new());
        let retrying = with_retries("read", || async {
            if calls.fetch_add(1, Ordering::SeqCst) < 3 { Err(transient()) } else { Ok(7) }
        });
        let ok = quern_api::counted::StoreStats::scope(stats.clone(), retrying).await;
        assert_eq!(ok.unwrap(), 7);
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        assert_eq!(stats.snapshot().retries, 3, "every retry is counted");

        let calls = AtomicU32::new(0);
        let failed: Result<(), _> = with_retries("read", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(transient())
        })
        .await;
        assert!(matches!(failed, Err(StoreError::Io { .. })));
        assert_eq!(calls.load(Ordering::SeqCst), 5, "gives up after five tries");

        let calls = AtomicU32::new(0);
        let missing: Result<(), _> = with_retries("read", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(StoreError::NotFound { url: "u".into() })
        })
        .await;
        assert!(matches!(missing, Err(StoreError::NotFound { .. })));
        assert_eq!(calls.load(Ordering::SeqCst), 1, "not found is not retried");
    }
}
