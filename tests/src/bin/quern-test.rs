//! `quern-test`: the `quern` CLI for tests. It runs the built-in jobs and the test-only jobs
//! (`crashtest`, see `quern_tests::jobs`), and misbehaves as its environment asks: a slow
//! worker, a coordinator that holds reduces back, stores that fail, stall or corrupt chosen
//! requests. The variables and the store rules' text are described in `quern_tests::faults`
//! and `quern_tests::faulty`. The stock `quern` binary has none of this.

use std::process::ExitCode;
use std::sync::{Arc, OnceLock};

use object_store::ObjectStore;
use quern_tests::faults::Faults;
use quern_tests::faulty::FaultyStore;

/// This process's faults, read once at start; the hooks are plain functions and read them here.
static FAULTS: OnceLock<Faults> = OnceLock::new();

fn main() -> ExitCode {
    let faults = match Faults::from_env() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let store_faults = !faults.store.is_empty();
    let _ = FAULTS.set(faults);
    if store_faults {
        quern_api::store::set_store_wrapper(faulty_store);
    }
    let hooks = quern_cli::Hooks { coordinator: Some(coordinator), worker: Some(worker) };
    quern_cli::main_with_hooks(quern_tests::jobs::registry(), hooks)
}

fn faults() -> &'static Faults {
    FAULTS.get_or_init(Faults::default)
}

/// Each store the process builds (one per bucket) gets its own rules' turns.
fn faulty_store(inner: Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> {
    Arc::new(FaultyStore::new(inner, faults().store.clone()))
}

fn coordinator(cfg: &mut quern_coordinator::CoordinatorConfig) {
    cfg.hold_reduces_while = faults().hold_reduces_while.clone();
}

fn worker(cfg: &mut quern_worker::WorkerConfig) {
    cfg.slowdown = faults().slowdown;
}
