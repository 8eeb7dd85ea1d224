//! Command-line arguments (clap). Parsing only: every command turns these into a validated
//! config before anything runs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Quern: MapReduce batch jobs in Rust.
#[derive(Debug, Parser)]
#[command(name = "quern", version, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands (see CONTRACT.md).
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a coordinator.
    Coordinator(Box<CoordinatorArgs>),
    /// Run a worker.
    Worker(WorkerArgs),
    /// Submit a job.
    Submit(SubmitArgs),
    /// Show one job.
    Status(JobArgs),
    /// List jobs.
    List(ListArgs),
    /// Kill a job.
    Kill(KillArgs),
    /// List workers.
    Workers(ListArgs),
    /// List a job's tasks.
    Tasks(JobArgs),
    /// Show the error and last log lines of each attempt of one task (`map-3`, `reduce-0`).
    Logs(LogsArgs),
    /// Run a job on an embedded cluster (coordinator and workers in this process).
    Run(RunArgs),
    /// List the jobs this binary can run.
    Jobs,
    /// List what ended, crashed or unknown jobs left in a store (a dry run); --delete
    /// deletes it. Running jobs' data is never touched.
    Gc(GcArgs),
}

/// Connection options shared by every command that talks to a coordinator.
#[derive(Debug, Args, Clone)]
pub struct Conn {
    /// Coordinator address, http://HOST:PORT (https:// for TLS); several (comma-separated)
    /// for a primary and standbys: the one holding the lease answers.
    #[arg(long, env = "QUERN_COORDINATOR")]
    pub coordinator: String,
    /// File holding the shared token the coordinator requires.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// TLS and message limit.
    #[command(flatten)]
    pub net: ClientNetArgs,
}

/// How a client or worker talks to the coordinator: TLS (`https://` addresses only) and the
/// message limit.
#[derive(Debug, Args, Clone)]
pub struct ClientNetArgs {
    /// PEM file of the CA(s) to trust for an https:// coordinator (default: the platform's
    /// trusted roots).
    #[arg(long)]
    pub tls_ca: Option<PathBuf>,
    /// PEM certificate to present to a coordinator that requires client certificates.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Largest gRPC message accepted from the coordinator.
    #[arg(long, default_value = "8MiB", value_parser = parse_message_size)]
    pub max_message: usize,
}

impl Default for ClientNetArgs {
    /// No TLS options and the default message limit, as for the embedded `quern run`.
    fn default() -> Self {
        ClientNetArgs {
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            max_message: quern_api::client::DEFAULT_MAX_MESSAGE,
        }
    }
}

/// The coordinator's network settings: TLS, limits and timeouts.
#[derive(Debug, Args)]
pub struct ServerNetArgs {
    /// PEM certificate chain to serve TLS with (gRPC and --http); clients then use https://.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// PEM file of the CA(s) that must have signed every client's certificate (mutual TLS).
    #[arg(long, requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// Serve the status pages without the token (they require it when --token-file is set).
    #[arg(long)]
    pub http_public: bool,
    /// Largest gRPC message received or sent.
    #[arg(long, default_value = "8MiB", value_parser = parse_message_size)]
    pub max_message: usize,
    /// Connections open at once (gRPC and status pages together); more are closed at once.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,
    /// Calls open at once on one connection (HTTP/2 streams).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_streams: u32,
    /// Close a connection that has not sent a byte and finished its TLS handshake by then.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub handshake_timeout: Duration,
    /// Connections in their handshake at once; a new one beyond it closes the oldest, so
    /// idle sockets cannot hold every connection slot.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_handshakes: u32,
    /// Close a connection whose peer sent nothing this long (keepalive pings count).
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    pub idle_timeout: Duration,
    /// How often the server pings each connection; one that does not answer within as long
    /// again is closed.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    pub keepalive: Duration,
}

/// `quern coordinator`.
#[derive(Debug, Args)]
pub struct CoordinatorArgs {
    /// Address to listen on; port 0 picks a free one.
    #[arg(long)]
    pub listen: SocketAddr,
    /// Store URL for intermediate data (file:///abs/path, s3://bucket/prefix).
    #[arg(long)]
    pub store: String,
    /// Write http://HOST:PORT here once listening.
    #[arg(long)]
    pub addr_file: Option<PathBuf>,
    /// Serve status pages over HTTP here (`/` for people, `/api/jobs` and `/api/workers` as
    /// JSON).
    #[arg(long)]
    pub http: Option<SocketAddr>,
    /// Declare a worker lost after this long without a heartbeat.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub heartbeat_timeout: Duration,
    /// How often workers heartbeat.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub heartbeat_interval: Duration,
    /// Attempts (failures) after which a task, and its job, fails.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub max_attempts: u32,
    /// Require this shared token from every caller.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// How long the store lease lasts without renewal; a standby takes over 1.5 times this
    /// after the leader's last renewal, and a restarted coordinator waits as long.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub lease: Duration,
    /// Which job a free slot serves: fair (weighted by priority), fifo, priority or sjf
    /// (smallest input first).
    #[arg(long, default_value = "fair")]
    pub policy: quern_coordinator::policy::PolicyKind,
    /// Fair-share preemption (with --policy fair): a job kept below its fair share, with
    /// tasks waiting, for longer than --preemption-wait gets slots back by stopping the
    /// youngest attempts of jobs above theirs (not counted as failures; PREEMPTED_ATTEMPTS).
    #[arg(long, default_value = "off", value_parser = ["on", "off"])]
    pub preemption: String,
    /// How long a job must stay below its fair share before preemption acts for it.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    pub preemption_wait: Duration,
    /// Delay scheduling: how long a job waits for a node-local slot before taking a
    /// rack-local one, and as long again before taking any (0s turns locality waits off).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub locality_wait: Duration,
    /// Start backup attempts for stragglers near the end of a phase.
    #[arg(long, default_value = "on", value_parser = ["on", "off"])]
    pub speculation: String,
    /// A task is a straggler when it runs this many times longer than the phase's median.
    #[arg(long, default_value_t = 2.0)]
    pub speculation_factor: f64,
    /// Tasks running less than this never get a backup.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub speculation_min: Duration,
    /// Refuse jobs whose inputs, output or side data lie outside this directory URL or path
    /// (repeatable; default: anywhere). `..` is resolved before the check.
    #[arg(long = "allow-url", value_name = "PREFIX")]
    pub allow_url: Vec<String>,
    /// Refuse new jobs while this many have not ended.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_jobs: u64,
    /// Ended jobs kept in the history (`quern list`, the web pages), oldest forgotten first.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub history_jobs: u64,
    /// How long an ended job stays in the history.
    #[arg(long, default_value = "7days", value_parser = humantime::parse_duration)]
    pub history_age: Duration,
    /// Fail a job that no registered worker can run after waiting this long for one.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub job_wait: Duration,
    /// Fail (and run again) an attempt whose progress stands still this long, like Hadoop's
    /// mapreduce.task.timeout.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub task_timeout: Duration,
    /// On stores without atomic rename (S3), parts are written as multipart uploads that
    /// only the coordinator completes: bytes per uploaded part (5MiB to 5GiB).
    #[arg(long, default_value = "16MiB", value_parser = parse_upload_part_size)]
    pub upload_part_size: u64,
    /// Whether the store's create-only writes are atomic under racing writers (local files,
    /// AWS S3, GCS and Azure: yes; some S3-compatible servers: no). The lease and journal
    /// rely on them when a standby waits; with `false` a coordinator that finds another one
    /// alive on the store exits instead of waiting as a standby.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub store_conditional_writes: bool,
    /// Write a journal snapshot (the records that rebuild the state, replacing the entries
    /// before it) once this many records were journalled since the last one; 0: never.
    #[arg(long, default_value_t = 1000)]
    pub journal_snapshot_every: u64,
    /// TLS, limits and timeouts.
    #[command(flatten)]
    pub net: ServerNetArgs,
}

/// `quern worker`.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Coordinator address, http://HOST:PORT (https:// for TLS); several (comma-separated)
    /// to follow whichever holds the lease.
    #[arg(long, env = "QUERN_COORDINATOR")]
    pub coordinator: String,
    /// TLS and message limit.
    #[command(flatten)]
    pub net: ClientNetArgs,
    /// Tasks to run at once (each uses every core).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub slots: u32,
    /// Host name for locality (default: this machine's).
    #[arg(long)]
    pub host: Option<String>,
    /// Rack name for locality.
    #[arg(long, default_value = "default-rack")]
    pub rack: String,
    /// A directory on this machine's own disk holding input (repeatable): splits of files
    /// under it are scheduled here first.
    #[arg(long)]
    pub local_data: Vec<PathBuf>,
    /// Keep input splits read and map outputs written in this local directory, and report
    /// them so the coordinator schedules tasks of that data here.
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Most bytes the cache holds (least recently used evicted first).
    #[arg(long, default_value = "1GiB", value_parser = parse_size)]
    pub cache_size: u64,
    /// Compress map output segments: lz4 (cheap), zstd (smaller) or none. Readers detect
    /// it, so workers may differ.
    #[arg(long, default_value = "lz4", value_name = "CODEC")]
    pub shuffle_compression: quern_worker::shuffle::Codec,
    /// Memory one running task may use for its buffers (map output before it spills to
    /// local disk, fetched shuffle data, merge runs, output); a worker with --slots S uses up
    /// to S times this. At least 64KiB.
    #[arg(long, default_value = "512MiB", value_parser = parse_task_memory)]
    pub task_memory: u64,
    /// Where tasks keep local files (map spills, shuffle data beyond memory, output being
    /// written), each in a directory of its own removed when the task ends (default: the
    /// system's temporary directory, $TMPDIR).
    #[arg(long)]
    pub spill_dir: Option<PathBuf>,
    /// Give up after the coordinator has been unreachable this long.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub reconnect_budget: Duration,
    /// File holding the coordinator's shared token.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Serve this worker's Prometheus metrics (`/metrics`) and a liveness page (`/healthz`)
    /// over HTTP here; port 0 picks a free one.
    #[arg(long)]
    pub http: Option<SocketAddr>,
    /// Write http://HOST:PORT of --http here once listening.
    #[arg(long, requires = "http")]
    pub http_addr_file: Option<PathBuf>,
    /// Serve /metrics without the token (it requires it when --token-file is set).
    #[arg(long, requires = "http")]
    pub http_public: bool,
}

/// `quern submit`.
#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// Where to submit.
    #[command(flatten)]
    pub conn: Conn,
    /// The job to run.
    #[command(flatten)]
    pub job: JobDef,
    /// Split size in bytes (suffixes K, M, G, KiB, MiB, GiB accepted).
    #[arg(long, default_value = "64MiB", value_parser = parse_size)]
    pub split_size: u64,
    /// Higher runs first.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub priority: i32,
    /// After a failed attempt, skip records on which the job's code panics (counted in
    /// SKIPPED_RECORDS) instead of failing the task again.
    #[arg(long)]
    pub skip_bad_records: bool,
    /// Wait for the job to end; exit non-zero unless it succeeded.
    #[arg(long)]
    pub wait: bool,
    /// Print JSON (with --wait: the final status).
    #[arg(long)]
    pub json: bool,
}

/// What job to run, shared by `submit` and `run`.
#[derive(Debug, Args, Clone)]
pub struct JobDef {
    /// Registered job name (see `quern jobs`).
    #[arg(long)]
    pub job: String,
    /// Input URLs or paths, comma-separated; one ending in / means everything under it.
    #[arg(long, value_delimiter = ',')]
    pub input: Vec<String>,
    /// Output directory URL or path; must not exist or be empty.
    #[arg(long)]
    pub output: String,
    /// Number of reduce tasks (output parts); 0 runs the job map-only (each map task writes
    /// a part). Default: 4, or what the job requires.
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=100_000))]
    pub reducers: Option<u32>,
    /// How inputs are read: auto (by name), text, whole, fixed:N, arrow, parquet.
    /// Default: the job's own (auto for most).
    #[arg(long)]
    pub input_format: Option<quern_api::InputFormat>,
    /// How parts are written: text, fixed:N, arrow, parquet. Default: the job's own (text
    /// for most).
    #[arg(long)]
    pub output_format: Option<quern_api::OutputFormat>,
    /// Map tasks of a generator job (teragen); default about one per million records.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub maps: Option<u32>,
    /// Job parameter KEY=VALUE (repeatable).
    #[arg(long = "param")]
    pub params: Vec<String>,
    /// Side data NAME=URL_OR_PATH (repeatable): a small file every task of the job gets
    /// (e.g. a stop-word list), fetched once per worker.
    #[arg(long = "side")]
    pub side: Vec<String>,
}

/// Commands about one job.
#[derive(Debug, Args)]
pub struct JobArgs {
    /// Where to ask.
    #[command(flatten)]
    pub conn: Conn,
    /// The job id.
    pub job_id: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `quern logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Where to ask.
    #[command(flatten)]
    pub conn: Conn,
    /// The job id.
    pub job_id: String,
    /// The task: `map-N` or `reduce-N` (also `m-N`, `r-N`).
    pub task: String,
    /// For pipelines: the stage (from 1); default the last one that has this task.
    #[arg(long, default_value_t = 0)]
    pub stage: u32,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `quern kill`.
#[derive(Debug, Args)]
pub struct KillArgs {
    /// Where to ask.
    #[command(flatten)]
    pub conn: Conn,
    /// The job id.
    pub job_id: String,
}

/// Listing commands.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Where to ask.
    #[command(flatten)]
    pub conn: Conn,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `quern run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The job to run.
    #[command(flatten)]
    pub job: JobDef,
    /// Workers to start in this process.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub workers: u32,
    /// Split size in bytes (suffixes K, M, G, KiB, MiB, GiB accepted).
    #[arg(long, default_value = "64MiB", value_parser = parse_size)]
    pub split_size: u64,
    /// Store for intermediate data (default: a temporary directory, removed afterwards).
    #[arg(long)]
    pub store: Option<String>,
    /// Compress map output segments: lz4 (cheap), zstd (smaller) or none. Readers detect
    /// it, so workers may differ.
    #[arg(long, default_value = "lz4", value_name = "CODEC")]
    pub shuffle_compression: quern_worker::shuffle::Codec,
    /// Memory each embedded worker's running task may use for its buffers (see `quern worker
    /// --task-memory`).
    #[arg(long, default_value = "512MiB", value_parser = parse_task_memory)]
    pub task_memory: u64,
    /// Print the final status as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `quern gc`.
#[derive(Debug, Args)]
pub struct GcArgs {
    /// The coordinators' store (their --store), e.g. file:///tmp/quern-store or s3://bucket/store.
    #[arg(long)]
    pub store: String,
    /// Delete what the dry run lists (aborting noted uploads first).
    #[arg(long)]
    pub delete: bool,
    /// Delete the directory of a job the journal does not know only once its newest object
    /// is this old (a live coordinator's newest job may not be in the journal yet).
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub min_age: Duration,
}

/// A gRPC message limit: a size of at most 4 GiB (tonic counts in `usize`, the wire in u32).
pub fn parse_message_size(s: &str) -> Result<usize, String> {
    let n = parse_size(s)?;
    if n > u64::from(u32::MAX) {
        return Err(format!("{s:?} is too large for a message (at most 4GiB)"));
    }
    usize::try_from(n).map_err(|_| format!("{s:?} is too large on this platform"))
}

/// An upload part size within S3's limits.
pub fn parse_upload_part_size(s: &str) -> Result<u64, String> {
    let n = parse_size(s)?;
    if !(5 << 20..=5 << 30).contains(&n) {
        return Err(format!("{s:?} is outside S3's part sizes (5MiB to 5GiB)"));
    }
    Ok(n)
}

/// A task memory budget: a size of at least 64KiB (below, buffers could not hold a batch).
pub fn parse_task_memory(s: &str) -> Result<u64, String> {
    let n = parse_size(s)?;
    if n < quern_worker::spill::TaskMemory::MIN {
        return Err(format!("{s:?} is below the least task memory, 64KiB"));
    }
    Ok(n)
}

/// Parses `123`, `64K`, `64KiB`, `1.5G`... into bytes (K = 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("{s:?} is not a size (e.g. 1048576, 64MiB, 1G)"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        other => return Err(format!("unknown size unit {other:?} (use K, M, G or T)")),
    };
    let bytes = n * mult as f64;
    if !(1.0..=(1u64 << 50) as f64).contains(&bytes) {
        return Err(format!("{s:?} is out of range (1 byte to 1 PiB)"));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert_eq!(parse_size("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_size("1.5k").unwrap(), 1536);
        assert!(parse_size("0").is_err());
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("-5").is_err());
        assert_eq!(parse_task_memory("256MiB").unwrap(), 256 << 20);
        assert_eq!(parse_task_memory("64KiB").unwrap(), 64 << 10);
        assert!(parse_task_memory("63KiB").unwrap_err().contains("64KiB"));
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
