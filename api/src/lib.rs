//! # quern-api: the contract every Quern crate shares
//!
//! - [`pb`]: the gRPC protocol generated from `proto/quern/v1/quern.proto`
//!   (`JobService` for clients, `WorkerService` for workers).
//! - [`ids`]: typed ids ([`JobId`], [`TaskId`], [`AttemptId`], [`WorkerId`]).
//! - [`job`]: the typed job API ([`Job`], [`MapContext`], [`ReduceContext`]) and
//!   its type-erased form [`DynJob`] that workers run.
//! - [`registry`]: named jobs ([`Registry`]) and their parameters ([`Params`]).
//! - [`output`]: what reduce and map-only tasks write ([`ReduceContext`], [`output::TextOutput`]).
//! - [`format`](mod@format): input and output formats ([`InputFormat`], [`OutputFormat`]): text, whole
//!   files, fixed-length binary records, Arrow IPC, Parquet.
//! - [`data`]: how keys and values become bytes ([`Data`]; `Desc` and `Json` wrappers).
//! - [`split`]: input splits and Hadoop's line rule; [`store`]: storage URLs ([`StoreUrl`]).
//! - [`listing`]: a job's input objects; [`input`]: their bytes decoded into records
//!   ([`input::Input`]), for workers' map tasks and for total-order sampling alike.
//! - [`counted`]: every object-store request counted ([`counted::Counted`], [`counted::StoreStats`]),
//!   per process and per task scope; workers report an attempt's as its `STORE_*` counters.
//! - [`total_order`]: cut points for globally sorted output ([`job::TotalOrder`]).
//! - [`client`]: connecting to a coordinator (token, TLS, message limit); [`tls`]: the PEM
//!   files both sides read; [`fdlimit`]: raising the open-file limit of long-running processes.
//!
//! The coordinator and the worker never depend on each other; both depend on this crate.
//!
//! A job is a type implementing [`Job`], registered under a name:
//!
//! ```
//! use quern_api::{Job, JobError, MapContext, ReduceContext, Registry, TextRecord};
//!
//! struct CharCount;
//! impl Job for CharCount {
//!     type Key = String;
//!     type Value = u64;
//!     fn map(&self, r: &TextRecord<'_>, ctx: &mut MapContext<'_, String, u64>) -> Result<(), JobError> {
//!         for c in r.line.chars() {
//!             ctx.emit(c.to_string(), 1);
//!         }
//!         Ok(())
//!     }
//!     fn reduce(&self, k: String, v: &mut dyn Iterator<Item = u64>, out: &mut ReduceContext<'_>) -> Result<(), JobError> {
//!         out.emit(k, v.sum::<u64>());
//!         Ok(())
//!     }
//! }
//!
//! let mut registry = Registry::new();
//! registry.register("charcount", "count characters", |params| {
//!     params.allow_only(&[])?;
//!     Ok(CharCount)
//! });
//! assert_eq!(registry.names(), vec!["charcount".to_string()]);
//! ```
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod client;
pub mod counted;
pub mod counters;
pub mod data;
pub mod error;
pub mod fdlimit;
pub mod format;
pub mod ids;
pub mod input;
pub mod job;
pub mod json;
pub mod listing;
pub mod output;
pub mod registry;
pub mod split;
pub mod store;
pub mod submit;
pub mod tls;
pub mod total_order;

/// Generated protocol types and service stubs (`quern.v1`).
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod pb {
    tonic::include_proto!("quern.v1");
}

/// The Arrow version Quern's Arrow and Parquet rows come in ([`job::Row`]).
pub use arrow_array;
pub use counters::Counters;
pub use data::Data;
pub use error::{JobError, LookupError, ParamError, ProtocolError, StoreError, panic_message};
pub use format::{InputFormat, OutputFormat};
pub use ids::{AttemptId, JobId, TaskId, TaskKind, WorkerId};
pub use job::{DynJob, Job, MapContext, MapOptions, RecordKind, ReduceContext, TextRecord};
pub use registry::{Params, Registry, Stage, StageInput};
pub use split::Split;
pub use store::StoreUrl;

/// Milliseconds since the Unix epoch, for ids and status times (never for timeouts).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
