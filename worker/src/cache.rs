//! A worker's local cache of store bytes (`--cache-dir`, `--cache-size`): the input splits it
//! read and the shuffle objects it wrote, kept on local disk, least recently used evicted
//! first. The worker reports what it holds with every heartbeat, and the coordinator sends
//! map tasks of cached splits, and reduce tasks whose map outputs it caches, back to it.
//!
//! Entries are byte ranges `[start, start + len)` of an object, tagged with the object's size
//! when read, so an input object that changed size is not served stale. (Objects rewritten in
//! place at the same size would be: Quern assumes inputs are not modified while cached.)

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use quern_api::pb;

struct Entry {
    start: u64,
    len: u64,
    object_size: u64,
    file: PathBuf,
    last_use: u64,
}

#[derive(Default)]
struct Inner {
    by_url: HashMap<String, Vec<Entry>>,
    used: u64,
    clock: u64,
    next_file: u64,
}

/// The cache.
pub struct Cache {
    dir: PathBuf,
    limit: u64,
    inner: Mutex<Inner>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl Cache {
    /// Opens (and empties) a cache in `dir` holding at most `limit` bytes.
    pub fn open(dir: PathBuf, limit: u64) -> std::io::Result<Cache> {
        std::fs::create_dir_all(&dir)?;
        // Files from an earlier run are not trusted: the worker has a new identity anyway.
        for e in std::fs::read_dir(&dir)?.flatten() {
            if e.file_name().to_string_lossy().starts_with("quern-cache-") {
                let _ = std::fs::remove_file(e.path());
            }
        }
        Ok(Cache {
            dir,
            limit,
            inner: Mutex::new(Inner::default()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bytes `[start, end)` of `url`, if cached from an object of `object_size` bytes
    /// (`None` size: any).
    pub fn get(&self, url: &str, start: u64, end: u64, object_size: Option<u64>) -> Option<Bytes> {
        let mut data = Vec::with_capacity(usize::try_from(end - start).ok()?);
        self.open_range(url, start, end, object_size)?.read_to_end(&mut data).ok()?;
        (data.len() as u64 == end - start).then(|| Bytes::from(data))
    }

    /// A reader of bytes `[start, end)` of `url`, if cached (as [`Cache::get`]), reading
    /// only that range of the cached file.
    pub fn open_range(&self, url: &str, start: u64, end: u64, object_size: Option<u64>) -> Option<std::io::Take<File>> {
        let found = self.find_range(url, start, end, object_size);
        self.count(found.is_some());
        found
    }

    fn find_range(&self, url: &str, start: u64, end: u64, object_size: Option<u64>) -> Option<std::io::Take<File>> {
        let (file, offset) = {
            let mut inner = self.lock();
            inner.clock += 1;
            let clock = inner.clock;
            let entries = inner.by_url.get_mut(url)?;
            let e = entries.iter_mut().find(|e| {
                e.start <= start && end <= e.start + e.len && object_size.is_none_or(|s| s == e.object_size)
            })?;
            e.last_use = clock;
            (e.file.clone(), start - e.start)
        };
        // Open outside the lock; an entry evicted meanwhile is simply a miss, and one evicted
        // once open stays readable.
        let mut f = File::open(&file).ok()?;
        f.seek(SeekFrom::Start(offset)).ok()?;
        Some(f.take(end - start))
    }

    /// The longest cached range of `url` that starts at `start`.
    pub fn get_from(&self, url: &str, start: u64, object_size: u64) -> Option<Bytes> {
        let end = {
            let inner = self.lock();
            inner
                .by_url
                .get(url)
                .into_iter()
                .flatten()
                .filter(|e| e.start == start && e.object_size == object_size)
                .map(|e| e.start + e.len)
                .max()
        };
        match end {
            Some(end) => self.get(url, start, end, Some(object_size)),
            None => {
                self.count(false);
                None
            }
        }
    }

    /// Lookups so far that found their bytes here and that did not, for the worker's
    /// metrics.
    pub fn lookups(&self) -> (u64, u64) {
        (self.hits.load(Ordering::Relaxed), self.misses.load(Ordering::Relaxed))
    }

    fn count(&self, hit: bool) {
        let c = if hit { &self.hits } else { &self.misses };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Keeps `bytes`, the range of `url` starting at `start`, evicting the least recently
    /// used entries beyond the size limit. Failures only mean the bytes are not cached.
    pub fn put(&self, url: &str, start: u64, object_size: u64, bytes: &[u8]) {
        self.put_from(url, start, object_size, bytes.len() as u64, &mut std::io::Cursor::new(bytes));
    }

    /// Keeps the `len` bytes `bytes` reads, as [`Cache::put`] does, copying them through a
    /// small buffer.
    pub fn put_from(&self, url: &str, start: u64, object_size: u64, len: u64, bytes: &mut dyn Read) {
        if len == 0 || len > self.limit {
            return;
        }
        let file = {
            let mut inner = self.lock();
            inner.next_file += 1;
            self.dir.join(format!("quern-cache-{}", inner.next_file))
        };
        let copied = File::create(&file).and_then(|mut f| std::io::copy(&mut bytes.take(len), &mut f));
        if copied.ok() != Some(len) {
            let _ = std::fs::remove_file(&file);
            return;
        }
        let mut inner = self.lock();
        inner.clock += 1;
        let last_use = inner.clock;
        inner.used += len;
        inner.by_url.entry(url.to_string()).or_default().push(Entry { start, len, object_size, file, last_use });
        while inner.used > self.limit {
            let victim = inner
                .by_url
                .iter()
                .flat_map(|(u, es)| es.iter().enumerate().map(move |(i, e)| (e.last_use, u.clone(), i)))
                .min();
            let Some((_, u, i)) = victim else { break };
            let Some(es) = inner.by_url.get_mut(&u) else { break };
            let e = es.remove(i);
            let emptied = es.is_empty();
            let _ = std::fs::remove_file(&e.file);
            inner.used -= e.len;
            if emptied {
                inner.by_url.remove(&u);
            }
        }
    }

    /// What the cache holds, for the coordinator.
    pub fn holdings(&self) -> Vec<pb::CachedRange> {
        let inner = self.lock();
        inner
            .by_url
            .iter()
            .flat_map(|(u, es)| {
                es.iter().map(move |e| pb::CachedRange { url: u.clone(), start: e.start, end: e.start + e.len })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_misses_and_lru_eviction() {
        let dir = tempfile::tempdir().unwrap();
        let c = Cache::open(dir.path().to_path_buf(), 10).unwrap();
        c.put("u", 100, 1000, b"abcdef");
        assert_eq!(c.get("u", 101, 104, Some(1000)).unwrap(), Bytes::from_static(b"bcd"));
        assert!(c.get("u", 101, 104, Some(999)).is_none(), "a changed object is a miss");
        assert!(c.get("u", 99, 104, None).is_none(), "not covered");
        assert_eq!(c.get_from("u", 100, 1000).unwrap(), Bytes::from_static(b"abcdef"));
        c.put("v", 0, 4, b"wxyz");
        // Touch u so that v is the least recently used, then overflow.
        c.get("u", 100, 101, None).unwrap();
        c.put("w", 0, 3, b"123");
        assert!(c.get("v", 0, 4, None).is_none(), "v was evicted");
        assert!(c.get("u", 100, 106, None).is_some());
        let held: Vec<String> = c.holdings().into_iter().map(|r| r.url).collect();
        assert!(held.contains(&"u".to_string()) && held.contains(&"w".to_string()));
    }
}
