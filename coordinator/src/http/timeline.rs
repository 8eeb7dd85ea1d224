//! A job's attempts as rows (one per attempt), and the timeline drawn from them: an inline
//! SVG with one lane per worker and one rect per attempt, from its start to its end (to now
//! while it runs), coloured by how it ended, with a `<title>` tooltip.

use std::collections::BTreeMap;

use maud::{Markup, html};
use quern_api::pb;

use super::pages::took;

/// The most attempts a page lists or draws: a huge job shows the longest (or the most
/// recent) of them and says so.
pub(super) const MAX_DRAWN: usize = 1000;

/// One attempt of one task.
#[derive(Debug)]
pub(super) struct Row {
    pub(super) kind: &'static str,
    pub(super) index: u32,
    /// The pipeline stage (from 1), 0 for a single-stage job.
    pub(super) stage: u32,
    pub(super) attempt: u32,
    pub(super) worker: String,
    pub(super) state: String,
    pub(super) locality: String,
    pub(super) started_ms: u64,
    pub(super) finished_ms: Option<u64>,
    pub(super) backup: bool,
    pub(super) error: Option<String>,
}

impl Row {
    /// How long it ran (so far, at `now_ms`).
    pub(super) fn took_ms(&self, now_ms: u64) -> u64 {
        self.finished_ms.unwrap_or(now_ms).saturating_sub(self.started_ms)
    }

    /// `map 3` (`stage 2 map 3` in a pipeline).
    pub(super) fn task(&self) -> String {
        match self.stage {
            0 => format!("{} {}", self.kind, self.index),
            s => format!("stage {s} {} {}", self.kind, self.index),
        }
    }
}

/// Every attempt of `tasks`, as rows.
pub(super) fn rows(tasks: &[pb::TaskInfo]) -> Vec<Row> {
    let mut out = Vec::new();
    for t in tasks {
        let kind = if t.kind == pb::TaskKind::Reduce as i32 { "reduce" } else { "map" };
        for a in &t.attempt_list {
            out.push(Row {
                kind,
                index: t.index,
                stage: t.stage,
                attempt: a.attempt,
                worker: a.worker.clone(),
                state: a.state.clone(),
                locality: t.locality.clone(),
                started_ms: a.started_ms,
                finished_ms: a.finished_ms,
                backup: a.backup,
                error: a.error.clone(),
            });
        }
    }
    out
}

/// Keeps at most [`MAX_DRAWN`] rows: the longest when sorting by duration, otherwise the
/// most recently started. Returns how many were left out.
pub(super) fn bound(rows: &mut Vec<Row>, by_duration: bool, now_ms: u64) -> usize {
    if by_duration {
        rows.sort_by_key(|r| std::cmp::Reverse(r.took_ms(now_ms)));
    } else {
        rows.sort_by_key(|r| std::cmp::Reverse(r.started_ms));
    }
    let left_out = rows.len().saturating_sub(MAX_DRAWN);
    rows.truncate(MAX_DRAWN);
    if !by_duration {
        rows.sort_by_key(|r| (r.started_ms, r.kind, r.index, r.attempt));
    }
    left_out
}

fn colour(state: &str) -> &'static str {
    match state {
        "succeeded" => "#4a8",
        "running" => "#59d",
        "failed" => "#d55",
        "lost" => "#e93",
        _ => "#aaa",
    }
}

const LABEL: f64 = 190.0;
const WIDTH: f64 = 900.0;
const LANE: f64 = 20.0;

/// The timeline of `rows`, one lane per worker.
pub(super) fn svg(rows: &[Row], now_ms: u64) -> Markup {
    let lanes: BTreeMap<&str, usize> = {
        let mut ws: Vec<&str> = rows.iter().map(|r| r.worker.as_str()).collect();
        ws.sort_unstable();
        ws.dedup();
        ws.into_iter().enumerate().map(|(i, w)| (w, i)).collect()
    };
    let t0 = rows.iter().map(|r| r.started_ms).min().unwrap_or(now_ms);
    let t1 = rows.iter().map(|r| r.finished_ms.unwrap_or(now_ms)).max().unwrap_or(now_ms).max(t0 + 1);
    let x = |ms: u64| LABEL + (ms.saturating_sub(t0)) as f64 / (t1 - t0) as f64 * WIDTH;
    let height = lanes.len() as f64 * LANE + 24.0;
    html! {
        svg #timeline xmlns="http://www.w3.org/2000/svg" width=(LABEL + WIDTH + 10.0) height=(height) {
            @for (w, i) in &lanes {
                text x="0" y=(*i as f64 * LANE + 14.0) { (w) }
                line x1=(LABEL) x2=(LABEL + WIDTH) y1=(*i as f64 * LANE + LANE) y2=(*i as f64 * LANE + LANE) stroke="#eee" {}
            }
            @for r in rows {
                @let lane = lanes.get(r.worker.as_str()).copied().unwrap_or(0) as f64;
                @let (a, b) = (x(r.started_ms), x(r.finished_ms.unwrap_or(now_ms)));
                rect.attempt x=(format!("{a:.1}")) y=(lane * LANE + 3.0) width=(format!("{:.1}", (b - a).max(1.0)))
                    height=(LANE - 6.0) fill=(colour(&r.state)) data-state=(r.state) {
                    title {
                        (r.task()) " attempt " (r.attempt) @if r.backup { " (backup)" } " on " (r.worker) ": "
                        (r.state) ", " (took(r.took_ms(now_ms)))
                        @if let Some(e) = &r.error { " - " (e) }
                    }
                }
            }
            text x=(LABEL) y=(height - 4.0) { "0" }
            text x=(LABEL + WIDTH - 60.0) y=(height - 4.0) { (took(t1 - t0)) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(i: u32, started_ms: u64, took: u64, worker: &str) -> Row {
        Row {
            kind: "map",
            index: i,
            stage: 0,
            attempt: 1,
            worker: worker.into(),
            state: "succeeded".into(),
            locality: String::new(),
            started_ms,
            finished_ms: Some(started_ms + took),
            backup: false,
            error: Some("<b>".into()),
        }
    }

    #[test]
    fn a_huge_job_keeps_the_longest_or_the_latest_attempts() {
        let make = || (0..MAX_DRAWN as u32 + 10).map(|i| row(i, u64::from(i), u64::from(i % 7), "w")).collect();
        let mut rows: Vec<Row> = make();
        assert_eq!(bound(&mut rows, true, 0), 10);
        assert_eq!(rows.len(), MAX_DRAWN);
        assert!(rows.windows(2).all(|w| w[0].took_ms(0) >= w[1].took_ms(0)));
        let mut rows: Vec<Row> = make();
        assert_eq!(bound(&mut rows, false, 0), 10);
        assert_eq!(rows.first().map(|r| r.started_ms), Some(10), "the 10 earliest go");
    }

    #[test]
    fn one_rect_per_attempt_in_its_worker_s_lane_and_strings_escaped() {
        let rows = vec![row(0, 1_000, 500, "<w1>"), row(1, 1_200, 300, "w2"), row(2, 1_600, 100, "<w1>")];
        let svg = svg(&rows, 2_000).into_string();
        assert_eq!(svg.matches("<rect class=\"attempt\"").count(), 3);
        assert_eq!(svg.matches("<line ").count(), 2, "one lane per worker");
        assert!(!svg.contains("<w1>") && !svg.contains("<b>") && svg.contains("&lt;w1&gt;"), "{svg}");
    }
}
