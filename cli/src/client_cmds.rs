//! Commands that talk to a running coordinator: submit, status, list, kill, workers, tasks.
//! Submitting and following jobs is [`quern_api::submit`]; this is the glue from flags to
//! it, and from its errors to one line that names the flags.

use anyhow::{Context, Result, anyhow, bail};
use quern_api::client::{ConnectOptions, JobClient, read_token_file};
use quern_api::submit::{Client, JobBuilder, JobHandle, JobState, JobStatus, PlanError, SubmitError};
use quern_api::tls::ClientTls;
use quern_api::{JobId, Params, Registry, pb};

use crate::args::{ClientNetArgs, Conn, JobArgs, JobDef, KillArgs, ListArgs, SubmitArgs};
use crate::progress::Progress;
use crate::render;

/// Turns a gRPC error into one line a user can act on.
pub fn rpc_error(s: tonic::Status) -> anyhow::Error {
    match s.code() {
        tonic::Code::OutOfRange | tonic::Code::ResourceExhausted
            if std::error::Error::source(&s).is_none() && s.message().contains("message length too large") =>
        {
            anyhow!("{} (see --max-message, here and on the coordinator)", s.message())
        }
        _ => anyhow!("{}", quern_api::submit::explain_status(&s)),
    }
}

/// A library error in the CLI's words: the planning rules and refused calls name the flags
/// that set what was wrong.
pub fn cli_error(e: SubmitError, def: Option<&JobDef>) -> anyhow::Error {
    let job = def.map_or("", |d| d.job.as_str());
    let side_pair = |name: &str| {
        let pair = def.and_then(|d| d.side.iter().find(|p| p.split_once('=').is_some_and(|(n, _)| n == name)));
        pair.cloned().unwrap_or_else(|| format!("{name}="))
    };
    match e {
        SubmitError::Rpc { status } => rpc_error(*status),
        SubmitError::Plan(p) => match p {
            PlanError::Reducers { job: name, required, .. } => {
                let what =
                    if required == 0 { "map-only".to_string() } else { format!("runs with {required} reducer(s)") };
                anyhow!("job {name:?} is {what}; leave out --reducers (or give --reducers {required})")
            }
            PlanError::InputGiven { .. } => anyhow!("job {job:?} generates its data; it takes no --input"),
            PlanError::NothingToGenerate { .. } => {
                anyhow!("job {job:?} has nothing to generate (give it --param rows=N)")
            }
            PlanError::InputRequired { .. } => anyhow!("--input is required for job {job:?}"),
            PlanError::MapsWithoutGenerator { .. } => anyhow!("--maps applies only to generator jobs such as teragen"),
            PlanError::BadUrl { role, source } => anyhow::Error::new(source).context(format!("bad --{role}")),
            PlanError::SideName { name } => {
                anyhow!("bad --side {:?}: the name must be given, and only once", side_pair(&name))
            }
            PlanError::SideUrl { name, source } => {
                anyhow::Error::new(source).context(format!("bad --side {:?}", side_pair(&name)))
            }
            other => anyhow::Error::new(other),
        },
        SubmitError::SideRead { name, source } => anyhow!("side data {name:?}: {source}"),
        other => anyhow::Error::new(other),
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

/// A client of the coordinator(s) named by `conn`; it connects at its first call (of
/// several addresses, to the one that holds the lease).
pub fn client(conn: &Conn) -> Result<Client> {
    Ok(Client::new(&conn.coordinator, connect_options(conn.token_file.as_deref(), &conn.net)?))
}

/// Connects to the coordinator named by `conn`, for the calls the library does not wrap.
pub async fn connect(conn: &Conn) -> Result<JobClient> {
    client(conn)?.rpc().await.map_err(|e| cli_error(e, None))
}

/// The job `def` describes, on `client`: the flags shared by `submit` and `run`.
pub fn job_builder(client: &Client, def: &JobDef) -> Result<JobBuilder> {
    let params = Params::parse_pairs(&def.params).context("bad --param")?;
    let mut job = client.job(&def.job).inputs(&def.input).output(&def.output).params(&params);
    for pair in &def.side {
        let (name, place) = pair.split_once('=').with_context(|| format!("bad --side {pair:?}: expected NAME=URL"))?;
        job = job.side(name, place);
    }
    if let Some(n) = def.reducers {
        job = job.reducers(n);
    }
    if let Some(f) = def.input_format {
        job = job.input_format(f);
    }
    if let Some(f) = def.output_format {
        job = job.output_format(f);
    }
    if let Some(n) = def.maps {
        job = job.maps(n);
    }
    Ok(job)
}

/// Checks and submits the job of `quern submit`'s flags; the harness submits through this
/// too, so both read flags alike.
pub async fn submit_job(a: &SubmitArgs, registry: &Registry) -> Result<JobHandle> {
    let client = client(&a.conn)?.with_registry(registry.clone());
    let job = job_builder(&client, &a.job)?.priority(a.priority).split_size(a.split_size);
    job.skip_bad_records(a.skip_bad_records).submit().await.map_err(|e| cli_error(e, Some(&a.job)))
}

/// `quern submit`.
pub async fn submit(a: SubmitArgs, registry: &Registry) -> Result<()> {
    let job = submit_job(&a, registry).await?;
    let id = job.id();
    if !a.wait {
        if a.json {
            println!("{}", serde_json::json!({ "id": id.as_str() }));
        } else {
            println!("{id}");
        }
        return Ok(());
    }
    if !a.json {
        println!("{id}");
    }
    let status = wait(&job).await?;
    if a.json {
        println!("{}", status.to_json());
    }
    finish(&status)
}

/// Exits non-zero (via an error) unless the job succeeded.
pub fn finish(status: &JobStatus) -> Result<()> {
    match status.state() {
        JobState::Succeeded => Ok(()),
        JobState::Killed => bail!("job {} was killed", status.id()),
        // The reason is the job's own words (user code's panic message): shown, not obeyed.
        _ => bail!("job {} failed: {}", status.id(), render::clean(status.error().unwrap_or("unknown error"))),
    }
}

/// How long the summary after a job waits for the coordinator's list of attempts.
const SUMMARY_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Follows a job until it ends, showing progress on stderr (see [`JobHandle::wait`] for how
/// it survives a coordinator that goes away), then a summary of what it did.
pub async fn wait(job: &JobHandle) -> Result<JobStatus> {
    let mut progress = Progress::new();
    let status = job.wait(|s| progress.show(s.as_wire())).await;
    progress.done();
    let status = status.map_err(|e| cli_error(e, None))?;
    // Retries are counted from the attempts; a coordinator that cannot say soon (one gone
    // since its last word) leaves them out rather than holding up the exit.
    let tasks = tokio::time::timeout(SUMMARY_LIMIT, job.tasks()).await;
    let retried = tasks.ok().and_then(Result::ok).map(|t| render::retries(&t));
    eprint!("{}", render::summary(status.as_wire(), retried, render::now_ms()));
    Ok(status)
}

/// `quern status`.
pub async fn status(a: JobArgs) -> Result<()> {
    let client = client(&a.conn)?;
    let job = handle(&client, &a.job_id).await?;
    let s = job.status().await.map_err(|e| cli_error(e, None))?;
    if a.json {
        println!("{}", s.to_json());
    } else {
        // The failed attempts, if the coordinator can list them.
        let tasks = job.tasks().await.unwrap_or_default();
        print!("{}", render::status_text(s.as_wire(), &tasks, render::now_ms()));
    }
    Ok(())
}

/// A handle on job `id`, once connected: an unreachable coordinator is reported before a
/// malformed id, as the coordinator would have refused it.
async fn handle(client: &Client, id: &str) -> Result<JobHandle> {
    client.rpc().await.map_err(|e| cli_error(e, None))?;
    Ok(client.handle(JobId::parse(id)?))
}

/// `quern list`.
pub async fn list(a: ListArgs) -> Result<()> {
    let mut client = connect(&a.conn).await?;
    let jobs = client.list(pb::ListJobsRequest {}).await.map_err(rpc_error)?.into_inner().jobs;
    if a.json {
        let v: Vec<_> = jobs.iter().map(render::status_json).collect();
        println!("{}", serde_json::Value::Array(v));
    } else {
        print!("{}", render::list_table(&jobs, render::now_ms(), render::out_width()));
    }
    Ok(())
}

/// `quern kill`.
pub async fn kill(a: KillArgs) -> Result<()> {
    let client = client(&a.conn)?;
    match handle(&client, &a.job_id).await?.kill().await.map_err(|e| cli_error(e, None))? {
        JobState::Killed => {
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
        print!("{}", render::workers_table(&ws, render::out_width()));
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
        print!("{}", render::tasks_table(&ts, render::now_ms(), render::out_width()));
    }
    Ok(())
}
