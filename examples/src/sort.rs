//! `sort`: the input's lines in byte order, each as often as it occurs. With more than one
//! reducer the client samples the input for cut points, so the parts concatenated in name
//! order are globally sorted (a total-order sort, as Hadoop's `TotalOrderPartitioner`).

use quern_api::job::TotalOrder;
use quern_api::{Job, JobError, MapContext, ParamError, Params, ReduceContext, TextRecord};

/// Sorts lines.
#[derive(Debug, Clone, Default)]
pub struct Sort {
    order: Option<TotalOrder>,
}

impl Sort {
    /// Builds the job (its only parameters are the framework's cut points).
    pub fn from_params(p: &Params) -> Result<Self, ParamError> {
        p.allow_only(&[])?;
        Ok(Sort { order: TotalOrder::from_params(p)? })
    }
}

impl Job for Sort {
    type Key = String;
    type Value = u64;
    const COMBINER: bool = true;

    fn map(&self, rec: &TextRecord<'_>, ctx: &mut MapContext<'_, String, u64>) -> Result<(), JobError> {
        ctx.emit_borrowed(rec.line, 1);
        Ok(())
    }

    fn combine(&self, acc: &mut u64, n: u64) {
        *acc += n;
    }

    fn reduce(
        &self,
        line: String,
        counts: &mut dyn Iterator<Item = u64>,
        out: &mut ReduceContext<'_>,
    ) -> Result<(), JobError> {
        for _ in 0..counts.sum::<u64>() {
            out.emit_line(&line);
        }
        Ok(())
    }

    fn partition(&self, key: &[u8], reducers: u32) -> u32 {
        match &self.order {
            Some(t) => t.partition(key, reducers),
            None => (quern_api::job::fnv1a64(key) % u64::from(reducers.max(1))) as u32,
        }
    }

    fn sample_key(&self, rec: &TextRecord<'_>) -> Option<Vec<u8>> {
        Some(rec.line.as_bytes().to_vec())
    }
}
