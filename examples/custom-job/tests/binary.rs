//! The user's own binary offers its job next to the built-ins. (Also makes `cargo test` build
//! `my-quern` for the workspace's cluster tests.)
#![allow(clippy::unwrap_used, missing_docs)]

#[test]
fn my_quern_lists_its_own_job_and_the_builtins() {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_my-quern")).arg("jobs").output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    for job in ["wordlengths", "wordcount", "grep", "indexer"] {
        assert!(text.contains(job), "{job} missing from {text}");
    }
}

#[test]
fn bad_parameters_of_the_custom_job_are_refused_before_running() {
    let dir = std::env::temp_dir();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_my-quern"))
        .args([
            "run",
            "--job",
            "wordlengths",
            "--param",
            "min=lots",
            "--input",
            &dir.display().to_string(),
            "--output",
            "/nonexistent/out",
        ])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("min"));
}
