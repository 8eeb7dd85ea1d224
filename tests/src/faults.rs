//! [`Faults`]: what the `quern-test` binary injects into one process, passed to it in
//! environment variables, so a test cluster's processes misbehave on purpose while the
//! stock `quern` binary has no way to.
//!
//! | variable | read by | effect |
//! |---|---|---|
//! | `QUERN_FAULT_SLOWDOWN=DURATION` | `quern-test worker` | sleep this long before each task (a slow machine) |
//! | `QUERN_FAULT_HOLD_REDUCES_WHILE=PATH` | `quern-test coordinator` | hand out no reduce task while the file PATH exists |
//! | `QUERN_FAULT_STORE=RULES` | every `quern-test` command | wrap every object store in a [`FaultyStore`](crate::faulty::FaultyStore) with these rules (text form in [`crate::faulty`]) |
//!
//! The harness sets them per process ([`crate::TestCluster::start_worker_with_faults`],
//! [`crate::TestCluster::start_with_faults`]).

use std::path::PathBuf;
use std::time::Duration;

use crate::faulty::{Rule, parse_rules};

/// `QUERN_FAULT_SLOWDOWN`: a worker's sleep before each task.
pub const SLOWDOWN_ENV: &str = "QUERN_FAULT_SLOWDOWN";
/// `QUERN_FAULT_HOLD_REDUCES_WHILE`: a coordinator holds reduces while this file exists.
pub const HOLD_REDUCES_WHILE_ENV: &str = "QUERN_FAULT_HOLD_REDUCES_WHILE";
/// `QUERN_FAULT_STORE`: rules for the process's stores.
pub const STORE_ENV: &str = "QUERN_FAULT_STORE";

/// Faults for one process of a test cluster (none by default).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Faults {
    /// A worker sleeps this long before each task.
    pub slowdown: Option<Duration>,
    /// A coordinator hands out no reduce task while this file exists.
    pub hold_reduces_while: Option<PathBuf>,
    /// Rules for the process's object stores.
    pub store: Vec<Rule>,
}

impl Faults {
    /// A worker that sleeps `d` before each task.
    pub fn slow(d: Duration) -> Self {
        Faults { slowdown: Some(d), ..Self::default() }
    }

    /// A coordinator that hands out no reduce task while the file `path` exists.
    pub fn holding_reduces_while(path: impl Into<PathBuf>) -> Self {
        Faults { hold_reduces_while: Some(path.into()), ..Self::default() }
    }

    /// A process whose stores follow `rules`.
    pub fn store(rules: Vec<Rule>) -> Self {
        Faults { store: rules, ..Self::default() }
    }

    /// The environment variables that give a `quern-test` process these faults.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = Vec::new();
        if let Some(d) = self.slowdown {
            env.push((SLOWDOWN_ENV.to_string(), humantime::format_duration(d).to_string()));
        }
        if let Some(p) = &self.hold_reduces_while {
            env.push((HOLD_REDUCES_WHILE_ENV.to_string(), p.display().to_string()));
        }
        if !self.store.is_empty() {
            let rules: Vec<String> = self.store.iter().map(Rule::to_string).collect();
            env.push((STORE_ENV.to_string(), rules.join(";")));
        }
        env
    }

    /// The faults this process was given, from its environment.
    pub fn from_env() -> Result<Self, String> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let slowdown = var(SLOWDOWN_ENV)
            .map(|v| humantime::parse_duration(&v).map_err(|e| format!("{SLOWDOWN_ENV}={v:?}: {e}")))
            .transpose()?;
        let store = var(STORE_ENV).map(|v| parse_rules(&v).map_err(|e| format!("{STORE_ENV}: {e}"))).transpose()?;
        Ok(Faults {
            slowdown,
            hold_reduces_while: var(HOLD_REDUCES_WHILE_ENV).map(PathBuf::from),
            store: store.unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_travel_through_the_environment_unchanged() {
        let faults = Faults {
            slowdown: Some(Duration::from_millis(150)),
            hold_reduces_while: Some("/tmp/hold".into()),
            store: parse_rules("get:.arrows:corrupt:1;put+delete:^jobs/:error:2;list::delay=20ms").unwrap(),
        };
        let env = faults.env();
        assert_eq!(env.len(), 3);
        let store = &env.iter().find(|(k, _)| k == STORE_ENV).unwrap().1;
        assert_eq!(parse_rules(store).unwrap(), faults.store);
        assert!(Faults::default().env().is_empty());
    }
}
