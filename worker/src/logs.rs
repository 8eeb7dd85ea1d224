//! Per-attempt logs: the last lines each attempt logged, kept in memory so that a failed
//! attempt's report can carry them to the coordinator (`quern logs JOB TASK` shows them).
//!
//! [`AttemptLogs`] is a `tracing` layer. Every attempt runs inside a `task` span with an
//! `attempt` field (see `lib.rs`), and compute work on the rayon pool enters the span of the
//! task that spawned it ([`crate::task::spawn_compute`]), so any event inside that span, the
//! user's own `tracing` calls in a mapper or reducer included, is an attempt's line. The
//! process's subscriber adds the layer (the `quern` CLI does); without it nothing is kept and
//! reports carry no lines.
//!
//! Everything is bounded: [`LINES`] lines per attempt of at most [`LINE_BYTES`] each, and
//! [`ATTEMPTS`] attempts at once (the oldest are dropped first), so a chatty or hostile job
//! cannot grow a worker's memory through its logs.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::{Mutex, MutexGuard, OnceLock};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

/// Lines kept per attempt (the last ones).
pub const LINES: usize = 100;
/// Bytes kept of one line.
pub const LINE_BYTES: usize = 512;
/// Attempts whose lines are kept at once.
pub const ATTEMPTS: usize = 256;

/// The lines of the attempts seen lately, by attempt id (its `Display` form).
#[derive(Default)]
struct Book {
    lines: HashMap<String, VecDeque<String>>,
    /// Attempt ids in the order they first logged, to drop the oldest.
    order: VecDeque<String>,
}

fn book() -> MutexGuard<'static, Book> {
    static BOOK: OnceLock<Mutex<Book>> = OnceLock::new();
    BOOK.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner())
}

impl Book {
    fn push(&mut self, attempt: &str, line: String) {
        if !self.lines.contains_key(attempt) {
            while self.order.len() >= ATTEMPTS {
                if let Some(old) = self.order.pop_front() {
                    self.lines.remove(&old);
                }
            }
            self.order.push_back(attempt.to_string());
        }
        let lines = self.lines.entry(attempt.to_string()).or_default();
        if lines.len() == LINES {
            lines.pop_front();
        }
        lines.push_back(line);
    }
}

/// Takes (and forgets) the lines `attempt` logged, oldest first.
pub fn take(attempt: &str) -> Vec<String> {
    let mut b = book();
    b.order.retain(|a| a != attempt);
    b.lines.remove(attempt).map(Vec::from).unwrap_or_default()
}

/// The `tracing` layer that keeps attempts' lines.
#[derive(Clone, Copy, Debug, Default)]
pub struct AttemptLogs;

/// The attempt a span belongs to (kept in the span's extensions).
struct AttemptOf(String);

/// Finds the `attempt` field of a span.
struct AttemptField(Option<String>);

impl Visit for AttemptField {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "attempt" {
            self.0 = Some(format!("{value:?}"));
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "attempt" {
            self.0 = Some(value.to_string());
        }
    }
}

/// Formats an event as `message key=value ...`.
struct Line(String);

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if self.0.len() >= LINE_BYTES {
            return;
        }
        let sep = if self.0.is_empty() { "" } else { " " };
        if field.name() == "message" {
            let _ = write!(self.0, "{sep}{value:?}");
        } else {
            let _ = write!(self.0, "{sep}{}={value:?}", field.name());
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record_debug(field, &format_args!("{value}"));
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary.
fn cut(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

impl<S> Layer<S> for AttemptLogs
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().name() != "task" {
            return;
        }
        let mut found = AttemptField(None);
        attrs.record(&mut found);
        if let (Some(attempt), Some(span)) = (found.0, ctx.span(id)) {
            span.extensions_mut().insert(AttemptOf(cut(attempt, 256)));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let Some(scope) = ctx.event_scope(event) else { return };
        let Some(attempt) = scope.into_iter().find_map(|s| s.extensions().get::<AttemptOf>().map(|a| a.0.clone()))
        else {
            return;
        };
        let mut line = Line(String::new());
        event.record(&mut line);
        let stamp = humantime::format_rfc3339_millis(std::time::SystemTime::now());
        let text = format!("{stamp} {} {}", event.metadata().level(), line.0);
        // Control characters would let a line pose as several, or drive a terminal.
        let text: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
        book().push(&attempt, cut(text, LINE_BYTES));
    }
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    #[test]
    fn an_attempts_lines_are_kept_bounded_and_taken_once() {
        let subscriber = tracing_subscriber::registry().with(AttemptLogs);
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("outside any attempt");
            let span = tracing::info_span!("task", attempt = "job_1_0001_m_000003_1");
            let _in = span.enter();
            for i in 0..LINES + 5 {
                tracing::warn!(n = i, "line\nwith a break {}", "x".repeat(LINE_BYTES));
            }
            let inner = tracing::info_span!("inner");
            inner.in_scope(|| tracing::error!("from a nested span"));
        });
        let lines = take("job_1_0001_m_000003_1");
        assert_eq!(lines.len(), LINES);
        assert!(lines.iter().all(|l| l.len() <= LINE_BYTES && !l.contains('\n')), "{lines:?}");
        assert!(lines[0].contains("WARN line with a break"), "{}", lines[0]);
        assert!(lines.last().unwrap().contains("ERROR from a nested span"));
        assert!(take("job_1_0001_m_000003_1").is_empty(), "taken once");
    }

    #[test]
    fn the_oldest_attempts_are_dropped_past_the_limit() {
        let mut b = Book::default();
        for i in 0..ATTEMPTS + 3 {
            b.push(&format!("a{i}"), "x".into());
        }
        assert_eq!(b.lines.len(), ATTEMPTS);
        assert!(!b.lines.contains_key("a0") && b.lines.contains_key(&format!("a{}", ATTEMPTS + 2)));
    }
}
