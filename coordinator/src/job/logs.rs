//! The log lines failed attempts of one job sent back with their reports (`quern logs`),
//! kept within a byte budget per job: past it the oldest go first, so a job failing
//! thousands of attempts keeps the latest failures' lines and a bounded amount of memory.
//! Only running jobs keep them here: an ended job's go to its archive (`crate::history`).

use std::collections::VecDeque;

use quern_api::TaskKind;

/// Bytes of log lines one job keeps, at most.
pub const BUDGET: usize = 256 << 10;

/// One failed attempt's lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttemptLog {
    /// Map or reduce.
    pub kind: TaskKind,
    /// The task.
    pub index: u32,
    /// The attempt (numbers are unique across a pipeline's stages).
    pub attempt: u32,
    /// Its last lines, oldest first.
    pub lines: Vec<String>,
}

/// The kept lines of a job's failed attempts, oldest first.
#[derive(Clone, Debug, Default)]
pub struct Logs {
    kept: VecDeque<AttemptLog>,
    bytes: usize,
}

fn size(log: &AttemptLog) -> usize {
    log.lines.iter().map(|l| l.len() + 1).sum()
}

impl Logs {
    /// Keeps `log`, dropping the oldest kept ones past the budget.
    pub fn keep(&mut self, log: AttemptLog) {
        if log.lines.is_empty() {
            return;
        }
        self.bytes += size(&log);
        self.kept.push_back(log);
        while self.bytes > BUDGET {
            let Some(old) = self.kept.pop_front() else { break };
            self.bytes -= size(&old);
        }
    }

    /// The lines of one attempt, if kept.
    pub fn of(&self, kind: TaskKind, index: u32, attempt: u32) -> Option<&[String]> {
        self.kept
            .iter()
            .find(|l| l.kind == kind && l.index == index && l.attempt == attempt)
            .map(|l| l.lines.as_slice())
    }

    /// Every kept log, oldest first.
    pub fn all(&self) -> impl Iterator<Item = &AttemptLog> {
        self.kept.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_past_the_budget_drop_the_oldest() {
        let mut logs = Logs::default();
        let line = "x".repeat(1023);
        let n = BUDGET / (100 * 1024) + 3;
        for a in 1..=n as u32 {
            logs.keep(AttemptLog { kind: TaskKind::Map, index: 0, attempt: a, lines: vec![line.clone(); 100] });
        }
        assert!(logs.bytes <= BUDGET);
        assert!(logs.of(TaskKind::Map, 0, 1).is_none(), "the oldest went");
        assert_eq!(logs.of(TaskKind::Map, 0, n as u32).map(<[String]>::len), Some(100));
        assert!(logs.of(TaskKind::Reduce, 0, n as u32).is_none());
    }
}
