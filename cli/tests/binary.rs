//! The `quern` binary's surface. Having an integration test here also makes `cargo test`
//! build the binary, which the workspace's cluster tests start as real processes.
#![allow(clippy::unwrap_used, missing_docs)]

use std::process::Command;

#[test]
fn every_subcommand_has_help() {
    for sub in ["coordinator", "worker", "submit", "status", "list", "kill", "workers", "tasks", "run", "jobs"] {
        let o = Command::new(env!("CARGO_BIN_EXE_quern")).args([sub, "--help"]).output().unwrap();
        assert!(o.status.success(), "{sub} --help");
        assert!(String::from_utf8_lossy(&o.stdout).contains("Usage"), "{sub} --help prints usage");
    }
}

#[test]
fn the_stock_binary_lists_the_builtin_jobs() {
    let o = Command::new(env!("CARGO_BIN_EXE_quern")).arg("jobs").output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    for job in ["wordcount", "grep", "indexer"] {
        assert!(text.contains(job), "{job} missing from {text}");
    }
}

#[test]
fn no_subcommand_is_an_error() {
    let o = Command::new(env!("CARGO_BIN_EXE_quern")).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
}
