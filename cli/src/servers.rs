//! Long-running commands: `quern coordinator`, `quern worker`, and `quern run` on an embedded
//! [`LocalCluster`].

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use quern_api::client::read_token_file;
use quern_api::tls::{Identity, PemCerts};
use quern_api::{Registry, StoreUrl};
use quern_coordinator::CoordinatorConfig;
use quern_coordinator::net::{NetConfig, ServerTls};
use quern_coordinator::perform::DRAIN_LIMIT;
use quern_worker::WorkerConfig;
use tokio_util::sync::CancellationToken;

use crate::Hooks;
use crate::args::{CoordinatorArgs, RunArgs, ServerNetArgs, WorkerArgs};
use crate::client_cmds::{cli_error, connect_options, finish, job_builder, wait};
use crate::local::LocalCluster;

/// Cancels `token` on Ctrl-C or SIGTERM.
pub fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => {
                    let _ = ctrl_c.await;
                    token.cancel();
                    return;
                }
            };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        token.cancel();
    });
}

/// `quern coordinator`; `hooks` may adjust the config last.
pub async fn coordinator(a: CoordinatorArgs, registry: Registry, hooks: Hooks) -> Result<()> {
    let store = StoreUrl::from_user(&a.store).context("bad --store")?;
    let token = a.token_file.as_deref().map(read_token_file).transpose()?;
    let mut cfg = CoordinatorConfig::new(a.listen, store);
    cfg.addr_file = a.addr_file;
    cfg.heartbeat_timeout = a.heartbeat_timeout;
    cfg.heartbeat_interval = a.heartbeat_interval;
    cfg.max_attempts = a.max_attempts;
    cfg.token = token;
    if !(a.speculation_factor.is_finite() && a.speculation_factor >= 1.0) {
        anyhow::bail!("--speculation-factor must be a number >= 1");
    }
    cfg.speculation = (a.speculation == "on").then_some(quern_coordinator::job::Speculation {
        factor: a.speculation_factor,
        min_runtime: a.speculation_min,
    });
    cfg.allow = a
        .allow_url
        .iter()
        .map(|p| StoreUrl::from_user(p).map(|u| u.as_dir()).with_context(|| format!("bad --allow-url {p:?}")))
        .collect::<Result<_>>()?;
    cfg.jobs = Some(registry);
    cfg.max_jobs = usize::try_from(a.max_jobs).unwrap_or(usize::MAX);
    cfg.job_wait = a.job_wait;
    cfg.history = quern_coordinator::core::History {
        max_jobs: usize::try_from(a.history_jobs).unwrap_or(usize::MAX),
        max_age: a.history_age,
    };
    if a.task_timeout < Duration::from_secs(1) {
        anyhow::bail!("--task-timeout must be at least 1s");
    }
    cfg.task_timeout = a.task_timeout;
    cfg.upload_part_size = a.upload_part_size;
    cfg.conditional_writes = a.store_conditional_writes;
    cfg.journal_snapshot_every = a.journal_snapshot_every;
    if a.lease < Duration::from_millis(100) {
        anyhow::bail!("--lease must be at least 100ms");
    }
    cfg.lease = a.lease;
    cfg.policy = a.policy;
    if a.preemption == "on" && !a.policy.is_fair() {
        anyhow::bail!("--preemption on works with --policy fair only");
    }
    cfg.preemption = (a.preemption == "on").then_some(a.preemption_wait);
    cfg.http = a.http;
    cfg.delay = quern_coordinator::placement::Delay { node_wait: a.locality_wait, rack_wait: a.locality_wait };
    cfg.net = net_config(&a.net)?;
    if cfg.heartbeat_interval >= cfg.heartbeat_timeout {
        anyhow::bail!("--heartbeat-interval must be shorter than --heartbeat-timeout");
    }
    if let Some(hook) = hooks.coordinator {
        hook(&mut cfg);
    }
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone());
    let running = quern_coordinator::start(cfg, shutdown.clone()).await?;
    if let Some(http) = &running.http_url {
        eprintln!("status pages on {http}");
    }
    eprintln!("coordinator listening on {}", running.url);
    let (mut task, mut lead) = (running.task, running.lead);
    // Whichever ends first decides: leadership lost (journal or lease unwritable, another
    // coordinator took over) is an error exit even if the server stopped cleanly, and a
    // server that fails stops leadership. The other gets a bounded time to wind down, so
    // the process always exits.
    let led = tokio::select! {
        served = &mut task => {
            shutdown.cancel();
            served.context("coordinator task")?.context("serving")?;
            // Leadership ends once the I/O in flight is done (bounded by DRAIN_LIMIT).
            tokio::time::timeout(DRAIN_LIMIT + WIND_DOWN, lead).await.context("leadership did not end")?
        }
        led = &mut lead => {
            let _ = tokio::time::timeout(WIND_DOWN, task).await;
            led
        }
    };
    led.context("leadership task")??;
    Ok(())
}

/// How long a stopping coordinator waits for its server or its lease to wind down.
const WIND_DOWN: Duration = Duration::from_secs(10);

/// The coordinator's `--tls-*`, limit and timeout flags.
fn net_config(a: &ServerNetArgs) -> Result<NetConfig> {
    let tls = match (&a.tls_cert, &a.tls_key) {
        (Some(cert), Some(key)) => Some(ServerTls {
            identity: Identity::read(cert, key)?,
            client_ca: a.tls_client_ca.as_deref().map(|p| PemCerts::read("--tls-client-ca", p)).transpose()?,
        }),
        _ => None,
    };
    for (name, d) in
        [("--handshake-timeout", a.handshake_timeout), ("--idle-timeout", a.idle_timeout), ("--keepalive", a.keepalive)]
    {
        if d < Duration::from_millis(10) {
            anyhow::bail!("{name} must be at least 10ms");
        }
    }
    if a.idle_timeout <= a.keepalive {
        // Live clients stay open because they answer the server's pings.
        anyhow::bail!("--idle-timeout must be longer than --keepalive");
    }
    Ok(NetConfig {
        tls,
        max_message: a.max_message,
        max_connections: a.max_connections as usize,
        max_streams: a.max_streams,
        handshake_timeout: a.handshake_timeout,
        max_handshakes: a.max_handshakes as usize,
        idle_timeout: a.idle_timeout,
        keepalive: a.keepalive,
        http_public: a.http_public,
    })
}

fn default_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

/// `--local-data` directories as `file://` URL prefixes ending in `/`; each must exist.
fn local_data_urls(paths: &[std::path::PathBuf]) -> Result<Vec<String>> {
    paths
        .iter()
        .map(|p| {
            let abs = std::fs::canonicalize(p).with_context(|| format!("--local-data {}", p.display()))?;
            if !abs.is_dir() {
                anyhow::bail!("--local-data {}: not a directory", p.display());
            }
            Ok(StoreUrl::from_user(&format!("{}/", abs.display()))?.as_dir().to_string())
        })
        .collect()
}

/// `quern worker`; `hooks` may adjust the config last.
pub async fn worker(a: WorkerArgs, registry: Registry, hooks: Hooks) -> Result<()> {
    let connect = connect_options(a.token_file.as_deref(), &a.net)?;
    for addr in a.coordinator.split(',') {
        quern_api::client::endpoint(addr.trim(), &connect)?;
    }
    let mut cfg = WorkerConfig::new(a.coordinator, a.host.unwrap_or_else(default_host));
    cfg.connect = connect;
    cfg.slots = a.slots;
    cfg.rack = a.rack;
    cfg.reconnect_budget = a.reconnect_budget;
    cfg.local_data = local_data_urls(&a.local_data)?;
    cfg.cache = a.cache_dir.map(|d| (d, a.cache_size));
    cfg.shuffle_compression = a.shuffle_compression;
    cfg.task_memory = quern_worker::spill::TaskMemory::new(a.task_memory);
    cfg.spill_dir = a.spill_dir;
    cfg.http = a.http.map(|addr| quern_worker::http::HttpConfig {
        addr,
        addr_file: a.http_addr_file,
        token: cfg.connect.token.clone(),
        public: a.http_public,
    });
    if let Some(hook) = hooks.worker {
        hook(&mut cfg);
    }
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone());
    quern_worker::run(cfg, registry, shutdown).await?;
    Ok(())
}

/// `quern run`: a coordinator and workers in this process, one job, then exit.
pub async fn run(a: RunArgs, registry: Registry) -> Result<()> {
    let codec = a.shuffle_compression;
    let mut cluster = LocalCluster::builder(registry.clone())
        .workers(a.workers as usize)
        .task_memory(a.task_memory)
        .worker(move |w| w.shuffle_compression = codec);
    if let Some(s) = &a.store {
        cluster = cluster.store(StoreUrl::from_user(s).context("bad --store")?);
    }
    let cluster = cluster.start().await?;
    cancel_on_signal(cluster.shutdown_token());
    let started = Instant::now();
    let result = async {
        let client = quern_api::submit::Client::new(cluster.url(), quern_api::client::ConnectOptions::default());
        let job = job_builder(&client.with_registry(registry.clone()), &a.job)?.split_size(a.split_size);
        wait(&job.submit().await.map_err(|e| cli_error(e, Some(&a.job)))?).await
    }
    .await;
    // Leadership ends once the job's cleanup is done: the store keeps nothing of the job.
    if let Err(e) = cluster.shutdown().await {
        tracing::warn!("{e}");
    }
    let status = result?;
    if a.json {
        println!("{}", status.to_json());
    } else {
        // Everything this process asked of its stores: the job's attempts and the
        // coordinator's own requests (listing, commits, journal, lease, cleanup).
        let c = quern_api::counted::StoreStats::global().snapshot();
        eprintln!(
            "store requests (all) {} GET, {} PUT, {} LIST, {} DELETE; {} bytes read, {} written; {} retries",
            c.get, c.put, c.list, c.delete, c.bytes_read, c.bytes_written, c.retries
        );
        eprintln!("wall time {:.3}s", started.elapsed().as_secs_f64());
    }
    finish(&status)
}
