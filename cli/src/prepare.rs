//! Turning a job definition (`--job`, `--input`, `--param`, formats...) into the wire spec,
//! checked against this binary's registry before anything is submitted: unknown jobs, bad
//! parameters, inputs given to a generator, and the like fail here with one clear line.

use anyhow::{Context, Result, anyhow, bail};
use object_store::ObjectStoreExt;
use quern_api::format::ObjectFormat;
use quern_api::job::{CUTS_PARAM, TotalOrder};
use quern_api::{DynJob, InputFormat, OutputFormat, Params, Registry, Stage, StageInput, StoreUrl, TextRecord, pb};

use crate::args::JobDef;

/// Reduce tasks when neither the user nor the job says.
const DEFAULT_REDUCERS: u32 = 4;

/// One MapReduce stage as it will run: the plain job is a pipeline of one.
struct Planned {
    job: String,
    params: Params,
    reducers: u32,
    input_format: InputFormat,
    output_format: OutputFormat,
}

/// The reducers a job runs with: its own requirement, else the user's, else the default.
fn reducers_for(name: &str, job: &dyn DynJob, user: Option<u32>, stage: Option<u32>) -> Result<u32> {
    match (job.reducers(), stage.or(user)) {
        (Some(required), Some(asked)) if required != asked && stage.is_none() => {
            let what = if required == 0 { "map-only".to_string() } else { format!("runs with {required} reducer(s)") };
            bail!("job {name:?} is {what}; leave out --reducers (or give --reducers {required})")
        }
        (Some(required), _) => Ok(required),
        (None, Some(asked)) => Ok(asked),
        (None, None) => Ok(DEFAULT_REDUCERS),
    }
}

/// Reads the side data files (`--side NAME=URL`) into the parameters, so the job can
/// validate against them here too.
async fn read_side(def: &JobDef, mut params: Params) -> Result<(Params, std::collections::HashMap<String, String>)> {
    let mut side = std::collections::HashMap::new();
    for pair in &def.side {
        let (name, place) = pair.split_once('=').with_context(|| format!("bad --side {pair:?}: expected NAME=URL"))?;
        if name.is_empty() || side.contains_key(name) {
            bail!("bad --side {pair:?}: the name must be given, and only once");
        }
        let url = StoreUrl::from_user(place).with_context(|| format!("bad --side {pair:?}"))?;
        let store = url.store()?;
        let bytes = store
            .get(&url.path())
            .await
            .map_err(|e| anyhow!("side data {name:?}: {}", quern_api::StoreError::from_store(url.as_str(), e)))?
            .bytes()
            .await
            .with_context(|| format!("side data {name:?}"))?;
        params = params.with_side(name, bytes);
        side.insert(name.to_string(), url.to_string());
    }
    Ok((params, side))
}

/// Checks a job definition against this binary's registry and builds the wire spec.
pub async fn prepare(
    def: &JobDef,
    registry: &Registry,
    split_size: u64,
    priority: i32,
) -> Result<(pb::JobSpec, Params)> {
    let params = Params::parse_pairs(&def.params).context("bad --param")?;
    let (params, side) = read_side(def, params).await?;
    let pipeline = registry.pipeline(&def.job, &params).transpose()?;
    let stages: Vec<Stage> = match &pipeline {
        Some(stages) => stages.clone(),
        None => vec![Stage::new(&def.job, params.clone())],
    };
    let mut planned: Vec<Planned> = Vec::new();
    let mut generate = None;
    for (k, stage) in stages.iter().enumerate() {
        let (name, stage_params, stage_reducers) = (stage.job.clone(), stage.params.clone(), stage.reducers);
        let job = registry.create(&name, &stage_params)?;
        if k == 0 {
            generate = job.generate();
        } else if job.generate().is_some() {
            bail!("pipeline {:?}: only its first stage may generate data", def.job);
        }
        let last = k + 1 == stages.len();
        // A stage reads what its sources wrote: the user's input, or earlier stages' output.
        let user_format = def.input_format.unwrap_or_else(|| job.input_format());
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
            bail!("pipeline {:?}: stage {k} reads the job's input, but the pipeline generates its data", def.job);
        }
        let input_format = sources[0];
        if sources.iter().any(|f| *f != input_format) {
            bail!("pipeline {:?}: stage {k} ({name}) reads sources in different formats", def.job);
        }
        let output_format =
            if last { def.output_format.unwrap_or_else(|| job.output_format()) } else { job.output_format() };
        let reducers = reducers_for(&name, job.as_ref(), def.reducers, stage_reducers)?;
        planned.push(Planned { job: name, params: stage_params, reducers, input_format, output_format });
    }
    let inputs: Vec<&String> = def.input.iter().filter(|s| !s.trim().is_empty()).collect();
    match generate {
        Some(_) if !inputs.is_empty() => bail!("job {:?} generates its data; it takes no --input", def.job),
        Some(0) => bail!("job {:?} has nothing to generate (give it --param rows=N)", def.job),
        None if inputs.is_empty() => bail!("--input is required for job {:?}", def.job),
        None if def.maps.is_some() => bail!("--maps applies only to generator jobs such as teragen"),
        _ => {}
    }
    let inputs = inputs
        .into_iter()
        .map(|s| StoreUrl::from_user(s).map(|u| u.to_string()).context("bad --input"))
        .collect::<Result<Vec<_>>>()?;
    let output = StoreUrl::from_user(&def.output).context("bad --output")?;
    let first = &planned[0];
    let stages = match pipeline {
        None => Vec::new(),
        Some(_) => planned
            .iter()
            .zip(&stages)
            .map(|(s, stage)| pb::StageSpec {
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
            })
            .collect(),
    };
    let spec = pb::JobSpec {
        job: def.job.clone(),
        inputs,
        output: output.to_string(),
        reducers: first.reducers,
        split_size,
        params: params.as_map().clone(),
        priority,
        skip_bad_records: false,
        stages,
        side: side.into_iter().collect(),
        input_format: first.input_format.to_string(),
        output_format: planned.last().map_or(first.output_format, |s| s.output_format).to_string(),
        generate_rows: generate.unwrap_or(0),
        maps: def.maps.unwrap_or(0),
    };
    Ok((spec, params))
}

/// Records sampled from one object at most.
const SAMPLES_PER_OBJECT: usize = 4096;

/// For a total-order job (one whose [`quern_api::Job::sample_key`] says so) with several
/// reducers, samples the input (a few 64 KiB windows per object, as Hadoop's `InputSampler`
/// reads the starts of splits) and adds the cut points to its parameters.
pub async fn add_total_order(spec: &mut pb::JobSpec, params: &Params, registry: &Registry) -> Result<()> {
    if !spec.stages.is_empty() || spec.reducers <= 1 || spec.inputs.is_empty() {
        return Ok(());
    }
    let job = registry.create(&spec.job, params)?;
    if job.sample_key(&TextRecord::text("", 0, "")).is_none() {
        return Ok(());
    }
    let format: InputFormat = spec.input_format.parse()?;
    let urls = spec.inputs.iter().map(|u| StoreUrl::parse(u)).collect::<Result<Vec<_>, _>>()?;
    let objects = quern_api::listing::list_inputs(&urls).await?;
    const WINDOW: u64 = 64 * 1024;
    let mut sample = Vec::new();
    for o in objects.iter().take(256) {
        let url = StoreUrl::parse(&o.url)?;
        let store = url.store()?;
        let of = format.resolve(&o.url);
        let keep = |input: &quern_api::input::Input, sample: &mut Vec<Vec<u8>>| {
            let mut counters = quern_api::Counters::new();
            for chunk in input.chunks(1) {
                input.with_records(chunk, "", "", &mut counters, |recs| {
                    let recs: Vec<TextRecord<'_>> = recs.collect();
                    let step = recs.len().div_ceil(SAMPLES_PER_OBJECT).max(1);
                    sample.extend(recs.iter().step_by(step).filter_map(|r| job.sample_key(r)));
                });
            }
        };
        if !of.splittable() {
            // The same limit a map task has: never hold more of an object than a worker would.
            quern_api::input::InputLimits::DEFAULT
                .check_read("object read whole", o.size)
                .map_err(|e| anyhow!("sampling {url}: {e}"))?;
            let bytes = store.get(&url.path()).await.with_context(|| format!("sampling {url}"))?.bytes().await?;
            let input =
                quern_api::input::Input::decode(of, bytes, 0, o.size).map_err(|e| anyhow!("sampling {url}: {e}"))?;
            keep(&input, &mut sample);
            continue;
        }
        // Record boundaries: lines for text, multiples of the record length for fixed.
        let align = match of {
            ObjectFormat::Fixed(n, _) => u64::from(n),
            _ => 1,
        };
        for k in 0..4u64 {
            let start = o.size * k / 4 / align * align;
            if start >= o.size || (k > 0 && o.size <= WINDOW) {
                continue;
            }
            let end = (start + WINDOW.max(align) / align * align).min(o.size);
            let bytes = store.get_range(&url.path(), start..end).await.with_context(|| format!("sampling {url}"))?;
            let input = if align > 1 {
                quern_api::input::Input::decode(of, bytes, start, end)
            } else {
                // A window cut mid-line: keep only the lines wholly inside it.
                let cut = if end < o.size {
                    bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1)
                } else {
                    bytes.len()
                };
                quern_api::input::Input::decode(of, bytes.slice(..cut), start, start + cut as u64)
            };
            keep(&input.map_err(|e| anyhow!("sampling {url}: {e}"))?, &mut sample);
        }
    }
    let order = TotalOrder::from_sample(sample, spec.reducers);
    spec.params.insert(CUTS_PARAM.to_string(), order.to_param());
    Ok(())
}
