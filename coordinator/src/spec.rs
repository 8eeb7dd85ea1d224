//! What a job is, once its submission passed [`crate::convert`] and [`crate::admit`]:
//! [`JobSpec`] with typed URLs and formats, its pipeline [`Stage`]s, and the spec each stage
//! runs with ([`stage_spec`]).

use std::collections::BTreeMap;

use quern_api::{InputFormat, OutputFormat, StageInput, StoreUrl};

/// A validated job submission.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JobSpec {
    /// Registered job name.
    pub name: String,
    /// Input URLs (a directory URL means every object under it).
    pub inputs: Vec<StoreUrl>,
    /// Output directory.
    pub output: StoreUrl,
    /// Number of reduce tasks.
    pub reducers: u32,
    /// Split size in bytes.
    pub split_size: u64,
    /// Job parameters.
    pub params: BTreeMap<String, String>,
    /// Higher first under the priority policy.
    pub priority: i32,
    /// Skip records on which user code panics, after a failed attempt.
    pub skip_bad_records: bool,
    /// For a pipeline: its stages, in order (empty for a plain job).
    #[serde(default)]
    pub stages: Vec<Stage>,
    /// Side data: name -> URL of a small object every task gets.
    #[serde(default)]
    pub side: BTreeMap<String, StoreUrl>,
    /// Input and output formats (see [`quern_api::format`]); empty for the defaults.
    #[serde(default)]
    pub formats: Formats,
    /// For a generator job (no inputs): how many records it makes.
    #[serde(default)]
    pub generate_rows: u64,
}

/// A job's (or stage's) input and output formats.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Formats {
    /// `--input-format`.
    pub input: InputFormat,
    /// `--output-format`.
    pub output: OutputFormat,
}

/// One MapReduce stage of a pipeline.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Stage {
    /// Registered job name.
    pub job: String,
    /// Its parameters.
    pub params: BTreeMap<String, String>,
    /// Its reduce tasks (0: map-only).
    pub reducers: u32,
    /// Its formats.
    #[serde(default)]
    pub formats: Formats,
    /// What it reads; empty: the stage before (the job's input for the first).
    #[serde(default)]
    pub inputs: Vec<StageInput>,
}

/// The effective spec of stage `k`: it reads stage k-1's output from the scratch directory
/// and writes the next one there, the last stage writing the user's output.
pub(crate) fn stage_spec(user: &JobSpec, k: usize, scratch: &StoreUrl) -> JobSpec {
    let stage = &user.stages[k];
    let last = k + 1 == user.stages.len();
    let stage_dir = |j: usize| scratch.join(&format!("stage-{j}/"));
    let inputs = match &stage.inputs[..] {
        [] if k == 0 => user.inputs.clone(),
        [] => vec![stage_dir(k - 1)],
        sources => sources
            .iter()
            .flat_map(|s| match s {
                StageInput::JobInput => user.inputs.clone(),
                StageInput::Stage(j) => vec![stage_dir(*j)],
            })
            .collect(),
    };
    JobSpec {
        name: stage.job.clone(),
        inputs,
        output: if last { user.output.clone() } else { scratch.join(&format!("stage-{k}/")) },
        reducers: stage.reducers,
        split_size: user.split_size,
        params: stage.params.clone(),
        priority: user.priority,
        skip_bad_records: user.skip_bad_records,
        stages: Vec::new(),
        side: user.side.clone(),
        formats: stage.formats,
        generate_rows: if k == 0 { user.generate_rows } else { 0 },
    }
}
