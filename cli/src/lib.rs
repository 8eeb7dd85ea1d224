//! # quern-cli: the `quern` command line, for the stock binary and for users' own
//!
//! [`main_with`] is the whole CLI for a given [`Registry`] of jobs: the stock `quern` binary
//! calls it with the built-in jobs, and a user's own binary calls it with its own jobs (next
//! to or instead of the built-ins), getting every subcommand, `worker` and `run` included.
//!
//! ```no_run
//! fn main() -> std::process::ExitCode {
//!     let mut jobs = quern_examples::builtin();
//!     // jobs.register("myjob", "what it does", &["some_param"], |params| MyJob::new(params));
//!     quern_cli::main_with(jobs)
//! }
//! ```
//!
//! A binary that must adjust the configs before the servers start (a test binary setting
//! its fault-injection hooks) calls [`main_with_hooks`] with [`Hooks`] instead.
//!
//! Arguments are parsed by clap ([`args`]) into validated configs that call the library
//! `start`/`run` functions of the coordinator and worker crates; errors print as one line.
//! [`local::LocalCluster`] is a whole cluster in one process, for `quern run` and for tests.
#![cfg_attr(test, allow(clippy::unwrap_used))]

// Every module below prints through these instead of `std`'s macros of the same names (a
// `macro_rules!` defined here shadows the prelude's in the modules declared after it), so no
// output to a closed pipe (`quern tasks JOB --json | head`) can panic; see
// `render::write_out`.
#[allow(unused_macros)]
macro_rules! print {
    ($($arg:tt)*) => { $crate::render::write_out(format_args!($($arg)*)) };
}
#[allow(unused_macros)]
macro_rules! println {
    () => { $crate::render::write_out(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::render::write_out(format_args!("{}\n", format_args!($($arg)*))) };
}
#[allow(unused_macros)]
macro_rules! eprint {
    ($($arg:tt)*) => { $crate::render::write_err(format_args!($($arg)*)) };
}
#[allow(unused_macros)]
macro_rules! eprintln {
    () => { $crate::render::write_err(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::render::write_err(format_args!("{}\n", format_args!($($arg)*))) };
}

pub mod args;
pub mod client_cmds;
pub mod gc;
pub mod local;
pub mod logs;
mod progress;
pub mod render;
pub mod servers;

#[cfg(test)]
mod deploy_tests;

use std::process::ExitCode;

use clap::Parser;
use quern_api::Registry;

use crate::args::{Cli, Command};

/// Runs the CLI with `registry`'s jobs; returns the process exit code.
pub fn main_with(registry: Registry) -> ExitCode {
    main_with_hooks(registry, Hooks::default())
}

/// Functions that adjust a config after the command line has been turned into it and before
/// it runs. Only `quern coordinator` and `quern worker` call them (not the embedded `quern
/// run`). Plain functions, not closures: a hook reads whatever it needs itself (e.g. the
/// environment), so the binary's arguments stay the only input the CLI parses.
///
/// ```no_run
/// fn slow(cfg: &mut quern_worker::WorkerConfig) {
///     cfg.slowdown = Some(std::time::Duration::from_millis(100));
/// }
/// fn main() -> std::process::ExitCode {
///     let hooks = quern_cli::Hooks { worker: Some(slow), ..Default::default() };
///     quern_cli::main_with_hooks(quern_examples::builtin(), hooks)
/// }
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Hooks {
    /// Called with the config of `quern coordinator`.
    pub coordinator: Option<fn(&mut quern_coordinator::CoordinatorConfig)>,
    /// Called with the config of `quern worker`.
    pub worker: Option<fn(&mut quern_worker::WorkerConfig)>,
}

/// [`main_with`], with `hooks` adjusting the servers' configs before they start.
pub fn main_with_hooks(registry: Registry, hooks: Hooks) -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                let _ = e.print();
                return ExitCode::from(2);
            }
            // One line, not clap's usage block: the first line already says what is wrong.
            let text = e.render().to_string();
            let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
            let line = lines.next().unwrap_or("error: bad arguments");
            // "required arguments were not provided:" names them on the next line.
            match lines.next().filter(|_| line.ends_with(':')) {
                Some(next) => eprintln!("{line} {next}"),
                None => eprintln!("{line}"),
            }
            return ExitCode::from(2);
        }
    };
    init_tracing(&cli.command);
    if !matches!(cli.command, Command::Coordinator(_) | Command::Worker(_) | Command::Run(_)) {
        one_line_panics();
    }
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(dispatch(cli.command, registry, hooks)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let msg = format!("{e:#}").replace('\n', " ");
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(cmd: Command, registry: Registry, hooks: Hooks) -> anyhow::Result<()> {
    match cmd {
        Command::Coordinator(a) => servers::coordinator(*a, registry, hooks).await,
        Command::Worker(a) => servers::worker(a, registry, hooks).await,
        Command::Run(a) => servers::run(a, registry).await,
        Command::Submit(a) => client_cmds::submit(a, &registry).await,
        Command::Status(a) => client_cmds::status(a).await,
        Command::List(a) => client_cmds::list(a).await,
        Command::Kill(a) => client_cmds::kill(a).await,
        Command::Workers(a) => client_cmds::workers(a).await,
        Command::Tasks(a) => client_cmds::tasks(a).await,
        Command::Logs(a) => logs::logs(a).await,
        Command::Gc(a) => gc::gc(a).await,
        Command::Jobs => {
            for (name, about) in registry.describe() {
                println!("{name:<12} {about}");
            }
            Ok(())
        }
    }
}

/// A client command that panics anyway (a bug) says so in one line, without the backtrace
/// note, as every other error does. Servers keep the standard report in their logs: there a
/// panic in user code is caught, fails only its task attempt, and the thread name helps.
fn one_line_panics() {
    std::panic::set_hook(Box::new(|info| {
        let msg = quern_api::panic_message(info.payload()).unwrap_or_default();
        let at = info.location().map(|l| format!(" (at {}:{})", l.file(), l.line())).unwrap_or_default();
        let msg = msg.replace('\n', " ");
        eprintln!("error: internal error, please report it: {msg}{at}");
    }));
}

/// Logs go to stderr; servers log at info, the embedded runner at warn, and client commands
/// not at all: their errors are the one line `main_with` prints (RUST_LOG overrides).
fn init_tracing(cmd: &Command) {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;

    let default = match cmd {
        Command::Coordinator(_) | Command::Worker(_) => "info",
        Command::Run(_) => "warn",
        _ => "off",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colour only for a person at a terminal: a log file or a pipe gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(|| progress::LogWriter)
        .with_ansi(ansi)
        .with_target(false)
        .with_filter(filter);
    // Attempts keep their own lines (info and up) whatever stderr shows: `quern logs`.
    let attempts = quern_worker::logs::AttemptLogs.with_filter(tracing_subscriber::filter::LevelFilter::INFO);
    let _ = tracing_subscriber::registry().with(stderr).with(attempts).try_init();
}
