//! Store requests counted on a real S3 API server (`s3s-fs` on 127.0.0.1): a word count's
//! `STORE_*` counters against what the job must have asked of the store, and a listing of
//! 10,000 input objects, page by page.

use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use object_store::list::{PaginatedListOptions, PaginatedListStore};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use quern_api::counted::{Counted, StoreStats};
use quern_tests::data::{read_output, word_count, word_count_segments, write_corpus};
use quern_tests::s3::S3Server;
use quern_tests::{TestCluster, ok_stdout};

/// A cluster of `workers` processes whose store is `s3://quern/store/`.
fn cluster(s3: &S3Server, workers: usize) -> TestCluster {
    TestCluster::start_on_store(workers, &s3.url("store/"), &[], s3.env()).unwrap()
}

fn counter(status: &serde_json::Value, name: &str) -> u64 {
    status["counters"][name].as_u64().unwrap_or_else(|| panic!("no counter {name} in {status}"))
}

#[test]
fn a_word_counts_store_counters_match_what_it_must_ask_of_the_store() {
    let s3 = S3Server::start().unwrap();
    let c = cluster(&s3, 2);
    let local = c.path("input");
    // Four objects well under the split size: one map task each, each read with one GET.
    write_corpus(&local, 4, 20_000, 11).unwrap();
    let input = s3.upload_dir(&local, "in").unwrap();
    let reducers = 3u64;
    let out = c.cli(
        "submit",
        &["--job", "wordcount", "--input", &input, "--output", &s3.url("out"), "--reducers", "3", "--wait", "--json"],
    );
    let status: serde_json::Value = serde_json::from_str(&ok_stdout(&out)).unwrap();
    assert_eq!(status["state"], "succeeded", "{status}");
    let got = c.path("got");
    s3.download_dir("out", &got).unwrap();
    assert_eq!(read_output(&got, reducers as usize, true), word_count(&local));

    let maps = status["maps"]["total"].as_u64().unwrap();
    let reduces = status["reduces"]["total"].as_u64().unwrap();
    assert_eq!((maps, reduces), (4, reducers));
    let input_bytes: u64 =
        (0..4).map(|f| std::fs::metadata(local.join(format!("doc-{f:02}.txt"))).unwrap().len()).sum();
    let segments = word_count_segments(&local, reducers) as u64;
    let store = |name: &str| counter(&status, name);
    eprintln!(
        "maps {maps}, reduces {reduces}, non-empty segments {segments}, input bytes {input_bytes}; counters: {}",
        status["counters"]
    );
    // Reads: one GET per map task (its whole object), one ranged GET per non-empty map output
    // segment a reducer needs (no index fetched: the offsets come with the assignment).
    assert_eq!(store("STORE_GET"), maps + segments, "GETs");
    assert_eq!(store("STORE_BYTES_READ"), input_bytes + counter(&status, "REDUCE_SHUFFLE_BYTES"), "bytes read");
    // Writes: at least a shuffle object per map task and a part per reduce task (a multipart
    // part takes more PUTs); every byte written is a shuffle object's or a part's.
    assert!(store("STORE_PUT") >= maps + reduces, "PUTs: {status}");
    let written = counter(&status, "MAP_OUTPUT_BYTES") + counter(&status, "OUTPUT_BYTES");
    assert_eq!(store("STORE_BYTES_WRITTEN"), written, "bytes written");
    // Committed attempts never list, and never delete: the coordinator does both.
    assert_eq!((store("STORE_LIST"), store("STORE_DELETE")), (0, 0));
}

#[test]
fn ten_thousand_input_objects_on_s3_are_listed_in_ten_counted_pages_and_all_become_map_tasks() {
    const OBJECTS: usize = 10_000;
    let s3 = S3Server::start().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let store = s3.store().unwrap();
    rt.block_on(
        futures::stream::iter(0..OBJECTS)
            .map(|i| {
                let store = store.clone();
                async move { store.put(&Path::from(format!("many/o-{i:05}.txt")), format!("w{i}\n").into()).await }
            })
            .buffer_unordered(32)
            .try_collect::<Vec<_>>(),
    )
    .unwrap();

    // The pages the server really returns, and what Counted counts for the same listing.
    let client = s3.client().unwrap();
    let pages = rt.block_on(async {
        let (mut pages, mut objects, mut token) = (0, 0, None);
        // Bounded: 10,000 objects are 10 pages; a server that never ends its listing fails.
        for _ in 0..100 {
            let opts = PaginatedListOptions { page_token: token, ..Default::default() };
            let page = client.list_paginated(Some("many/"), opts).await.unwrap();
            pages += 1;
            objects += page.result.objects.len();
            token = page.page_token;
            if token.is_none() {
                break;
            }
        }
        assert_eq!(objects, OBJECTS);
        pages
    });
    let counted = Counted::new(Arc::new(client) as Arc<dyn ObjectStore>);
    let stats = Arc::new(StoreStats::new());
    let listed = rt
        .block_on(StoreStats::scope(stats.clone(), async {
            counted.list(Some(&Path::from("many"))).try_collect::<Vec<_>>().await
        }))
        .unwrap();
    assert_eq!(listed.len(), OBJECTS);
    assert_eq!(pages, 10, "the server pages by 1,000");
    assert_eq!(stats.snapshot().list, pages, "one LIST counted per page");

    // The coordinator lists them at submit (no workers: nothing runs): a map task each.
    let mut c = cluster(&s3, 0);
    let job = c
        .submit(&["--job", "wordcount", "--input", &s3.url("many/"), "--output", &s3.url("out"), "--reducers", "1"])
        .unwrap();
    let status = c.status(&job).unwrap();
    assert_eq!(status["maps"]["total"], OBJECTS, "{status}");
    assert!(c.cli("kill", &[&job]).status.success());
    let ended = c.wait_job(&job, Duration::from_secs(30), |_| {}).unwrap();
    assert_eq!(ended["state"], "killed");
}
