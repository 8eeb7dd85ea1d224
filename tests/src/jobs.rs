//! Jobs for tests only, never in the stock `quern` binary: they exit and stall worker
//! processes and create files at paths their caller names. The `quern-test` binary offers
//! them next to the built-ins ([`registry`]); a user's cluster never can.
//!
//! | name        | key  | value                                            |
//! |-------------|------|--------------------------------------------------|
//! | `crashtest` | word | occurrences, while crashing and stalling workers |

pub mod crashtest;

use quern_api::Registry;

/// Adds the test jobs to `r`.
pub fn register(r: &mut Registry) {
    r.register(
        "crashtest",
        "word count whose workers crash and stall at random (fault-tolerance tests)",
        crashtest::PARAMS,
        crashtest::CrashTest::from_params,
    );
}

/// The built-in jobs and the test jobs: what `quern-test` runs.
pub fn registry() -> Registry {
    let mut r = quern_examples::builtin();
    register(&mut r);
    r
}
