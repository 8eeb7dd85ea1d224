//! # quern-api: the contract every Quern crate shares
//!
//! - [`pb`]: the gRPC protocol generated from `proto/quern/v1/quern.proto`
//!   (`JobService` for clients, `WorkerService` for workers).
//! - [`ids`]: typed ids ([`JobId`], [`TaskId`], [`AttemptId`], [`WorkerId`]).
//! - [`job`]: the typed job API ([`Job`], [`MapOnlyJob`], [`Partitioning`], [`Io`],
//!   [`Combiner`], [`Record`], [`Block`]); [`context`]: what map functions write to
//!   ([`MapContext`]) and which task they run in ([`TaskInfo`]); [`output`]: what reduce and
//!   map-only functions write to ([`OutputContext`]) and a task's part ([`PartWriter`]).
//! - [`counts`]: [`ByteCounts`], a counting table for byte-string keys that map functions fill
//!   over a [`Block`] and emit once per distinct key; [`words`]: ASCII words found 64 bytes at
//!   a time.
//! - [`runner`]: a job with its types erased ([`DynJob`]), what workers run.
//! - [`registry`]: named jobs ([`Registry`]) and their declared parameters ([`Params`]).
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
//! A job is a type implementing [`Job`], registered under a name with the parameters it
//! takes:
//!
//! ```
//! use quern_api::{Combiner, Job, JobError, MapContext, OutputContext, Record, Registry};
//!
//! struct CharCount;
//! impl Job for CharCount {
//!     type Key = String;
//!     type Value = u64;
//!     fn map(&self, r: &Record<'_>, ctx: &mut MapContext<'_, String, u64>) -> Result<(), JobError> {
//!         let mut buf = [0u8; 4];
//!         for c in r.line.chars() {
//!             ctx.emit(c.encode_utf8(&mut buf), 1);
//!         }
//!         Ok(())
//!     }
//!     fn combiner(&self) -> Option<Combiner<'_, u64>> {
//!         Some(Combiner::sum())
//!     }
//!     fn reduce(&self, k: String, v: &mut dyn Iterator<Item = u64>, out: &mut OutputContext<'_>) -> Result<(), JobError> {
//!         out.emit(k, v.sum::<u64>());
//!         Ok(())
//!     }
//! }
//!
//! let mut registry = Registry::new();
//! registry.register("charcount", "count characters", &[], |_params| Ok(CharCount));
//! assert_eq!(registry.names(), vec!["charcount".to_string()]);
//! ```
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod client;
pub mod context;
pub mod counted;
pub mod counters;
pub mod counts;
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
pub mod runner;
pub mod split;
pub mod store;
pub mod submit;
pub mod tls;
pub mod total_order;
pub mod words;

/// Generated protocol types and service stubs (`quern.v1`).
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod pb {
    tonic::include_proto!("quern.v1");
}

/// The Arrow version Quern's Arrow and Parquet rows come in ([`job::Row`]).
pub use arrow_array;
pub use context::{MapContext, TaskInfo};
pub use counters::Counters;
pub use counts::ByteCounts;
pub use data::{Data, Encode};
pub use error::{DecodeError, JobError, LookupError, ParamError, ProtocolError, StoreError, panic_message};
pub use format::{InputFormat, OutputFormat};
pub use ids::{AttemptId, JobId, TaskId, TaskKind, WorkerId};
pub use job::{Block, Combiner, Io, Job, MapOnlyJob, Partitioning, Record, RecordKind, Row, TotalOrder};
pub use output::{OutRecord, OutputContext, PartWriter};
pub use registry::{Params, Registry, Stage, StageInput};
pub use runner::{DynJob, MapOptions, Records};
pub use split::Split;
pub use store::StoreUrl;

/// Milliseconds since the Unix epoch, for ids and status times (never for timeouts).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
