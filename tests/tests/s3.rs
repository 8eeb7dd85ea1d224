//! Whole clusters on a real S3 API server (`s3s-fs` on 127.0.0.1): input, output, store and
//! journal all on `s3://`, outputs compared with sequential computations.
#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use quern_tests::data::{read_output, word_count, write_corpus};
use quern_tests::s3::S3Server;
use quern_tests::{TestCluster, ok_stdout};

/// A cluster of `workers` processes whose store is `s3://quern/store/`.
fn cluster(s3: &S3Server, workers: usize) -> TestCluster {
    TestCluster::start_on_store(workers, &s3.url("store/"), &[], s3.env()).unwrap()
}

#[test]
fn wordcount_with_input_output_and_store_on_s3_is_exact_and_leaves_only_the_output() {
    let s3 = S3Server::start().unwrap();
    let c = cluster(&s3, 2);
    let local = c.path("input");
    write_corpus(&local, 3, 30_000, 7).unwrap();
    let input = s3.upload_dir(&local, "in").unwrap();
    let output = s3.url("out");
    let out = c.cli(
        "submit",
        &[
            "--job",
            "wordcount",
            "--input",
            &input,
            "--output",
            &output,
            "--reducers",
            "3",
            "--split-size",
            "8KiB",
            "--wait",
            "--json",
        ],
    );
    let status: serde_json::Value = serde_json::from_str(&ok_stdout(&out)).unwrap();
    assert_eq!(status["state"], "succeeded", "{status}");
    let got = c.path("got");
    s3.download_dir("out", &got).unwrap();
    assert_eq!(read_output(&got, 3, true), word_count(&local));
    // Intermediate data goes once the job has ended; the journal and lease stay.
    let ok = quern_tests::eventually(Duration::from_secs(30), || {
        s3.keys("store/jobs").unwrap().is_empty() && s3.keys("out/_temporary").unwrap().is_empty()
    });
    assert!(ok, "left behind: {:?}", s3.keys("store/jobs").unwrap());
    assert_eq!(s3.pending_uploads(), 0, "no multipart upload left open");
}
