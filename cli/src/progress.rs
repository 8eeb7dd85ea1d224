//! The progress of a job being followed (`submit --wait`, `run`), on stderr: on a terminal
//! one `indicatif` bar per phase (maps, reduces) with done/total tasks, throughput, elapsed
//! time and ETA; otherwise plain lines, throttled by [`Throttle`] so that a job of ten
//! thousand tasks writes a few dozen lines to a log, not ten thousand.
//!
//! The coordinator sends a status at every change and about every ten seconds; [`Progress`]
//! turns each into a redraw or (perhaps) a line. Nothing here writes to stdout.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use quern_api::pb;

use crate::render::{self, clean, state_name};

/// At most one plain line per this long, unless something worth saying at once happened.
const LINE_EVERY: Duration = Duration::from_secs(5);

/// How many lines may skip [`LINE_EVERY`] (state changes, a phase or stage finishing): a
/// pipeline of many stages falls back to the plain rate once they are spent.
const URGENT_LINES: u32 = 16;

/// The bars being drawn, if any: [`LogWriter`] puts log lines above them rather than
/// through them (a `quern run` on a terminal logs its warnings there).
static BARS: Mutex<Option<MultiProgress>> = Mutex::new(None);

/// Where the process's log lines go: stderr, around the bars while there are any.
pub(crate) struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let bars = BARS.lock().ok().and_then(|b| b.clone());
        match bars {
            Some(m) => m.suspend(|| std::io::stderr().write(buf)),
            None => std::io::stderr().write(buf),
        }
    }

    // One event is one call: written whole, under stderr's lock, between two redraws.
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        let bars = BARS.lock().ok().and_then(|b| b.clone());
        match bars {
            Some(m) => m.suspend(|| std::io::stderr().lock().write_all(buf)),
            None => std::io::stderr().lock().write_all(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Progress on stderr: bars on a terminal, plain lines otherwise.
pub(crate) struct Progress {
    started: Instant,
    mode: Mode,
}

enum Mode {
    Bars(Bars),
    Lines(Throttle),
}

impl Progress {
    /// Bars if stderr is a terminal, lines otherwise.
    pub(crate) fn new() -> Self {
        let mode = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            Mode::Bars(Bars::new())
        } else {
            Mode::Lines(Throttle::default())
        };
        Progress { started: Instant::now(), mode }
    }

    /// Shows status `s`. Final statuses are left to the summary that follows.
    pub(crate) fn show(&mut self, s: &pb::JobStatus) {
        match &mut self.mode {
            Mode::Bars(b) => b.show(s),
            Mode::Lines(t) => {
                let now = Instant::now();
                if !render::is_final(s) && t.should_print(Snapshot::of(s), now) {
                    eprintln!("{}", plain_line(s, now.duration_since(self.started)));
                }
            }
        }
    }

    /// Leaves the bars as they were last drawn, for the summary to follow below them.
    pub(crate) fn done(self) {
        if let Mode::Bars(b) = self.mode {
            if let Ok(mut bars) = BARS.lock() {
                *bars = None;
            }
            b.abandon();
        }
    }
}

/// `job_..._0001 running  stage 2/3 topn  maps 40/120  reduces 0/8  12.3s`.
pub(crate) fn plain_line(s: &pb::JobStatus, elapsed: Duration) -> String {
    let (m, r) = (s.maps.unwrap_or_default(), s.reduces.unwrap_or_default());
    let stage = render::stage_label(s).map(|l| format!("  stage {l}")).unwrap_or_default();
    format!(
        "{} {}{stage}  maps {}/{}  reduces {}/{}  {}",
        clean(&s.id),
        state_name(s.state),
        m.done,
        m.total,
        r.done,
        r.total,
        render::duration(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
    )
}

/// What a status line says, to tell whether anything changed and how much it matters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Snapshot {
    state: i32,
    stage: Option<String>,
    maps: (u32, u32),
    reduces: (u32, u32),
}

impl Snapshot {
    pub(crate) fn of(s: &pb::JobStatus) -> Self {
        let (m, r) = (s.maps.unwrap_or_default(), s.reduces.unwrap_or_default());
        Snapshot { state: s.state, stage: render::stage_label(s), maps: (m.done, m.total), reduces: (r.done, r.total) }
    }

    /// A change worth a line at once: another state or stage, or a phase just completed.
    fn is_milestone(&self, before: &Snapshot) -> bool {
        let completed = |(done, total): (u32, u32), (was, _): (u32, u32)| total > 0 && done == total && was < total;
        self.state != before.state
            || self.stage != before.stage
            || completed(self.maps, before.maps)
            || completed(self.reduces, before.reduces)
    }
}

/// Decides which statuses become plain lines: nothing that repeats the last line, at most one
/// line per [`LINE_EVERY`], except for up to [`URGENT_LINES`] milestones.
#[derive(Debug, Default)]
pub(crate) struct Throttle {
    last: Option<(Snapshot, Instant)>,
    urgent: u32,
}

impl Throttle {
    pub(crate) fn should_print(&mut self, snap: Snapshot, now: Instant) -> bool {
        let print = match &self.last {
            None => true,
            Some((last, _)) if *last == snap => false,
            Some((last, _)) if snap.is_milestone(last) && self.urgent < URGENT_LINES => {
                self.urgent += 1;
                true
            }
            Some((_, at)) => now.duration_since(*at) >= LINE_EVERY,
        };
        if print {
            self.last = Some((snap, now));
        }
        print
    }
}

/// One bar per phase under a [`MultiProgress`] on stderr, each drawn from the first status
/// that gives it numbers; the reduce bar appears once the job has reduce tasks.
struct Bars {
    multi: MultiProgress,
    maps: Option<ProgressBar>,
    reduces: Option<ProgressBar>,
    stage: Option<String>,
}

impl Bars {
    fn new() -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        if let Ok(mut bars) = BARS.lock() {
            *bars = Some(multi.clone());
        }
        Bars { multi, maps: None, reduces: None, stage: None }
    }

    fn show(&mut self, s: &pb::JobStatus) {
        let stage = render::stage_label(s);
        let (m, r) = (s.maps.unwrap_or_default(), s.reduces.unwrap_or_default());
        // A new stage starts its phases from zero: so do its rates and estimates.
        let restart = stage != self.stage;
        let prefix = |phase: &str| match &stage {
            Some(l) => format!("stage {l} · {phase:>7}"),
            None => phase.to_string(),
        };
        let state = state_name(s.state);
        phase(&self.multi, &mut self.maps, &prefix("maps"), m, state, restart);
        if r.total > 0 || self.reduces.is_some() {
            phase(&self.multi, &mut self.reduces, &prefix("reduces"), r, state, restart);
        }
        self.stage = stage;
    }

    fn abandon(self) {
        for b in [self.maps, self.reduces].into_iter().flatten() {
            b.abandon();
        }
    }
}

/// Updates the bar in `slot`, or makes it: set up out of sight, then shown, so that it is
/// never drawn before it has its numbers.
fn phase(
    multi: &MultiProgress,
    slot: &mut Option<ProgressBar>,
    prefix: &str,
    p: pb::Progress,
    state: &str,
    restart: bool,
) {
    match slot {
        Some(b) => update(b, prefix, p, state, restart),
        None => {
            let b = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::hidden()).with_style(style());
            update(&b, prefix, p, state, false);
            let b = multi.add(b);
            b.enable_steady_tick(Duration::from_millis(200));
            *slot = Some(b);
        }
    }
}

fn style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix:>12} [{bar:30}] {pos:>6}/{len:<6} {rate:>9}  {elapsed:>4} eta {eta:<4} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        // indicatif's own `per_sec` shows every digit of the rate.
        .with_key("rate", |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = write!(w, "{:.1}/s", s.per_sec());
        })
        .progress_chars("=> ")
}

fn update(b: &ProgressBar, prefix: &str, p: pb::Progress, state: &str, restart: bool) {
    if restart {
        b.reset();
    }
    b.set_prefix(prefix.to_string());
    b.set_length(u64::from(p.total));
    b.set_position(u64::from(p.done));
    let msg = match state {
        "running" if p.total > 0 && p.done == p.total => "done".to_string(),
        "running" => format!("{} running", p.running),
        other => other.to_string(),
    };
    b.set_message(msg);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(state: pb::JobState, maps: (u32, u32), reduces: (u32, u32)) -> pb::JobStatus {
        pb::JobStatus {
            id: "job_1_0001".into(),
            state: state as i32,
            maps: Some(pb::Progress { done: maps.0, total: maps.1, running: 0 }),
            reduces: Some(pb::Progress { done: reduces.0, total: reduces.1, running: 0 }),
            ..Default::default()
        }
    }

    #[test]
    fn a_thousand_task_job_reported_at_every_change_prints_a_bounded_number_of_lines() {
        let mut t = Throttle::default();
        let start = Instant::now();
        let mut lines = 0;
        // One status per finished task, 10 ms apart: 10 s of statuses.
        for done in 0..=1000u32 {
            let s = status(pb::JobState::Running, (done, 1000), (0, 8));
            if t.should_print(Snapshot::of(&s), start + Duration::from_millis(u64::from(done) * 10)) {
                lines += 1;
            }
        }
        // The first line, one every 5 s, and the maps finishing.
        assert!((2..=5).contains(&lines), "{lines} lines");
    }

    #[test]
    fn milestones_print_at_once_but_only_so_many_times() {
        let mut t = Throttle::default();
        let at = Instant::now();
        assert!(t.should_print(Snapshot::of(&status(pb::JobState::Queued, (0, 4), (0, 1))), at));
        // Nothing new: no line, however late.
        let same = Snapshot::of(&status(pb::JobState::Queued, (0, 4), (0, 1)));
        assert!(!t.should_print(same, at + Duration::from_secs(60)));
        assert!(t.should_print(Snapshot::of(&status(pb::JobState::Running, (0, 4), (0, 1))), at));
        assert!(!t.should_print(Snapshot::of(&status(pb::JobState::Running, (1, 4), (0, 1))), at));
        assert!(t.should_print(Snapshot::of(&status(pb::JobState::Running, (4, 4), (0, 1))), at));
        // A pipeline of very many stages: milestones run out and the rate rules again.
        let mut printed = 0;
        for stage in 1..100 {
            let mut s = status(pb::JobState::Running, (0, 4), (0, 1));
            (s.stage, s.stages) = (stage, 100);
            printed += u32::from(t.should_print(Snapshot::of(&s), at));
        }
        assert_eq!(printed, URGENT_LINES - 2);
    }

    #[test]
    fn a_plain_line_names_the_job_state_stage_and_phases() {
        let mut s = status(pb::JobState::Running, (40, 120), (0, 8));
        assert_eq!(
            plain_line(&s, Duration::from_millis(12_300)),
            "job_1_0001 running  maps 40/120  reduces 0/8  12.3s"
        );
        (s.stage, s.stages, s.stage_job) = (2, 3, "top\x1b]0;owned\x07n".into());
        let line = plain_line(&s, Duration::from_secs(1));
        assert!(line.contains("stage 2/3 top\\u{1b}]0;owned\\u{7}n  maps"), "{line}");
    }
}
