//! Submitting from a Rust program instead of the CLI: word count on a running cluster, with
//! progress while it runs. Start a cluster first (README, "A cluster by hand"), then
//!
//! ```text
//! cargo run -p quern-custom-job --bin submit-and-wait -- http://127.0.0.1:7070 examples/data/ /tmp/wc-from-a-program
//! ```

use quern_api::submit::{Client, JobState};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}"); // one line, as the CLI prints it
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [coordinator, input, output] = &args[..] else {
        return Err("usage: submit-and-wait COORDINATOR_URL INPUT OUTPUT".into());
    };
    let client = Client::connect(coordinator, Default::default()).await?.with_registry(quern_examples::builtin()); // the jobs this program may submit
    let job =
        client.job("wordcount").input(input).output(output).param("combiner", "true").reducers(2).submit().await?; // a bad definition fails here, with nothing sent
    let done = job.wait(|s| eprintln!("{} maps {}/{}", s.state(), s.maps().done, s.maps().total)).await?;
    if done.state() != JobState::Succeeded {
        return Err(format!("job {} {}: {}", job.id(), done.state(), done.error().unwrap_or("")).into());
    }
    println!("{} words read", done.counters().get("WORDS").copied().unwrap_or(0));
    Ok(())
}
