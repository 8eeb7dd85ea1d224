//! Quern's integration tests, one module per area, linked into one test binary (`it`) so the
//! workspace links the harness and every crate once rather than once per file. Each test starts
//! its own cluster (real `quern-test` processes or an in-process `LocalCluster`) through
//! [`quern_tests::TestCluster`]; see the README's "Where things live" for what each module covers.
//!
//! `store_conformance` stays a binary of its own (`tests/tests/`): it puts an S3 server's
//! credentials into the process environment, which no other test may share.
#![allow(clippy::unwrap_used, missing_docs)]

mod cli;
mod cli_output;
mod compressed;
mod dag;
mod end_to_end;
mod failstop;
mod faults;
mod formats;
mod gc;
mod history;
mod hostile;
mod hosts;
mod library;
mod load;
mod misconfig;
mod net;
mod preemption;
mod restart;
mod robust;
mod s3;
mod scheduling;
mod snapshots;
mod spill;
mod store_faults;
mod store_requests;
mod terasort;
mod web;
mod worker_metrics;
