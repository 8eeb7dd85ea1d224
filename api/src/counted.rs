//! Counting every request Quern makes of an object store.
//!
//! [`Counted`] wraps a store and counts each call by the kind of request S3 bills it as, in
//! two [`StoreStats`] at once: the process-wide one ([`StoreStats::global`]) and the one of the
//! task scope the call runs in, if any ([`StoreStats::scope`]). A worker runs each attempt in
//! its own scope and reports what it counted as the attempt's `STORE_*` counters
//! ([`StoreCounts::add_to`]). Every store [`crate::StoreUrl::store`] hands out is counted.
//!
//! | call | counted as |
//! |---|---|
//! | `get_opts`: a GET, a ranged GET or a HEAD | 1 GET; bytes read: the length of the range returned (0 for a HEAD) |
//! | `get_ranges` | 1 GET per range after merging those less than 1 MiB apart (see below) |
//! | `put_opts` | 1 PUT; bytes written: the payload |
//! | a multipart upload | 1 PUT to create it, 1 per part (with its bytes), 1 to complete it; aborting it is 1 DELETE |
//! | `copy_opts` | 1 PUT, as S3 bills its CopyObject (no bytes: the copy happens in the store) |
//! | `rename_opts` | what the inner store does: 1 PUT and 1 DELETE (S3 and memory copy, then delete), nothing for a store that renames in place ([`Counted::renaming_in_place`]: local files) |
//! | `delete_stream` | 1 DELETE per path (S3 sends up to 1,000 in one DeleteObjects call) |
//! | `list`, `list_with_offset` | 1 LIST per page of S3's 1,000 objects: one when the listing starts, one more as the 1,001st, 2,001st, … object arrives |
//! | `list_with_delimiter` | 1 LIST per 1,000 objects and common prefixes returned, at least 1 |
//!
//! A request counts when it is made, whether it succeeds or not (a 404 is a request too);
//! bytes count only when it succeeds. A listing, a delete stream or a multipart upload counts
//! in the scope it was made in, wherever it is read or driven later. Retries inside the S3 client (its `RetryConfig`) are not
//! seen here: one call counts once. Quern's own retries of a call that failed with a
//! transient error count as `retries` ([`StoreStats::retried`]). Listing pages are counted by S3's page size whatever the
//! store, so counts on local files predict what the same job would ask of S3.
//!
//! `get_ranges` is deliberately not delegated: the trait's default merges nearby ranges and
//! fetches each merged range through `get_opts`, so every GET it makes is counted. That is
//! also exactly what `AmazonS3` does (it does not override `get_ranges`); local files and
//! memory read several ranges more cheaply, but are counted as S3 would be.
//!
//! ```
//! # async fn example() -> object_store::Result<()> {
//! use std::sync::Arc;
//! use object_store::{ObjectStoreExt, memory::InMemory, path::Path};
//! use quern_api::counted::{Counted, StoreStats};
//!
//! let store = Counted::new(InMemory::new());
//! let stats = Arc::new(StoreStats::new());
//! StoreStats::scope(stats.clone(), async {
//!     store.put(&Path::from("a"), "hello".into()).await?;
//!     store.get_range(&Path::from("a"), 1..3).await
//! })
//! .await?;
//! let counts = stats.snapshot();
//! assert_eq!((counts.put, counts.get, counts.bytes_written, counts.bytes_read), (1, 1, 5, 2));
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, ready};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartId, MultipartUpload, OBJECT_STORE_COALESCE_DEFAULT,
    ObjectMeta, ObjectStore, ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
    Result, UploadPart, coalesce_ranges,
};

use crate::counters::{Counters, names};

/// Objects per page of an S3 listing (ListObjectsV2's default and maximum `max-keys`).
const LIST_PAGE: u64 = 1_000;

tokio::task_local! {
    /// The stats of the scope a task runs in (see [`StoreStats::scope`]).
    static SCOPE: Arc<StoreStats>;
}

/// Request and byte counts, updated atomically by [`Counted`] stores.
#[derive(Debug, Default)]
pub struct StoreStats {
    get: AtomicU64,
    put: AtomicU64,
    list: AtomicU64,
    delete: AtomicU64,
    bytes_read: AtomicU64,
    bytes_written: AtomicU64,
    retries: AtomicU64,
}

/// The counts of a [`StoreStats`] at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreCounts {
    /// GET requests, HEADs and ranged GETs included.
    pub get: u64,
    /// PUT requests: whole objects, copies, and each create, part and completion of a
    /// multipart upload.
    pub put: u64,
    /// LIST requests (pages of up to 1,000 entries).
    pub list: u64,
    /// Objects deleted and multipart uploads aborted.
    pub delete: u64,
    /// Bytes of object data returned by GETs.
    pub bytes_read: u64,
    /// Bytes of payload sent by PUTs.
    pub bytes_written: u64,
    /// Calls that failed with a transient error and were made again ([`StoreStats::retried`]).
    pub retries: u64,
}

/// One of the numbers a [`StoreStats`] keeps.
#[derive(Clone, Copy)]
enum Count {
    Get,
    Put,
    List,
    Delete,
    BytesRead,
    BytesWritten,
    Retries,
}

static GLOBAL: StoreStats = StoreStats::new();

impl StoreStats {
    /// All counts zero.
    pub const fn new() -> Self {
        StoreStats {
            get: AtomicU64::new(0),
            put: AtomicU64::new(0),
            list: AtomicU64::new(0),
            delete: AtomicU64::new(0),
            bytes_read: AtomicU64::new(0),
            bytes_written: AtomicU64::new(0),
            retries: AtomicU64::new(0),
        }
    }

    /// Every request of this process, in or out of a scope.
    pub fn global() -> &'static StoreStats {
        &GLOBAL
    }

    /// Runs `fut` with `stats` as its scope: requests it makes (in this task, not in tasks
    /// it spawns: hand those [`StoreStats::current`]) also count in `stats`. Scopes nest;
    /// the innermost counts.
    pub fn scope<F: Future>(stats: Arc<StoreStats>, fut: F) -> impl Future<Output = F::Output> {
        SCOPE.scope(stats, fut)
    }

    /// The stats of the scope the calling task runs in, if it runs in one.
    pub fn current() -> Option<Arc<StoreStats>> {
        SCOPE.try_with(Arc::clone).ok()
    }

    /// The counts now.
    pub fn snapshot(&self) -> StoreCounts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StoreCounts {
            get: get(&self.get),
            put: get(&self.put),
            list: get(&self.list),
            delete: get(&self.delete),
            bytes_read: get(&self.bytes_read),
            bytes_written: get(&self.bytes_written),
            retries: get(&self.retries),
        }
    }

    /// Counts one retry of a failed call, in the process and the calling task's scope.
    pub fn retried() {
        GLOBAL.add(Count::Retries, 1);
        if let Some(scope) = StoreStats::current() {
            scope.add(Count::Retries, 1);
        }
    }

    fn add(&self, what: Count, n: u64) {
        let counter = match what {
            Count::Get => &self.get,
            Count::Put => &self.put,
            Count::List => &self.list,
            Count::Delete => &self.delete,
            Count::BytesRead => &self.bytes_read,
            Count::BytesWritten => &self.bytes_written,
            Count::Retries => &self.retries,
        };
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

impl StoreCounts {
    /// Adds these counts to `counters` as `STORE_GET`, `STORE_PUT`, `STORE_LIST`,
    /// `STORE_DELETE`, `STORE_BYTES_READ`, `STORE_BYTES_WRITTEN` and `STORE_RETRIES` (zeros
    /// included, so a job's status always shows them all).
    pub fn add_to(&self, counters: &mut Counters) {
        let as_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        counters.add(names::STORE_GET, as_i64(self.get));
        counters.add(names::STORE_PUT, as_i64(self.put));
        counters.add(names::STORE_LIST, as_i64(self.list));
        counters.add(names::STORE_DELETE, as_i64(self.delete));
        counters.add(names::STORE_BYTES_READ, as_i64(self.bytes_read));
        counters.add(names::STORE_BYTES_WRITTEN, as_i64(self.bytes_written));
        counters.add(names::STORE_RETRIES, as_i64(self.retries));
    }
}

/// Where one call's counts go: the process and the scope the call was made in. Taken when
/// the call is made, so streams and uploads polled later still count where they began.
#[derive(Clone, Debug)]
struct Recorder(Option<Arc<StoreStats>>);

impl Recorder {
    fn current() -> Self {
        Recorder(StoreStats::current())
    }

    fn add(&self, what: Count, n: u64) {
        GLOBAL.add(what, n);
        if let Some(scope) = &self.0 {
            scope.add(what, n);
        }
    }
}

/// An object store whose every request is counted (see the [module docs](self)).
#[derive(Debug)]
pub struct Counted<S> {
    inner: S,
    /// Whether the inner store renames in place (one file-system call) rather than by copy
    /// and delete.
    renames_in_place: bool,
}

impl<S> Counted<S> {
    /// Counts `inner`'s requests; its renames count as a copy and a delete.
    pub fn new(inner: S) -> Self {
        Counted { inner, renames_in_place: false }
    }

    /// For a store whose rename is a single in-place operation (local files): a rename then
    /// counts as no request at all.
    pub fn renaming_in_place(mut self) -> Self {
        self.renames_in_place = true;
        self
    }

    /// The store being counted.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

impl<S: fmt::Display> fmt::Display for Counted<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Counted({})", self.inner)
    }
}

/// Counts a listing's pages as its objects arrive: one page when the listing starts, one
/// more with every [`LIST_PAGE`] objects after that.
fn count_pages(
    rec: Recorder,
    mut list: BoxStream<'static, Result<ObjectMeta>>,
) -> BoxStream<'static, Result<ObjectMeta>> {
    let mut seen: Option<u64> = None;
    futures::stream::poll_fn(move |cx| {
        let seen = seen.get_or_insert_with(|| {
            rec.add(Count::List, 1);
            0
        });
        let item = ready!(list.poll_next_unpin(cx));
        if let Some(Ok(_)) = &item {
            *seen += 1;
            if *seen > LIST_PAGE && *seen % LIST_PAGE == 1 {
                rec.add(Count::List, 1);
            }
        }
        Poll::Ready(item)
    })
    .boxed()
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl<S: ObjectStore> ObjectStore for Counted<S> {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        let rec = Recorder::current();
        rec.add(Count::Put, 1);
        let len = payload.content_length() as u64;
        let put = self.inner.put_opts(location, payload, opts).await?;
        rec.add(Count::BytesWritten, len);
        Ok(put)
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
        let rec = Recorder::current();
        rec.add(Count::Put, 1);
        let upload = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(CountedUpload { inner: upload, rec }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let rec = Recorder::current();
        rec.add(Count::Get, 1);
        let head = options.head;
        let got = self.inner.get_opts(location, options).await?;
        if !head {
            rec.add(Count::BytesRead, got.range.end.saturating_sub(got.range.start));
        }
        Ok(got)
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        // The trait's own default, spelled out: each merged range is one counted GET.
        coalesce_ranges(ranges, |range| self.get_range(location, range), OBJECT_STORE_COALESCE_DEFAULT).await
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        let rec = Recorder::current();
        let counted = locations
            .inspect(move |path| {
                if path.is_ok() {
                    rec.add(Count::Delete, 1);
                }
            })
            .boxed();
        self.inner.delete_stream(counted)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        count_pages(Recorder::current(), self.inner.list(prefix))
    }

    fn list_with_offset(&self, prefix: Option<&Path>, offset: &Path) -> BoxStream<'static, Result<ObjectMeta>> {
        // Delegated: S3 sends the offset along (start-after) instead of listing from the start.
        count_pages(Recorder::current(), self.inner.list_with_offset(prefix, offset))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let rec = Recorder::current();
        let listed = self.inner.list_with_delimiter(prefix).await;
        let entries = listed.as_ref().map(|l| (l.objects.len() + l.common_prefixes.len()) as u64).unwrap_or(0);
        rec.add(Count::List, entries.div_ceil(LIST_PAGE).max(1));
        listed
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        Recorder::current().add(Count::Put, 1);
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        // Delegated, never the trait's copy-and-delete default: that would turn the atomic
        // rename of local files into a copy.
        let rec = Recorder::current();
        if self.renames_in_place {
            return self.inner.rename_opts(from, to, options).await;
        }
        rec.add(Count::Put, 1);
        self.inner.rename_opts(from, to, options).await?;
        rec.add(Count::Delete, 1);
        Ok(())
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl<S: MultipartStore> MultipartStore for Counted<S> {
    async fn create_multipart(&self, path: &Path) -> Result<MultipartId> {
        Recorder::current().add(Count::Put, 1);
        self.inner.create_multipart(path).await
    }

    async fn create_multipart_opts(&self, path: &Path, opts: PutMultipartOptions) -> Result<MultipartId> {
        Recorder::current().add(Count::Put, 1);
        self.inner.create_multipart_opts(path, opts).await
    }

    async fn put_part(&self, path: &Path, id: &MultipartId, part_idx: usize, data: PutPayload) -> Result<PartId> {
        let rec = Recorder::current();
        rec.add(Count::Put, 1);
        let len = data.content_length() as u64;
        let part = self.inner.put_part(path, id, part_idx, data).await?;
        rec.add(Count::BytesWritten, len);
        Ok(part)
    }

    async fn complete_multipart(&self, path: &Path, id: &MultipartId, parts: Vec<PartId>) -> Result<PutResult> {
        Recorder::current().add(Count::Put, 1);
        self.inner.complete_multipart(path, id, parts).await
    }

    async fn abort_multipart(&self, path: &Path, id: &MultipartId) -> Result<()> {
        Recorder::current().add(Count::Delete, 1);
        self.inner.abort_multipart(path, id).await
    }
}

/// A multipart upload started through [`Counted::put_multipart_opts`]; counts in the scope
/// it was started in.
#[derive(Debug)]
struct CountedUpload {
    inner: Box<dyn MultipartUpload>,
    rec: Recorder,
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl MultipartUpload for CountedUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let rec = self.rec.clone();
        rec.add(Count::Put, 1);
        let len = data.content_length() as u64;
        let part = self.inner.put_part(data);
        Box::pin(async move {
            part.await?;
            rec.add(Count::BytesWritten, len);
            Ok(())
        })
    }

    async fn complete(&mut self) -> Result<PutResult> {
        self.rec.add(Count::Put, 1);
        self.inner.complete().await
    }

    async fn abort(&mut self) -> Result<()> {
        self.rec.add(Count::Delete, 1);
        self.inner.abort().await
    }
}

#[cfg(test)]
#[path = "counted_tests.rs"]
mod tests;
