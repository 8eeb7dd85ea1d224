//! The stock `quern` binary: the CLI with the built-in jobs.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    quern_cli::main_with(quern_examples::builtin())
}
