//! Commands that talk to a running coordinator: submit, status, list, kill, workers, tasks.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use quern_api::client::{ConnectOptions, JobClient, job_client, read_token_file};
use quern_api::tls::ClientTls;
use quern_api::{Registry, pb};
use tokio_stream::StreamExt;

use crate::args::{ClientNetArgs, Conn, JobArgs, KillArgs, ListArgs, SubmitArgs};
use crate::prepare::{add_total_order, prepare};
use crate::render;

/// Turns a gRPC error into one line a user can act on.
pub fn rpc_error(s: tonic::Status) -> anyhow::Error {
    // A broken connection (a TLS alert after the handshake, a reset) says only "transport
    // error"; its cause is what a user can act on.
    if std::error::Error::source(&s).is_some() {
        return anyhow!("coordinator connection failed: {}", quern_api::client::explain_transport("", &s));
    }
    match s.code() {
        tonic::Code::Unavailable => anyhow!("coordinator unavailable: {}", s.message()),
        tonic::Code::OutOfRange | tonic::Code::ResourceExhausted
            if s.message().contains("message length too large") =>
        {
            anyhow!("{} (see --max-message, here and on the coordinator)", s.message())
        }
        _ => anyhow!("{}", s.message()),
    }
}

/// What a client or worker needs to reach the coordinator, from its flags.
pub fn connect_options(token_file: Option<&std::path::Path>, net: &ClientNetArgs) -> Result<ConnectOptions> {
    Ok(ConnectOptions {
        token: token_file.map(read_token_file).transpose()?,
        tls: ClientTls::from_files(net.tls_ca.as_deref(), net.tls_cert.as_deref(), net.tls_key.as_deref())?,
        max_message: net.max_message,
    })
}

/// Connects to the coordinator named by `conn`; of several addresses, to the one that holds
/// the lease (the others, standbys, refuse every call).
pub async fn connect(conn: &Conn) -> Result<JobClient> {
    let opts = connect_options(conn.token_file.as_deref(), &conn.net)?;
    let addrs: Vec<&str> = conn.coordinator.split(',').map(str::trim).filter(|a| !a.is_empty()).collect();
    if addrs.len() <= 1 {
        return Ok(job_client(addrs.first().copied().unwrap_or(""), &opts).await?);
    }
    let mut last = None;
    for addr in &addrs {
        match job_client(addr, &opts).await {
            Ok(mut c) => match c.ping(pb::PingRequest {}).await {
                Ok(_) => return Ok(c),
                Err(e) => last = Some(anyhow!("{addr}: {}", e.message())),
            },
            Err(e) => last = Some(e.into()),
        }
    }
    Err(last.unwrap_or_else(|| anyhow!("no coordinator address")).context("no coordinator holding the lease"))
}

/// Submits a spec; returns the job id.
pub async fn submit_spec(client: &mut JobClient, spec: pb::JobSpec) -> Result<String> {
    let resp = client.submit(pb::SubmitRequest { spec: Some(spec) }).await.map_err(rpc_error)?;
    Ok(resp.into_inner().job_id)
}

/// `quern submit`.
pub async fn submit(a: SubmitArgs, registry: &Registry) -> Result<()> {
    let (mut spec, params) = prepare(&a.job, registry, a.split_size, a.priority).await?;
    spec.skip_bad_records = a.skip_bad_records;
    add_total_order(&mut spec, &params, registry).await?;
    let mut client = connect(&a.conn).await?;
    let id = submit_spec(&mut client, spec).await?;
    if !a.wait {
        if a.json {
            println!("{}", serde_json::json!({ "id": id }));
        } else {
            println!("{id}");
        }
        return Ok(());
    }
    if !a.json {
        println!("{id}");
    }
    let status = wait(&a.conn, &mut client, &id).await?;
    if a.json {
        println!("{}", render::status_json(&status));
    }
    finish(&status)
}

/// Exits non-zero (via an error) unless the job succeeded.
pub fn finish(status: &pb::JobStatus) -> Result<()> {
    match render::state_name(status.state) {
        "succeeded" => Ok(()),
        "killed" => bail!("job {} was killed", status.id),
        _ => bail!("job {} failed: {}", status.id, status.error.clone().unwrap_or_else(|| "unknown error".into())),
    }
}

/// Longest a watch stream may stay silent before the client looks for the leader again.
const WATCH_SILENCE: Duration = Duration::from_secs(30);

/// Follows a job until it ends, showing progress on stderr. Survives a coordinator that goes
/// away for a while (it reconnects for up to a minute).
pub async fn wait(conn: &Conn, client: &mut JobClient, id: &str) -> Result<pb::JobStatus> {
    let mut progress = Progress::new();
    let mut down_since: Option<Instant> = None;
    loop {
        let stream = client.watch(pb::JobRequest { job_id: id.to_string() }).await;
        match stream {
            Ok(s) => {
                down_since = None;
                let mut s = s.into_inner();
                // The coordinator repeats the status every few seconds; a much longer
                // silence means it is gone or stuck, so look for the leader again.
                while let Ok(Some(item)) = tokio::time::timeout(WATCH_SILENCE, s.next()).await {
                    match item {
                        Ok(status) => {
                            progress.show(&status);
                            if render::is_final(&status) {
                                progress.done();
                                return Ok(status);
                            }
                        }
                        Err(_) => break,
                    }
                }
            }
            Err(e) if e.code() == tonic::Code::NotFound || e.code() == tonic::Code::Unauthenticated => {
                progress.done();
                return Err(rpc_error(e));
            }
            Err(_) => {}
        }
        let since = *down_since.get_or_insert_with(Instant::now);
        if since.elapsed() > Duration::from_secs(60) {
            progress.done();
            bail!("lost the coordinator at {} while waiting for job {id}", conn.coordinator);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        if let Ok(c) = connect(conn).await {
            *client = c;
        }
    }
}

/// Progress on stderr: a bar on a terminal, plain lines otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    last: String,
}

impl Progress {
    fn new() -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = indicatif::ProgressBar::new(0);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] [{bar:30}] {pos}/{len} tasks  {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            b.enable_steady_tick(Duration::from_millis(120));
            b
        });
        Progress { bar, last: String::new() }
    }

    fn show(&mut self, s: &pb::JobStatus) {
        let (m, r) = (s.maps.unwrap_or_default(), s.reduces.unwrap_or_default());
        match &self.bar {
            Some(b) => {
                b.set_length(u64::from(m.total + r.total));
                b.set_position(u64::from(m.done + r.done));
                b.set_message(format!(
                    "{} maps {}/{} reduces {}/{}",
                    render::state_name(s.state),
                    m.done,
                    m.total,
                    r.done,
                    r.total
                ));
            }
            None => {
                let line = render::status_line(s);
                if line != self.last {
                    eprintln!("{line}");
                    self.last = line;
                }
            }
        }
    }

    fn done(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}

/// `quern status`.
pub async fn status(a: JobArgs) -> Result<()> {
    let mut client = connect(&a.conn).await?;
    let s = client.status(pb::JobRequest { job_id: a.job_id }).await.map_err(rpc_error)?.into_inner();
    if a.json {
        println!("{}", render::status_json(&s));
    } else {
        print!("{}", render::status_text(&s));
    }
    Ok(())
}

/// `quern list`.
pub async fn list(a: ListArgs) -> Result<()> {
    let mut client = connect(&a.conn).await?;
    let jobs = client.list(pb::ListJobsRequest {}).await.map_err(rpc_error)?.into_inner().jobs;
    if a.json {
        let v: Vec<_> = jobs.iter().map(render::status_json).collect();
        println!("{}", serde_json::Value::Array(v));
    } else {
        for j in &jobs {
            println!("{}", render::status_line(j));
        }
    }
    Ok(())
}

/// `quern kill`.
pub async fn kill(a: KillArgs) -> Result<()> {
    let mut client = connect(&a.conn).await?;
    let r = client.kill(pb::JobRequest { job_id: a.job_id.clone() }).await.map_err(rpc_error)?.into_inner();
    match render::state_name(r.state) {
        "killed" => {
            eprintln!("job {} killed", a.job_id);
            Ok(())
        }
        other => bail!("job {} had already ended ({other})", a.job_id),
    }
}

/// `quern workers`.
pub async fn workers(a: ListArgs) -> Result<()> {
    let mut client = connect(&a.conn).await?;
    let ws = client.workers(pb::ListWorkersRequest {}).await.map_err(rpc_error)?.into_inner().workers;
    if a.json {
        println!("{}", serde_json::Value::Array(ws.iter().map(render::worker_json).collect()));
    } else {
        for w in &ws {
            println!(
                "{}  host={} rack={} slots={} running={} completed={}",
                w.id, w.host, w.rack, w.slots, w.running, w.completed
            );
        }
    }
    Ok(())
}

/// `quern tasks`.
pub async fn tasks(a: JobArgs) -> Result<()> {
    let mut client = connect(&a.conn).await?;
    let ts = client.tasks(pb::JobRequest { job_id: a.job_id }).await.map_err(rpc_error)?.into_inner().tasks;
    if a.json {
        println!("{}", serde_json::Value::Array(ts.iter().map(render::task_json).collect()));
    } else {
        for t in &ts {
            let v = render::task_json(t);
            println!(
                "{:<6} {:>5}  {:<9} attempts={} {}",
                v["kind"].as_str().unwrap_or(""),
                t.index,
                t.state,
                t.attempts,
                t.error.as_deref().unwrap_or("")
            );
        }
    }
    Ok(())
}
