//! What a submission must pass before it becomes a job: the path policy (`--allow-url`),
//! side data that exists and is small, and the job itself, built by its own code with its
//! parameters exactly as a worker will build it, when this coordinator's binary has it.
//!
//! A job this binary does not know (a user's own job, run by their own worker binary) is
//! admitted if a registered worker runs it; otherwise it waits, and fails with "no worker
//! runs job X" if none comes within `--job-wait` (see [`crate::core::Core::tick`]).

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;

use object_store::ObjectStoreExt;
use quern_api::{Params, Registry, StoreUrl};
use tonic::Status;

use crate::job::JobSpec;

/// Most bytes one side data object may have: it is shipped to every worker and held in memory.
pub const MAX_SIDE_BYTES: u64 = 64 * 1024 * 1024;

/// Most bytes all side data objects of one job may have together.
pub const MAX_ALL_SIDE_BYTES: u64 = 4 * MAX_SIDE_BYTES;

/// The checks a coordinator applies to every submission.
#[derive(Clone, Debug, Default)]
pub struct Admission {
    /// Directories inputs, outputs and side data must lie under (empty: anywhere).
    pub allow: Vec<StoreUrl>,
    /// The jobs this coordinator's binary has, to build and so validate at submit.
    pub jobs: Option<Registry>,
    /// The coordinator's own store root: no job reads or writes in (or around) it, so no
    /// job can read another's intermediate data or squat its journal and lease names.
    pub store: Option<StoreUrl>,
}

impl Admission {
    /// Refuses a location outside every `--allow-url` directory.
    pub fn check_url(&self, what: &str, url: &StoreUrl) -> Result<(), Status> {
        if let Some(store) = &self.store
            && url.as_dir().overlaps(&store.as_dir())
        {
            return Err(Status::permission_denied(format!(
                "{what} {url} overlaps the coordinator's own store {store}"
            )));
        }
        if self.allow.is_empty() || self.allow.iter().any(|dir| url.is_under(dir)) {
            return Ok(());
        }
        Err(Status::permission_denied(format!("{what} {url} is outside the allowed locations (--allow-url)")))
    }

    /// The path policy over every location a spec names.
    pub fn check_paths(&self, spec: &JobSpec) -> Result<(), Status> {
        for input in &spec.inputs {
            self.check_url("input", input)?;
        }
        self.check_url("output", &spec.output)?;
        for (name, url) in &spec.side {
            self.check_url(&format!("side data {name:?}"), url)?;
        }
        Ok(())
    }

    /// Reads the side data (each object exists and is small) and, when this binary has the
    /// job, builds every stage with its parameters under a panic guard, checking what the
    /// job itself requires (its reducers, whether it generates data). Returns whether the
    /// job was known here.
    pub async fn check_job(&self, spec: &JobSpec) -> Result<bool, Status> {
        let mut side = BTreeMap::new();
        let mut total = 0u64;
        for (name, url) in &spec.side {
            let bytes = read_side(name, url, self.jobs.is_some()).await?;
            total += bytes.len() as u64;
            if total > MAX_ALL_SIDE_BYTES {
                return Err(Status::invalid_argument(format!(
                    "side data of one job may hold at most {MAX_ALL_SIDE_BYTES} bytes in all"
                )));
            }
            side.insert(name.clone(), bytes);
        }
        let Some(registry) = &self.jobs else { return Ok(false) };
        let stages: Vec<(&str, &BTreeMap<String, String>, u32)> = if spec.stages.is_empty() {
            vec![(&spec.name, &spec.params, spec.reducers)]
        } else {
            spec.stages.iter().map(|s| (s.job.as_str(), &s.params, s.reducers)).collect()
        };
        let names = registry.names();
        if stages.iter().any(|(name, ..)| !names.iter().any(|n| n == name)) {
            return Ok(false);
        }
        for (k, (name, params, reducers)) in stages.into_iter().enumerate() {
            let mut p = Params::new(params.clone());
            for (n, bytes) in &side {
                p = p.with_side(n, bytes.clone());
            }
            let job = std::panic::catch_unwind(AssertUnwindSafe(|| registry.create(name, &p)))
                .map_err(|panic| {
                    Status::invalid_argument(format!(
                        "job {name:?}: building it panicked: {}",
                        quern_api::panic_message(panic.as_ref()).unwrap_or_default()
                    ))
                })?
                .map_err(|e| Status::invalid_argument(format!("job {name:?}: {e}")))?;
            if let Some(required) = job.reducers()
                && required != reducers
            {
                return Err(Status::invalid_argument(format!(
                    "job {name:?} runs with {required} reducer(s), not {reducers}"
                )));
            }
            let generates = job.generate().is_some();
            if k == 0 && generates != (spec.generate_rows > 0) {
                let why = if generates { "generates its data; it takes no input" } else { "needs input" };
                return Err(Status::invalid_argument(format!("job {name:?} {why}")));
            }
        }
        Ok(true)
    }
}

/// Reads side data object `url` whole (or, when `fetch` is false, only checks its size).
async fn read_side(name: &str, url: &StoreUrl, fetch: bool) -> Result<bytes::Bytes, Status> {
    let store = url.store().map_err(|e| Status::invalid_argument(e.to_string()))?;
    let meta = match store.head(&url.path()).await {
        Ok(meta) => meta,
        Err(object_store::Error::NotFound { .. }) => {
            return Err(Status::not_found(format!("side data {name:?}: {url} not found")));
        }
        Err(e) => return Err(Status::unavailable(format!("side data {name:?}: {e}"))),
    };
    if meta.size > MAX_SIDE_BYTES {
        return Err(Status::invalid_argument(format!(
            "side data {name:?} ({url}) has {} bytes; at most {MAX_SIDE_BYTES} are allowed",
            meta.size
        )));
    }
    if !fetch {
        return Ok(bytes::Bytes::new());
    }
    let got = store.get(&url.path()).await.map_err(|e| Status::unavailable(format!("side data {name:?}: {e}")))?;
    let bytes = got.bytes().await.map_err(|e| Status::unavailable(format!("side data {name:?}: {e}")))?;
    if bytes.len() as u64 > MAX_SIDE_BYTES {
        return Err(Status::invalid_argument(format!("side data {name:?} ({url}) grew past {MAX_SIDE_BYTES} bytes")));
    }
    Ok(bytes)
}
