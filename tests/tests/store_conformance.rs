//! Quern's own store layer behaves alike on local files, in memory and on a real S3 API
//! server: shuffle segments written whole and read back by ranged reads, part commits
//! (rename where the store renames, coordinator-completed multipart uploads elsewhere), the
//! journal, the lease, and paginated input listing.
//!
//! One test in this binary: it points the `AWS_*` environment at the test's S3 server
//! before any other thread exists, since `StoreUrl` builds S3 clients from the environment.
#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use quern_api::listing::list_inputs;
use quern_api::{AttemptId, JobId, StoreUrl, TaskId, TaskKind};
use quern_coordinator::commit::{Uploads, abort_noted, promote};
use quern_coordinator::core::{PartUpload, Promotion};
use quern_coordinator::journal::{self, Ended, Journal, Record};
use quern_coordinator::lease::{self, LeaseBody};
use quern_tests::s3::S3Server;
use quern_worker::shuffle::{checksum, decode_segment, encode_segment};
use tokio_util::sync::CancellationToken;

#[test]
fn the_store_layer_behaves_alike_on_local_files_memory_and_s3() {
    let s3 = S3Server::start().unwrap();
    for (k, v) in s3.env() {
        // SAFETY: the only test of this binary sets the environment before it starts any
        // thread (runtimes come below), so nothing reads the environment concurrently.
        unsafe { std::env::set_var(k, v) };
    }
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let roots =
        [format!("file://{}/", dir.path().display()), "memory:///conformance/".to_string(), s3.url("conformance/")];
    for root in roots {
        let root = StoreUrl::parse(&root).unwrap();
        rt.block_on(async {
            shuffle(&root).await;
            commit(&root).await;
            journal(&root).await;
            lease(&root).await;
            listing(&root).await;
        });
        eprintln!("{root}: ok");
    }
    assert_eq!(s3.pending_uploads(), 0, "every upload completed or aborted");
}

async fn get(url: &StoreUrl) -> Option<Vec<u8>> {
    let got = url.store().unwrap().get(&url.path()).await;
    match got {
        Ok(g) => Some(g.bytes().await.unwrap().to_vec()),
        Err(object_store::Error::NotFound { .. }) => None,
        Err(e) => panic!("{url}: {e}"),
    }
}

async fn put(url: &StoreUrl, bytes: Vec<u8>) {
    url.store().unwrap().put(&url.path(), PutPayload::from(bytes)).await.unwrap();
}

/// Three segments (one empty) in one object, each read back alone by a ranged read.
async fn shuffle(root: &StoreUrl) {
    let parts: Vec<Vec<(Vec<u8>, Vec<u8>)>> = vec![
        (0..1000u32).map(|i| (format!("a{i:05}").into_bytes(), i.to_le_bytes().to_vec())).collect(),
        Vec::new(),
        vec![(b"z".to_vec(), b"last".to_vec())],
    ];
    let mut object = Vec::new();
    let mut index = Vec::new();
    for pairs in &parts {
        let seg = encode_segment(pairs.iter().map(|(k, v)| (k.as_slice(), v.as_slice())), Default::default()).unwrap();
        index.push(quern_api::pb::Segment {
            offset: object.len() as u64,
            length: seg.len() as u64,
            crc32: checksum(&seg),
            records: pairs.len() as u64,
        });
        object.extend_from_slice(&seg);
    }
    let url = root.join("jobs/j/map-00000-e1-a1.arrows");
    put(&url, object).await;
    let store = url.store().unwrap();
    for (seg, pairs) in index.iter().zip(&parts) {
        // Reducers skip empty segments: a zero-length range is an error on some stores.
        if seg.length == 0 {
            assert!(pairs.is_empty());
            continue;
        }
        let bytes = store.get_range(&url.path(), seg.offset..seg.offset + seg.length).await.unwrap();
        let run = decode_segment(bytes, seg).unwrap();
        let mut back = Vec::new();
        let mut pos = run.first_pos();
        while let Some((b, r)) = pos {
            let (k, v) = run.get(b, r).unwrap();
            back.push((k.to_vec(), v.to_vec()));
            pos = run.next_pos(b, r);
        }
        assert_eq!(&back, pairs, "{root}: a segment reads back whole");
    }
    store.delete(&url.path()).await.unwrap();
}

fn attempt(n: u32) -> AttemptId {
    AttemptId { task: TaskId { job: JobId::new(1, 1), kind: TaskKind::Reduce, index: 0 }, attempt: n }
}

/// Two attempts write the same part; only the granted one becomes visible, whole.
async fn commit(root: &StoreUrl) {
    let uploads = Uploads::new(5 << 20);
    let worker = quern_api::WorkerId::new(1, 1);
    let (out, scratch) = (root.join("out/"), root.join("jobs/j/"));
    let part = out.join("part-00000");
    let at = |n: u32| PartUpload { part: part.clone(), marker: scratch.join(&format!("uploads/part-00000-e1-a{n}")) };
    let grant = |n: u32| Promotion { temp: out.join(&format!("_temporary/j/part-00000-e1-a{n}")), part: part.clone() };
    // A part larger than one upload part, so a multipart upload has two.
    let winner: Vec<u8> = (0..(6 << 20) + 17).map(|i: u32| (i % 251) as u8).collect();
    let loser = b"the losing attempt".to_vec();
    match uploads.start(&attempt(1), &worker, at(1)).await.unwrap() {
        None => {
            // The store renames: attempts write temporary objects, the winner is renamed.
            assert!(root.as_str().starts_with("file:"), "{root}: only local files rename");
            put(&grant(1).temp, winner.clone()).await;
            put(&grant(2).temp, loser.clone()).await;
            promote(&grant(1)).await.unwrap();
            assert_eq!(get(&grant(1).temp).await, None, "renamed, not copied");
        }
        Some(up) => {
            assert_eq!(up.part, part);
            let second = uploads.start(&attempt(2), &worker, at(2)).await.unwrap().unwrap();
            assert_ne!(up.id, second.id, "an upload per attempt");
            let mp = part.multipart_store().unwrap().unwrap();
            let mut ids = Vec::new();
            for (i, chunk) in winner.chunks(5 << 20).enumerate() {
                ids.push(
                    mp.put_part(&part.path(), &up.id, i, PutPayload::from(chunk.to_vec())).await.unwrap().content_id,
                );
            }
            mp.put_part(&part.path(), &second.id, 0, PutPayload::from(loser.clone())).await.unwrap();
            assert_eq!(get(&part).await, None, "{root}: nothing visible before the commit");
            // A note not written by a coordinator (it names another part) is never acted on.
            let forged = serde_json::json!({ "part": out.join("part-00007").as_str(), "id": up.id });
            put(&scratch.join("uploads/part-00000-e1-a9"), forged.to_string().into_bytes()).await;
            let noted = abort_noted(&scratch, true).await.unwrap();
            assert_eq!(noted.len(), 2, "{root}: both uploads are noted in the store, the forged note ignored");
            let _ = scratch.store().unwrap().delete(&scratch.join("uploads/part-00000-e1-a9").path()).await;
            uploads.complete(&attempt(1), &grant(1), ids).await.unwrap();
            // Another worker's refused commit leaves the loser's upload alone; its own aborts it.
            uploads.abort(&attempt(2), &quern_api::WorkerId::new(9, 9)).await;
            assert!(uploads.is_open(&attempt(2)));
            uploads.abort(&attempt(2), &worker).await;
            assert!(!uploads.is_open(&attempt(2)));
        }
    }
    assert!(get(&part).await.as_deref() == Some(&winner[..]), "{root}: the winner's part, whole");
    assert!(abort_noted(&scratch, false).await.unwrap().is_empty(), "{root}: no upload left open");
    for url in [part.clone(), grant(2).temp] {
        let _ = url.store().unwrap().delete(&url.path()).await;
    }
}

/// Records written by one journal writer come back in order from a fresh read.
async fn journal(root: &StoreUrl) {
    let store = root.join("coordinator/");
    let ended = |seq: u64| Record::JobEnded { job: JobId::new(7, seq), outcome: Ended::Killed, finished_ms: seq };
    let j = Journal::start(&store, 0, Duration::from_secs(10), CancellationToken::new());
    let n = j.append((0..5).map(ended).collect());
    assert!(j.durable(n, Duration::from_secs(30)).await, "{root}: the journal is written");
    let n = j.append(vec![ended(5)]);
    assert!(j.durable(n, Duration::from_secs(30)).await);
    let read = journal::read_all(&store).await.unwrap();
    assert_eq!(read.records, (0..6).map(ended).collect::<Vec<_>>(), "{root}");
    assert!(read.next >= 1 && read.snapshot.is_none());
}

/// The lease's create-only write: the first create of an entry wins, a second is refused.
async fn lease(root: &StoreUrl) {
    let dir = lease::dir(&root.join("coordinator/"));
    let body = |who: &str| LeaseBody { holder: who.into(), addr: "http://127.0.0.1:1".into(), released: false };
    assert_eq!(lease::latest(&dir).await.unwrap(), None);
    assert!(lease::try_create(&dir, 1, &body("a")).await.unwrap(), "{root}");
    assert!(!lease::try_create(&dir, 1, &body("b")).await.unwrap(), "{root}: an existing entry is never overwritten");
    assert!(lease::try_create(&dir, 2, &body("a")).await.unwrap());
    assert_eq!(lease::latest(&dir).await.unwrap(), Some(2));
    assert_eq!(lease::read(&dir, 1).await.unwrap(), Some(body("a")));
}

/// 2,500 objects (over two 1,000-key pages of S3 listing) and hidden ones: listed in order.
async fn listing(root: &StoreUrl) {
    let input = root.join("input/");
    let store: std::sync::Arc<dyn ObjectStore> = input.store().unwrap();
    let names: Vec<String> = (0..2500).map(|i| format!("f-{i:05}")).collect();
    let all: Vec<String> = names.iter().cloned().chain(["_hidden".to_string(), ".dot".to_string()]).collect();
    for chunk in all.chunks(64) {
        let puts = chunk.iter().map(|n| {
            let (store, path) = (store.clone(), input.join(n).path());
            async move { store.put(&path, PutPayload::from_static(b"x\n")).await }
        });
        for r in futures::future::join_all(puts).await {
            r.unwrap();
        }
    }
    let listed = list_inputs(std::slice::from_ref(&input)).await.unwrap();
    let got: Vec<String> = listed.iter().map(|o| StoreUrl::parse(&o.url).unwrap().base_name()).collect();
    assert_eq!(got, names, "{root}: every object once, in order, hidden ones left out");
    assert!(listed.iter().all(|o| o.size == 2));
}
