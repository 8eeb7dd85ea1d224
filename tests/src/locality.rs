//! The data-locality layout shared by the scheduling tests and the locality benchmark:
//! worker processes a, b and c in racks r1, r1 and r2, each holding its own files of the
//! input on its "own disk" (`--local-data`), running one word count over all of it.
//!
//! Where each map ran depends on timing, so [`Locality::counted_once`] checks only what
//! holds however the race goes; the policy itself is asserted by the coordinator's unit
//! tests, and the benchmark prints the figures.

use std::path::Path;

use anyhow::{Result, bail, ensure};

use crate::data::{files_under, read_output, word_count, write_corpus};
use crate::{TestCluster, ok_stdout};

/// How a word count's maps ran, from its `status --json`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Locality {
    /// Maps that ran on a worker holding their split.
    pub node_local: u64,
    /// Maps that ran in the rack of one.
    pub rack_local: u64,
    /// Maps that ran anywhere else.
    pub remote: u64,
}

impl Locality {
    /// The counts of a job's status.
    pub fn of(status: &serde_json::Value) -> Result<Self> {
        let l = &status["locality"];
        let count = |k: &str| l[k].as_u64().ok_or_else(|| anyhow::anyhow!("no locality.{k} in {status}"));
        Ok(Locality { node_local: count("node_local")?, rack_local: count("rack_local")?, remote: count("remote")? })
    }

    /// Every map of the job is counted, once.
    pub fn counted_once(&self, status: &serde_json::Value) -> Result<()> {
        let total = status["maps"]["total"].as_u64().unwrap_or(0);
        ensure!(self.node_local + self.rack_local + self.remote == total, "{self:?} for {total} maps");
        Ok(())
    }

    /// The node-local share of the maps.
    pub fn node_local_share(&self) -> f64 {
        self.node_local as f64 / (self.node_local + self.rack_local + self.remote).max(1) as f64
    }
}

/// Runs word count on a fresh cluster (extra `coordinator_args`) whose hosts a, b and c hold
/// `files[k]` of 12 generated files; checks the output against a sequential count and
/// returns the job's status and the input's size in bytes.
pub fn locality_run(coordinator_args: &[&str], files: [usize; 3]) -> Result<(serde_json::Value, u64)> {
    let mut c = TestCluster::start_with(crate::Mode::Processes, 0, coordinator_args)?;
    let all = c.path("all");
    write_corpus(&all, 12, 24_000, 41)?;
    let mut dirs = Vec::new();
    let mut next = 0;
    for (n, host) in ["a", "b", "c"].iter().enumerate() {
        let dir = c.path(&format!("disk-{host}"));
        std::fs::create_dir_all(&dir)?;
        let first = next;
        next += files[n];
        for f in first..next {
            let name = format!("doc-{f:02}.txt");
            std::fs::copy(all.join(&name), dir.join(&name))?;
        }
        dirs.push(dir);
    }
    for (host, rack, dir) in [("a", "r1", &dirs[0]), ("b", "r1", &dirs[1]), ("c", "r2", &dirs[2])] {
        let d = dir.display().to_string();
        let slow = crate::faults::Faults::slow(std::time::Duration::from_millis(50));
        c.start_worker_with_faults(&["--host", host, "--rack", rack, "--local-data", &d], &slow)?;
    }
    let inputs: Vec<String> = dirs.iter().map(|d| format!("{}/", d.display())).collect();
    let (i, o) = (inputs.join(","), c.path("out").display().to_string());
    let out = c.cli(
        "submit",
        &[
            "--job",
            "wordcount",
            "--input",
            &i,
            "--output",
            &o,
            "--reducers",
            "3",
            "--split-size",
            "8KiB",
            "--wait",
            "--json",
        ],
    );
    let status: serde_json::Value = serde_json::from_str(&ok_stdout(&out))?;
    if status["state"] != "succeeded" {
        bail!("the job ended {}", status["state"]);
    }
    let used: Vec<_> = dirs.iter().flat_map(|d| files_under(d)).collect();
    let bytes = used.iter().filter_map(|f| f.metadata().ok()).map(|m| m.len()).sum();
    ensure!(read_output(Path::new(&o), 3, true) == word_count(&all), "the output differs from a sequential count");
    Ok((status, bytes))
}
