//! Turning a job definition into the wire spec, checked against a [`Registry`] before
//! anything is sent: unknown jobs, bad parameters, reducer counts a job forbids, inputs given
//! to a generator, pipelines whose stages do not fit together.
//!
//! [`plan`] is pure (no I/O), so these rules are tested here without a store or a runtime;
//! reading side data is the one step that touches a store, done by the caller first.

use std::collections::BTreeMap;

use crate::{DynJob, InputFormat, OutputFormat, Params, Registry, Stage, StageInput, StoreUrl, pb};

use super::error::PlanError;

/// Reduce tasks when neither the caller nor the job says.
pub const DEFAULT_REDUCERS: u32 = 4;

/// Input bytes per map task when the caller does not say.
pub const DEFAULT_SPLIT_SIZE: u64 = 64 << 20;

/// A job definition as a caller gives it (what `quern submit`'s flags say).
#[derive(Clone, Debug)]
pub(crate) struct Request {
    pub(crate) job: String,
    pub(crate) inputs: Vec<String>,
    pub(crate) output: Option<String>,
    pub(crate) params: BTreeMap<String, String>,
    /// Side data, name and URL, in the order given.
    pub(crate) side: Vec<(String, String)>,
    pub(crate) reducers: Option<u32>,
    pub(crate) input_format: Option<InputFormat>,
    pub(crate) output_format: Option<OutputFormat>,
    pub(crate) maps: Option<u32>,
    pub(crate) priority: i32,
    pub(crate) split_size: u64,
    pub(crate) skip_bad_records: bool,
}

impl Request {
    pub(crate) fn new(job: &str) -> Self {
        Request {
            job: job.to_string(),
            inputs: Vec::new(),
            output: None,
            params: BTreeMap::new(),
            side: Vec::new(),
            reducers: None,
            input_format: None,
            output_format: None,
            maps: None,
            priority: 0,
            split_size: DEFAULT_SPLIT_SIZE,
            skip_bad_records: false,
        }
    }
}

/// A checked job: its wire spec, and what sampling for a total order needs.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) spec: pb::JobSpec,
    /// The parameters with the side data read, as the job validated them.
    pub(crate) params: Params,
    /// How the first stage reads the job's input.
    pub(crate) input_format: InputFormat,
}

/// One MapReduce stage as it will run: the plain job is a pipeline of one.
struct Planned {
    job: String,
    params: Params,
    reducers: u32,
    input_format: InputFormat,
    output_format: OutputFormat,
}

/// The reducers a job runs with: its own requirement, else the caller's, else the default.
/// A pipeline's stage count (`stage`) wins over the caller's, which is for the whole job.
fn reducers_for(name: &str, job: &dyn DynJob, user: Option<u32>, stage: Option<u32>) -> Result<u32, PlanError> {
    match (job.reducers(), stage.or(user)) {
        (Some(required), Some(asked)) if required != asked && stage.is_none() => {
            Err(PlanError::Reducers { job: name.to_string(), required, asked })
        }
        (Some(required), _) => Ok(required),
        (None, Some(asked)) => Ok(asked),
        (None, None) => Ok(DEFAULT_REDUCERS),
    }
}

/// Checks `req` against `registry` and builds the wire spec. `params` are the request's with
/// its side data read; `side` maps side data names to their URLs.
pub(crate) fn plan(
    req: &Request,
    registry: &Registry,
    params: Params,
    side: BTreeMap<String, String>,
) -> Result<Plan, PlanError> {
    let pipeline = registry.pipeline(&req.job, &params).transpose()?;
    let stages: Vec<Stage> = match &pipeline {
        Some(stages) => stages.clone(),
        None => vec![Stage::new(&req.job, params.clone())],
    };
    let mut planned: Vec<Planned> = Vec::new();
    let mut generate = None;
    for (k, stage) in stages.iter().enumerate() {
        let (name, stage_params, stage_reducers) = (stage.job.clone(), stage.params.clone(), stage.reducers);
        let job = registry.create(&name, &stage_params)?;
        if k == 0 {
            generate = job.generate();
        } else if job.generate().is_some() {
            return Err(PlanError::LateGenerator { pipeline: req.job.clone() });
        }
        let last = k + 1 == stages.len();
        // A stage reads what its sources wrote: the user's input, or earlier stages' output.
        let user_format = req.input_format.unwrap_or_else(|| job.input_format());
        let sources: Vec<InputFormat> = match (stage.inputs.as_slice(), planned.last()) {
            ([], Some(prev)) => vec![prev.output_format.reader()],
            ([], None) => vec![user_format],
            (inputs, _) => inputs
                .iter()
                .map(|i| match i {
                    StageInput::JobInput => user_format,
                    StageInput::Stage(j) => planned[*j].output_format.reader(),
                })
                .collect(),
        };
        if generate.is_some() && stage.inputs.contains(&StageInput::JobInput) {
            return Err(PlanError::GeneratorReadsInput { pipeline: req.job.clone(), stage: k });
        }
        let input_format = sources[0];
        if sources.iter().any(|f| *f != input_format) {
            return Err(PlanError::MixedFormats { pipeline: req.job.clone(), stage: k, job: name });
        }
        let output_format =
            if last { req.output_format.unwrap_or_else(|| job.output_format()) } else { job.output_format() };
        let reducers = reducers_for(&name, job.as_ref(), req.reducers, stage_reducers)?;
        planned.push(Planned { job: name, params: stage_params, reducers, input_format, output_format });
    }
    let inputs: Vec<&String> = req.inputs.iter().filter(|s| !s.trim().is_empty()).collect();
    let job = || req.job.clone();
    match generate {
        Some(_) if !inputs.is_empty() => return Err(PlanError::InputGiven { job: job() }),
        Some(0) => return Err(PlanError::NothingToGenerate { job: job() }),
        None if inputs.is_empty() => return Err(PlanError::InputRequired { job: job() }),
        None if req.maps.is_some() => return Err(PlanError::MapsWithoutGenerator { job: job() }),
        _ => {}
    }
    let inputs = inputs
        .into_iter()
        .map(|s| StoreUrl::from_user(s).map(|u| u.to_string()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| PlanError::BadUrl { role: "input", source })?;
    let output = req.output.as_deref().ok_or_else(|| PlanError::OutputRequired { job: job() })?;
    let output = StoreUrl::from_user(output).map_err(|source| PlanError::BadUrl { role: "output", source })?;
    let first = &planned[0];
    let stage_specs = match pipeline {
        None => Vec::new(),
        Some(_) => planned.iter().zip(&stages).map(|(s, stage)| stage_spec(s, stage)).collect(),
    };
    let spec = pb::JobSpec {
        job: req.job.clone(),
        inputs,
        output: output.to_string(),
        reducers: first.reducers,
        split_size: req.split_size,
        params: params.as_map().clone(),
        priority: req.priority,
        skip_bad_records: req.skip_bad_records,
        stages: stage_specs,
        side,
        input_format: first.input_format.to_string(),
        output_format: planned.last().map_or(first.output_format, |s| s.output_format).to_string(),
        generate_rows: generate.unwrap_or(0),
        maps: req.maps.unwrap_or(0),
    };
    Ok(Plan { spec, params, input_format: first.input_format })
}

/// A pipeline stage on the wire, where the job's input is stage `-1`.
fn stage_spec(s: &Planned, stage: &Stage) -> pb::StageSpec {
    pb::StageSpec {
        job: s.job.clone(),
        params: s.params.as_map().clone(),
        reducers: s.reducers,
        input_format: s.input_format.to_string(),
        output_format: s.output_format.to_string(),
        inputs: stage
            .inputs
            .iter()
            .map(|i| match i {
                StageInput::JobInput => -1,
                StageInput::Stage(j) => *j as i32,
            })
            .collect(),
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
