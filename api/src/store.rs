//! Storage URLs and the object stores behind them.
//!
//! Every location Quern reads or writes is a URL the `object_store` crate understands:
//! `file:///abs/path`, `memory:///path` (one shared in-memory store per process),
//! `s3://bucket/prefix` (configured from the usual `AWS_*` environment variables),
//! `gs://bucket/prefix` (`GOOGLE_*`) or `az://container/prefix` (`AZURE_*`). A URL ending
//! in `/` names a directory (every object under it).
//!
//! Tests can put a wrapper around every store a process builds ([`set_store_wrapper`]), e.g.
//! one that injects faults; the stock binary sets none.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::multipart::MultipartStore;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreScheme};
use url::Url;

use crate::counted::Counted;
use crate::error::StoreError;

/// A validated storage URL.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StoreUrl(Url);

impl TryFrom<String> for StoreUrl {
    type Error = StoreError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        StoreUrl::parse(&s)
    }
}

impl From<StoreUrl> for String {
    fn from(u: StoreUrl) -> String {
        u.0.into()
    }
}

impl StoreUrl {
    /// Parses a URL, refusing schemes and shapes Quern cannot store to.
    pub fn parse(s: &str) -> Result<Self, StoreError> {
        let bad = |reason: &str| StoreError::BadUrl { url: s.to_string(), reason: reason.to_string() };
        let url = Url::parse(s).map_err(|e| bad(&e.to_string()))?;
        match url.scheme() {
            "file" => {
                if url.host_str().is_some_and(|h| !h.is_empty()) {
                    return Err(bad("a file URL needs an absolute path: file:///abs/path"));
                }
            }
            "memory" => {
                if url.host_str().is_some_and(|h| !h.is_empty()) {
                    return Err(bad("a memory URL has no host: memory:///path"));
                }
            }
            "s3" | "s3a" | "gs" | "az" => {
                if url.host_str().is_none_or(str::is_empty) {
                    return Err(bad("an object store URL needs a bucket: s3://bucket/prefix (gs://, az://)"));
                }
            }
            other => {
                return Err(bad(&format!(
                    "unsupported scheme {other:?} (use file://, memory://, s3://, gs:// or az://)"
                )));
            }
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad("storage URLs take no query or fragment"));
        }
        if url.path_segments().is_some_and(|mut segs| segs.any(|p| p == ".." || p == ".")) {
            return Err(bad("path must not contain . or .. segments"));
        }
        ObjectStoreScheme::parse(&url).map_err(|e| bad(&e.to_string()))?;
        Ok(StoreUrl(url))
    }

    /// Parses what a user typed: a URL, or a plain local path (made absolute against the
    /// current directory, keeping a trailing `/`).
    pub fn from_user(s: &str) -> Result<Self, StoreError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(StoreError::BadUrl { url: s.to_string(), reason: "empty".into() });
        }
        if s.contains("://") {
            return Self::parse(s);
        }
        let path = std::path::Path::new(s);
        let abs = if path.is_absolute() {
            path.to_path_buf()
        } else {
            std::env::current_dir()
                .map_err(|e| StoreError::BadUrl { url: s.to_string(), reason: e.to_string() })?
                .join(path)
        };
        let mut url = Url::from_file_path(&abs)
            .map_err(|()| StoreError::BadUrl { url: s.to_string(), reason: "not a valid local path".into() })?;
        if s.ends_with('/') && !url.path().ends_with('/') {
            let p = format!("{}/", url.path());
            url.set_path(&p);
        }
        Self::parse(url.as_str())
    }

    /// Whether the URL names a directory (ends with `/`).
    pub fn is_dir(&self) -> bool {
        self.0.path().ends_with('/')
    }

    /// The scheme: `file`, `memory`, `s3` or `s3a`.
    pub fn scheme(&self) -> &str {
        self.0.scheme()
    }

    /// The URL as text.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The same location as a directory (with a trailing `/`).
    pub fn as_dir(&self) -> StoreUrl {
        if self.is_dir() {
            return self.clone();
        }
        let mut url = self.0.clone();
        let p = format!("{}/", url.path());
        url.set_path(&p);
        StoreUrl(url)
    }

    /// The object `name` inside this location taken as a directory. `name` may hold `/`.
    pub fn join(&self, name: &str) -> StoreUrl {
        let dir = self.as_dir();
        let mut url = dir.0.clone();
        let p = format!("{}{}", dir.0.path(), name.trim_start_matches('/'));
        url.set_path(&p);
        StoreUrl(url)
    }

    /// Another object of the same store, by its store path.
    pub fn with_path(&self, path: &Path) -> StoreUrl {
        let mut url = self.0.clone();
        url.set_path(&format!("/{}", path.as_ref()));
        StoreUrl(url)
    }

    /// The directory holding this location (with a trailing `/`), if it has one.
    pub fn parent_dir(&self) -> Option<StoreUrl> {
        let path = self.0.path().trim_end_matches('/');
        let cut = path.rfind('/')?;
        let mut url = self.0.clone();
        url.set_path(&path[..=cut]);
        Some(StoreUrl(url))
    }

    /// Whether this location is `dir` itself or lies under it: the same store (scheme and
    /// bucket) and `dir`'s whole path segments, compared after percent-decoding, so
    /// `file:///data/` covers neither `file:///database` nor an encoded way out of it.
    pub fn is_under(&self, dir: &StoreUrl) -> bool {
        // `s3a://` is Hadoop's name for the same buckets as `s3://`.
        let store = |u: &Url| if u.scheme() == "s3a" { "s3".to_string() } else { u.scheme().to_string() };
        store(&self.0) == store(&dir.0)
            && self.0.host_str() == dir.0.host_str()
            && self.path().prefix_matches(&dir.path())
    }

    /// Whether one of the two locations lies under the other.
    pub fn overlaps(&self, other: &StoreUrl) -> bool {
        self.is_under(other) || other.is_under(self)
    }

    /// The last path segment (the object's base name), percent-decoded.
    pub fn base_name(&self) -> String {
        self.path().filename().unwrap_or("").to_string()
    }

    /// The path inside the store.
    pub fn path(&self) -> Path {
        match ObjectStoreScheme::parse(&self.0) {
            Ok((_, p)) => p,
            // parse() validated this already; an unparsable URL never gets here.
            Err(_) => Path::default(),
        }
    }

    /// The store that holds this URL (shared per scheme and bucket within a process), its
    /// requests counted ([`crate::counted`]).
    pub fn store(&self) -> Result<Arc<dyn ObjectStore>, StoreError> {
        Ok(self.stores()?.object)
    }

    /// The same store's multipart interface, where parts can be uploaded by one process and
    /// the upload completed or aborted by another (S3 and memory); `None` for local files,
    /// whose atomic rename is the cheaper commit.
    pub fn multipart_store(&self) -> Result<Option<Arc<dyn MultipartStore>>, StoreError> {
        Ok(self.stores()?.multipart)
    }

    /// The same store for one quick check: an S3 client that gives up after two retries
    /// (seconds, not the minutes tasks wait out), so a wrong endpoint or bad credentials
    /// are reported promptly. Built afresh for S3, not shared; the shared store otherwise.
    pub fn store_failing_fast(&self) -> Result<Arc<dyn ObjectStore>, StoreError> {
        if !matches!(self.0.scheme(), "s3" | "s3a") {
            return self.store();
        }
        let retry = object_store::RetryConfig {
            backoff: Default::default(),
            max_retries: 2,
            retry_timeout: std::time::Duration::from_secs(10),
        };
        let s3 = AmazonS3Builder::from_env()
            .with_url(self.0.as_str())
            .with_retry(retry)
            .build()
            .map_err(|e| StoreError::from_store(self.as_str(), e))?;
        Ok(wrapped(Arc::new(s3)))
    }

    fn stores(&self) -> Result<Stores, StoreError> {
        static STORES: OnceLock<Mutex<HashMap<String, Stores>>> = OnceLock::new();
        let key = format!("{}://{}", self.0.scheme(), self.0.host_str().unwrap_or(""));
        let stores = STORES.get_or_init(Default::default);
        let mut stores = stores.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = stores.get(&key) {
            return Ok(s.clone());
        }
        let bad = |e| StoreError::from_store(self.as_str(), e);
        let made = match self.0.scheme() {
            // Automatic cleanup removes directories emptied by deletes, so a finished job
            // leaves no empty folders behind in a file store.
            // Every store is counted (see `counted`); local files rename in place.
            "file" => Stores {
                object: Arc::new(Counted::new(LocalFileSystem::new().with_automatic_cleanup(true)).renaming_in_place()),
                multipart: None,
            },
            "memory" => Stores::both(Arc::new(Counted::new(InMemory::new()))),
            // Each from its usual environment variables (AWS_*, GOOGLE_*, AZURE_*).
            "gs" => Stores::both(Arc::new(Counted::new(
                GoogleCloudStorageBuilder::from_env().with_url(self.0.as_str()).build().map_err(bad)?,
            ))),
            "az" => Stores::both(Arc::new(Counted::new(
                MicrosoftAzureBuilder::from_env().with_url(self.0.as_str()).build().map_err(bad)?,
            ))),
            _ => Stores::both(Arc::new(Counted::new(
                AmazonS3Builder::from_env().with_url(self.0.as_str()).build().map_err(bad)?,
            ))),
        };
        let made = Stores { object: wrapped(made.object), ..made };
        stores.insert(key, made.clone());
        Ok(made)
    }
}

/// What [`set_store_wrapper`] installs: takes a freshly built store, returns the one to use.
pub type StoreWrapper = fn(Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore>;

static WRAPPER: OnceLock<StoreWrapper> = OnceLock::new();

/// Whether this process built a store yet: a wrapper set after that would miss some.
static BUILT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Puts `wrap` around every object store this process builds from now on (once per scheme
/// and bucket, outside the request counting), for test binaries that inject faults. Only the
/// object interface is wrapped; [`StoreUrl::multipart_store`] is not. Set it once, before
/// the first store is built; a second call, or one after a store was built, is refused
/// (returns `false`), so stores already handed out never disagree with later ones.
pub fn set_store_wrapper(wrap: StoreWrapper) -> bool {
    !BUILT.load(std::sync::atomic::Ordering::SeqCst) && WRAPPER.set(wrap).is_ok()
}

/// `store` inside the wrapper, if one was set (never in the stock binary).
fn wrapped(store: Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> {
    BUILT.store(true, std::sync::atomic::Ordering::SeqCst);
    match WRAPPER.get() {
        Some(wrap) => wrap(store),
        None => store,
    }
}

/// One store's interfaces, built once per scheme and bucket: one [`Counted`] store behind
/// both, so a multipart upload counts with everything else.
#[derive(Clone)]
struct Stores {
    object: Arc<dyn ObjectStore>,
    multipart: Option<Arc<dyn MultipartStore>>,
}

impl Stores {
    fn both<S: ObjectStore + MultipartStore>(store: Arc<S>) -> Self {
        Stores { object: store.clone(), multipart: Some(store) }
    }
}

impl std::fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.as_str())
    }
}

impl std::str::FromStr for StoreUrl {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StoreUrl::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_validated() {
        assert!(StoreUrl::parse("file:///tmp/x").is_ok());
        assert!(StoreUrl::parse("file://relative/x").is_err());
        assert!(StoreUrl::parse("ftp://host/x").is_err());
        assert!(StoreUrl::parse("s3:///nobucket").is_err());
        assert!(StoreUrl::parse("not a url").is_err());
        assert!(StoreUrl::parse("memory:///a/b").is_ok());
        assert!(StoreUrl::parse("gs://bucket/a").is_ok());
        assert!(StoreUrl::parse("az://container/a").is_ok());
        assert!(StoreUrl::parse("gs:///nobucket").is_err());
    }

    #[test]
    fn join_and_paths() {
        let u = StoreUrl::parse("file:///tmp/store").unwrap();
        assert!(!u.is_dir());
        let j = u.join("jobs/a b.txt");
        assert_eq!(j.path().as_ref(), "tmp/store/jobs/a b.txt");
        assert_eq!(j.base_name(), "a b.txt");
        let back = u.with_path(&j.path());
        assert_eq!(back, j);
        assert_eq!(StoreUrl::parse("file:///tmp/d/").unwrap().base_name(), "d");
    }

    #[test]
    fn under_compares_whole_decoded_segments() {
        let dir = StoreUrl::parse("file:///data/").unwrap();
        let under = |s: &str| StoreUrl::parse(s).map(|u| u.is_under(&dir));
        assert!(under("file:///data/a/b").unwrap());
        assert!(under("file:///data/").unwrap());
        assert!(!under("file:///database").unwrap());
        assert!(!under("file:///data/../etc/passwd").unwrap(), "normalised before the check");
        assert!(!under("file:///data/%2e%2e/etc").unwrap());
        assert!(under("file:///data/..%2Fetc/x").is_err_or_false(), "an encoded way out is refused or outside");
        assert!(!under("memory:///data/a").unwrap(), "another store");
        let bucket = StoreUrl::parse("s3://b/data/").unwrap();
        assert!(StoreUrl::parse("s3://b/data/x").unwrap().is_under(&bucket));
        assert!(!StoreUrl::parse("s3://c/data/x").unwrap().is_under(&bucket));
    }

    trait ErrOrFalse {
        fn is_err_or_false(&self) -> bool;
    }
    impl ErrOrFalse for Result<bool, StoreError> {
        fn is_err_or_false(&self) -> bool {
            !matches!(self, Ok(true))
        }
    }

    #[tokio::test]
    async fn both_interfaces_of_a_store_are_counted_together() {
        use crate::counted::StoreStats;
        use object_store::ObjectStoreExt;
        let u = StoreUrl::parse("memory:///counted-test/x").unwrap();
        let stats = Arc::new(StoreStats::new());
        StoreStats::scope(stats.clone(), async {
            u.store().unwrap().put(&u.path(), "abc".into()).await.unwrap();
            let multipart = u.multipart_store().unwrap().unwrap();
            let id = multipart.create_multipart(&u.path()).await.unwrap();
            multipart.abort_multipart(&u.path(), &id).await.unwrap();
            let local = StoreUrl::from_user("/").unwrap();
            local.store().unwrap().head(&local.join("no-such-object-here").path()).await.unwrap_err();
        })
        .await;
        let c = stats.snapshot();
        assert_eq!((c.put, c.delete, c.get, c.bytes_written), (2, 1, 1, 3));
    }

    #[test]
    fn plain_paths_become_file_urls() {
        let u = StoreUrl::from_user("/tmp/books/").unwrap();
        assert_eq!(u.as_str(), "file:///tmp/books/");
        assert!(u.is_dir());
    }
}
