//! A task attempt as a worker receives it: the one place a stage becomes a wire assignment,
//! with every object name built here from the job's and attempt's ids.

use quern_api::{TaskKind, pb};

use super::StageRun;
use crate::task::TaskState;

impl StageRun {
    /// Builds the assignment for attempt `attempt` of a task.
    pub fn assignment(&self, kind: TaskKind, idx: u32, attempt: u32) -> pb::TaskAssignment {
        let attempt_ref =
            pb::AttemptRef { job_id: self.job.to_string(), kind: pb::TaskKind::from(kind) as i32, index: idx, attempt };
        let task = match kind {
            TaskKind::Map => {
                let s = &self.splits[idx as usize];
                pb::task_assignment::Task::Map(pb::MapTask {
                    split: Some(pb::Split {
                        url: s.url.clone(),
                        start: s.start,
                        end: s.end,
                        object_size: s.object_size,
                    }),
                    output_url: self.shuffle_url(idx, attempt).to_string(),
                    part_url: if self.map_only() { self.part_url(idx).to_string() } else { String::new() },
                    temp_url: if self.map_only() {
                        self.temp_part_url(idx, attempt).to_string()
                    } else {
                        String::new()
                    },
                })
            }
            TaskKind::Reduce => {
                let inputs = self
                    .maps
                    .iter()
                    .enumerate()
                    .filter_map(|(m, t)| match &t.state {
                        TaskState::Succeeded { output: Some(o), .. } => Some(pb::ReduceInput {
                            map_index: m as u32,
                            url: self.shuffle_url_of(m as u32, o).to_string(),
                            segment: o.segments.get(idx as usize).map(pb::Segment::from),
                            map_attempt: o.attempt,
                        }),
                        _ => None,
                    })
                    .collect();
                pb::task_assignment::Task::Reduce(pb::ReduceTask {
                    inputs,
                    part_url: self.part_url(idx).to_string(),
                    temp_url: self.temp_part_url(idx, attempt).to_string(),
                })
            }
        };
        pb::TaskAssignment {
            attempt: Some(attempt_ref),
            job: self.spec.name.clone(),
            params: self.spec.params.clone(),
            reducers: self.spec.reducers,
            task: Some(task),
            skip_bad_records: self.spec.skip_bad_records,
            side: self.spec.side.iter().map(|(n, u)| (n.clone(), u.to_string())).collect(),
            input_format: self.spec.formats.input.to_string(),
            output_format: self.spec.formats.output.to_string(),
        }
    }
}
