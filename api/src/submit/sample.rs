//! Sampling a total-order job's input for its cut points, as Hadoop's `InputSampler` does:
//! a few 64 KiB windows per object, decoded by the same code a map task uses
//! ([`crate::input::Input`]), so the keys sampled are the keys the maps will see. A
//! compressed object is read whole when a map task could hold it whole, else only the
//! records its first MiB decompresses to are sampled (map tasks stream such objects).

use object_store::ObjectStoreExt;

use crate::format::ObjectFormat;
use crate::input::stream::{Blocks, streamed};
use crate::input::{Input, InputLimits};
use crate::job::{CUTS_PARAM, TotalOrder};
use crate::listing::list_inputs;
use crate::{Counters, DynJob, Record, Registry, StoreUrl};

use super::error::SubmitError;
use super::plan::Plan;

/// Records sampled from one object at most.
const SAMPLES_PER_OBJECT: usize = 4096;

/// Objects sampled at most: enough for even cuts, few enough to submit quickly.
const OBJECTS_SAMPLED: usize = 256;

/// Bytes of one sampled window.
const WINDOW: u64 = 64 * 1024;

/// Compressed bytes read from the start of a compressed object too large to read whole: far
/// more than the four windows they decompress to.
const STREAM_PREFIX: u64 = 1 << 20;

/// For a total-order job (see [`crate::Partitioning::total_order`]) with several
/// reducers, samples the input and adds the cut points to its parameters.
pub(crate) async fn add_total_order(plan: &mut Plan, registry: &Registry) -> Result<(), SubmitError> {
    let spec = &plan.spec;
    if !spec.stages.is_empty() || spec.reducers <= 1 || spec.inputs.is_empty() {
        return Ok(());
    }
    let job = registry.create(&spec.job, &plan.params).map_err(super::PlanError::from)?;
    if !job.total_order() {
        return Ok(());
    }
    let urls = spec
        .inputs
        .iter()
        .map(|u| StoreUrl::parse(u))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| super::PlanError::BadUrl { role: "input", source })?;
    let objects = list_inputs(&urls).await?;
    let mut sample = Vec::new();
    for o in objects.iter().take(OBJECTS_SAMPLED) {
        sample_object(job.as_ref(), plan.input_format.resolve(&o.url), &o.url, o.size, &mut sample).await?;
    }
    let order = TotalOrder::from_sample(sample, plan.spec.reducers);
    plan.spec.params.insert(CUTS_PARAM.to_string(), order.to_param());
    Ok(())
}

/// Adds the sample keys of one object of `size` bytes to `sample`.
async fn sample_object(
    job: &dyn DynJob,
    of: ObjectFormat,
    object: &str,
    size: u64,
    sample: &mut Vec<Vec<u8>>,
) -> Result<(), SubmitError> {
    let bad_url = |source| super::PlanError::BadUrl { role: "input", source };
    let url = StoreUrl::parse(object).map_err(bad_url)?;
    let store = url.store().map_err(bad_url)?;
    let read = |e| SubmitError::SampleRead { url: url.to_string(), source: crate::StoreError::from_store(object, e) };
    let decoded = |e| SubmitError::SampleDecode { url: url.to_string(), source: e };
    if let Some((codec, cut)) = streamed(of)
        && size > InputLimits::DEFAULT.max_read_bytes as u64
    {
        // Too large to read whole: map tasks stream it, and the sample comes from its start.
        let prefix = store.get_range(&url.path(), 0..size.min(STREAM_PREFIX)).await.map_err(read)?;
        let max = InputLimits::DEFAULT.max_streamed(size);
        return match Blocks::new(codec, &prefix[..], cut, 4 * WINDOW as usize, max).next() {
            Some(block) => keep(job, &block.map_err(decoded)?, sample),
            None => Ok(()),
        };
    }
    if !of.splittable() {
        // The same limit a map task has: never hold more of an object than a worker would.
        InputLimits::DEFAULT.check_read("object read whole", size).map_err(decoded)?;
        let bytes = store.get(&url.path()).await.map_err(read)?.bytes().await.map_err(read)?;
        return keep(job, &Input::decode(of, bytes, 0, size).map_err(decoded)?, sample);
    }
    // Record boundaries: lines for text, multiples of the record length for fixed.
    let align = match of {
        ObjectFormat::Fixed(n, _) => u64::from(n),
        _ => 1,
    };
    for k in 0..4u64 {
        let start = size * k / 4 / align * align;
        if start >= size || (k > 0 && size <= WINDOW) {
            continue;
        }
        let end = (start + WINDOW.max(align) / align * align).min(size);
        let bytes = store.get_range(&url.path(), start..end).await.map_err(read)?;
        let input = if align > 1 {
            Input::decode(of, bytes, start, end)
        } else {
            // A window cut mid-line: keep only the lines wholly inside it.
            let cut =
                if end < size { bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1) } else { bytes.len() };
            Input::decode(of, bytes.slice(..cut), start, start + cut as u64)
        };
        keep(job, &input.map_err(decoded)?, sample)?;
    }
    Ok(())
}

/// Adds the sample keys of up to [`SAMPLES_PER_OBJECT`] records of `input`, evenly spaced.
/// The job's sample function is user code: a panic in it is an error, not a crash of the
/// submitting program.
fn keep(job: &dyn DynJob, input: &Input, sample: &mut Vec<Vec<u8>>) -> Result<(), SubmitError> {
    let mut counters = Counters::new();
    for chunk in input.chunks(1) {
        input.with_records(chunk, "", "", &mut counters, |recs| {
            let recs: Vec<Record<'_>> = recs.collect();
            let step = recs.len().div_ceil(SAMPLES_PER_OBJECT).max(1);
            let keys = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                recs.iter().step_by(step).filter_map(|r| job.sample_key(r)).collect::<Vec<_>>()
            }));
            match keys {
                Ok(keys) => {
                    sample.extend(keys);
                    Ok(())
                }
                Err(panic) => Err(SubmitError::JobPanicked {
                    what: "its total-order sample function",
                    message: crate::panic_message(panic.as_ref()).unwrap_or_default(),
                }),
            }
        })?;
    }
    Ok(())
}
