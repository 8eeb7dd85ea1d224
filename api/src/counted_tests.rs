//! Exact counts of [`Counted`] on every backend that has no server (memory, local files);
//! S3 is counted end to end in the integration tests (`store_requests.rs`).

use std::sync::Arc;

use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;

use super::*;

/// Runs `f` in a fresh scope; returns its output and what it counted.
async fn counting<T>(f: impl Future<Output = T>) -> (T, StoreCounts) {
    let stats = Arc::new(StoreStats::new());
    let out = StoreStats::scope(stats.clone(), f).await;
    (out, stats.snapshot())
}

fn gets(get: u64, bytes_read: u64) -> StoreCounts {
    StoreCounts { get, bytes_read, ..Default::default() }
}

fn puts(put: u64, bytes_written: u64) -> StoreCounts {
    StoreCounts { put, bytes_written, ..Default::default() }
}

fn lists(list: u64) -> StoreCounts {
    StoreCounts { list, ..Default::default() }
}

fn deletes(delete: u64) -> StoreCounts {
    StoreCounts { delete, ..Default::default() }
}

/// The same exact counts whatever the backend: the conformance suite of [`Counted`].
async fn counts_every_request(store: &dyn ObjectStore) {
    let x = Path::from("a/x");
    let data: Vec<u8> = (0..100u8).collect();
    let (r, c) = counting(store.put(&x, data.clone().into())).await;
    r.unwrap();
    assert_eq!(c, puts(1, 100), "put");

    let (r, c) = counting(async { store.get(&x).await?.bytes().await }).await;
    assert_eq!(r.unwrap(), data);
    assert_eq!(c, gets(1, 100), "get");

    let (r, c) = counting(store.get_range(&x, 10..30)).await;
    assert_eq!(r.unwrap(), data[10..30]);
    assert_eq!(c, gets(1, 20), "ranged get");

    let (r, c) = counting(store.head(&x)).await;
    assert_eq!(r.unwrap().size, 100);
    assert_eq!(c, gets(1, 0), "a HEAD is a GET request that reads no data");

    let (r, c) = counting(store.get(&Path::from("a/missing"))).await;
    assert!(matches!(r, Err(object_store::Error::NotFound { .. })));
    assert_eq!(c, gets(1, 0), "a GET that finds nothing is still a request");

    // Ranges less than 1 MiB apart are read as one: 0..60 in one GET.
    let (r, c) = counting(store.get_ranges(&x, &[0..10, 10..20, 50..60])).await;
    assert_eq!(r.unwrap(), [&data[0..10], &data[10..20], &data[50..60]]);
    assert_eq!(c, gets(1, 60), "adjacent ranges coalesced");

    let (r, c) = counting(store.copy(&x, &Path::from("a/y"))).await;
    r.unwrap();
    assert_eq!(c, puts(1, 0), "a copy is a PUT that sends no data");

    let (r, c) = counting(store.delete(&Path::from("a/y"))).await;
    r.unwrap();
    assert_eq!(c, deletes(1), "delete");

    let (r, c) = counting(async {
        let mut upload = store.put_multipart(&Path::from("a/big")).await?;
        for part in [vec![1u8; 10], vec![2; 20], vec![3; 30]] {
            upload.put_part(part.into()).await?;
        }
        upload.complete().await
    })
    .await;
    r.unwrap();
    assert_eq!(c, puts(5, 60), "create, three parts, complete");
    assert_eq!(store.head(&Path::from("a/big")).await.unwrap().size, 60);

    // 2,500 objects are three pages of S3's 1,000.
    let many: Vec<Path> = (0..2_500).map(|i| Path::from(format!("many/o-{i:05}"))).collect();
    let (r, c) = counting(
        futures::stream::iter(many.iter().map(|p| store.put(p, vec![0u8; 1].into())))
            .buffer_unordered(16)
            .try_collect::<Vec<_>>(),
    )
    .await;
    r.unwrap();
    assert_eq!(c, puts(2_500, 2_500));
    // Streams count in the scope they were made in: make them inside.
    let (r, c) = counting(async { store.list(Some(&Path::from("many"))).try_collect::<Vec<_>>().await }).await;
    assert_eq!(r.unwrap().len(), 2_500);
    assert_eq!(c, lists(3), "2,500 objects listed");
    let (r, c) = counting(async {
        store.list_with_offset(Some(&Path::from("many")), &many[1_499]).try_collect::<Vec<_>>().await
    })
    .await;
    assert_eq!(r.unwrap().len(), 1_000);
    assert_eq!(c, lists(1), "the last 1,000 objects are one page");
    let (r, c) = counting(async { store.list(Some(&Path::from("nothing-here"))).try_collect::<Vec<_>>().await }).await;
    assert!(r.unwrap().is_empty());
    assert_eq!(c, lists(1), "an empty listing is still a request");
    let (r, c) = counting(store.list_with_delimiter(Some(&Path::from("a")))).await;
    assert_eq!(r.unwrap().objects.len(), 2, "a/x and a/big");
    assert_eq!(c, lists(1), "list with delimiter");

    let (r, c) = counting(async {
        let first: Vec<Path> = many[..3].to_vec();
        let paths = futures::stream::iter(first.into_iter().map(Ok)).boxed();
        store.delete_stream(paths).try_collect::<Vec<_>>().await
    })
    .await;
    assert_eq!(r.unwrap().len(), 3);
    assert_eq!(c, deletes(3), "one DELETE per path");
}

#[tokio::test]
async fn memory_counts_every_request() {
    counts_every_request(&Counted::new(InMemory::new())).await;
}

#[tokio::test]
async fn local_files_count_every_request() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalFileSystem::new_with_prefix(dir.path()).unwrap();
    counts_every_request(&Counted::new(store).renaming_in_place()).await;
}

#[tokio::test]
async fn a_local_rename_stays_a_rename() {
    let dir = tempfile::tempdir().unwrap();
    let store = Counted::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap()).renaming_in_place();
    let (from, to) = (Path::from("tmp/part-a1"), Path::from("part-00000"));
    store.put(&from, "data".into()).await.unwrap();
    let inode = |p: &str| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(dir.path().join(p)).unwrap());
    let before = inode("tmp/part-a1");
    let (r, c) = counting(store.rename(&from, &to)).await;
    r.unwrap();
    assert_eq!(c, StoreCounts::default(), "no copy, no delete: one file-system rename");
    assert!(!dir.path().join("tmp/part-a1").exists(), "the source is gone");
    assert_eq!(inode("part-00000"), before, "the very same file, moved");
    assert_eq!(std::fs::read(dir.path().join("part-00000")).unwrap(), b"data");
}

#[tokio::test]
async fn a_rename_in_memory_is_a_copy_and_a_delete() {
    let store = Counted::new(InMemory::new());
    store.put(&Path::from("from"), "data".into()).await.unwrap();
    let (r, c) = counting(store.rename(&Path::from("from"), &Path::from("to"))).await;
    r.unwrap();
    assert_eq!(c, StoreCounts { put: 1, delete: 1, ..Default::default() });
    assert!(store.head(&Path::from("from")).await.is_err());
}

#[tokio::test]
async fn multipart_store_calls_are_counted() {
    let store = Counted::new(InMemory::new());
    let path = Path::from("parts");
    let (r, c) = counting(async {
        let id = store.create_multipart(&path).await?;
        let mut parts = Vec::new();
        for (i, part) in [vec![1u8; 10], vec![2; 20], vec![3; 30]].into_iter().enumerate() {
            parts.push(store.put_part(&path, &id, i, part.into()).await?);
        }
        store.complete_multipart(&path, &id, parts).await
    })
    .await;
    r.unwrap();
    assert_eq!(c, puts(5, 60), "create, three parts, complete");
    let (r, c) = counting(async {
        let id = store.create_multipart(&path).await?;
        store.abort_multipart(&path, &id).await
    })
    .await;
    r.unwrap();
    assert_eq!(c, StoreCounts { put: 1, delete: 1, ..Default::default() }, "create, abort");
}

#[tokio::test]
async fn counts_go_to_the_scope_a_call_began_in_and_to_the_process() {
    let store = Arc::new(Counted::new(InMemory::new()));
    let global_before = StoreStats::global().snapshot();
    // Outside any scope: only the process counts.
    store.put(&Path::from("x"), "abc".into()).await.unwrap();
    // A listing started in a scope and read outside it still counts in its scope.
    let scope = Arc::new(StoreStats::new());
    let list = StoreStats::scope(scope.clone(), async { store.list(None) }).await;
    assert_eq!(list.try_collect::<Vec<_>>().await.unwrap().len(), 1);
    assert_eq!(scope.snapshot(), lists(1));
    // A task spawned in a scope is outside it, unless handed the scope.
    let (_, c) = counting(async {
        let s = store.clone();
        tokio::spawn(async move { s.head(&Path::from("x")).await }).await.unwrap().unwrap();
        let (s, scope) = (store.clone(), StoreStats::current().unwrap());
        tokio::spawn(StoreStats::scope(scope, async move { s.get(&Path::from("x")).await })).await.unwrap().unwrap();
    })
    .await;
    assert_eq!(c, gets(1, 3), "only the task handed the scope counts in it");
    let global = StoreStats::global().snapshot();
    // Other tests count in the process too: at least ours.
    assert!(global.put > global_before.put && global.get >= global_before.get + 2 && global.list > global_before.list);
}
