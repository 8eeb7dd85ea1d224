//! `sort`: the input's lines in byte order, each as often as it occurs. With more than one
//! reducer the client samples the input for cut points, so the parts concatenated in name
//! order are globally sorted (a total-order sort, as Hadoop's `TotalOrderPartitioner`).

use quern_api::{Combiner, Job, JobError, MapContext, OutputContext, Partitioning, Record};

/// Sorts lines.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sort;

impl Job for Sort {
    type Key = String;
    type Value = u64;
    fn map(&self, rec: &Record<'_>, ctx: &mut MapContext<'_, String, u64>) -> Result<(), JobError> {
        ctx.emit(rec.line, 1);
        Ok(())
    }

    fn combiner(&self) -> Option<Combiner<'_, u64>> {
        Some(Combiner::sum())
    }

    fn reduce(
        &self,
        line: String,
        counts: &mut dyn Iterator<Item = u64>,
        out: &mut OutputContext<'_>,
    ) -> Result<(), JobError> {
        for _ in 0..counts.sum::<u64>() {
            out.emit_line(&line);
        }
        Ok(())
    }

    /// The key is the line itself.
    fn partitioning(&self) -> Partitioning {
        Partitioning::total_order(|rec| Some(rec.line.as_bytes().to_vec()))
    }
}
