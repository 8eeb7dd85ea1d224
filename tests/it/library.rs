//! A Rust program submitting through the library (`quern_api::submit`) to a multi-process
//! cluster: it waits with a progress callback, reads the output, and kills a running job.

use std::time::Duration;

use quern_api::submit::{Client, JobState, JobStatus};
use quern_tests::data::{read_output, word_count, write_corpus};
use quern_tests::{Mode, TestCluster};

#[test]
fn a_program_submits_waits_with_progress_and_kills() {
    let c = TestCluster::start(Mode::Processes, 2).unwrap();
    let input = c.path("input");
    write_corpus(&input, 4, 40_000, 31).unwrap();
    let big = c.path("big");
    write_corpus(&big, 8, 400_000, 32).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let url = c.url().to_string();
    let (i, out) = (format!("{}/", input.display()), c.path("out"));
    let (b, never) = (format!("{}/", big.display()), c.path("never"));

    rt.block_on(async {
        let client = Client::connect(&url, Default::default()).await.unwrap().with_registry(quern_examples::builtin());
        let job = client
            .job("wordcount")
            .input(&i)
            .output(&out.display().to_string())
            .reducers(3)
            .split_size(16 << 10)
            .submit()
            .await
            .unwrap();
        let mut seen: Vec<JobStatus> = Vec::new();
        let done = tokio::time::timeout(Duration::from_secs(180), job.wait(|s| seen.push(s.clone())))
            .await
            .expect("the job ends in time")
            .unwrap();
        assert_eq!(done.state(), JobState::Succeeded, "{:?}", done.error());
        assert_eq!(done.id(), job.id());
        assert!(!seen.is_empty(), "the callback saw the job");
        assert!(seen.iter().all(|s| s.id() == job.id()));
        assert!(seen.last().unwrap().state().is_final());
        assert!(done.maps().total > 1 && done.maps().done == done.maps().total, "{:?}", done.maps());
        assert_eq!(done.reduces().done, 3);
        // The statuses arrive in order: work done never goes back.
        let done_tasks: Vec<u32> = seen.iter().map(|s| s.maps().done + s.reduces().done).collect();
        assert!(done_tasks.windows(2).all(|w| w[0] <= w[1]), "{done_tasks:?}");
        assert_eq!(job.status().await.unwrap().to_json(), done.to_json());

        // A job of hundreds of small splits, killed once it runs.
        let slow = client.job("wordcount").input(&b).output(&never.display().to_string()).split_size(4 << 10);
        let slow = slow.submit().await.unwrap();
        let started = std::time::Instant::now();
        while slow.status().await.unwrap().state() == JobState::Queued {
            assert!(started.elapsed() < Duration::from_secs(60), "the job never started");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(slow.kill().await.unwrap(), JobState::Killed);
        let end = tokio::time::timeout(Duration::from_secs(60), slow.wait(|_| {})).await.unwrap().unwrap();
        assert_eq!(end.state(), JobState::Killed);
        assert_eq!(slow.status().await.unwrap().state(), JobState::Killed);
    });
    assert_eq!(read_output(&out, 3, true), word_count(&input));
    assert!(!never.join("_SUCCESS").exists());
}
