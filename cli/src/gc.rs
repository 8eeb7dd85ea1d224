//! `quern gc`: what ended, crashed or unknown jobs left in a store, listed (a dry run) or
//! deleted. The rules are the coordinator's ([`quern_coordinator::gc`]): running jobs' data
//! is never touched, and a directory of a job the journal does not know goes only once it is
//! older than `--min-age`, which makes `gc` safe next to a live coordinator.

use anyhow::{Context, Result};
use quern_api::StoreUrl;
use quern_coordinator::gc::{Extent, delete_job_dir, survey};
use quern_coordinator::lease;

use crate::args::GcArgs;

/// `quern gc`.
pub async fn gc(a: GcArgs) -> Result<()> {
    let store = StoreUrl::from_user(&a.store).context("bad --store")?.as_dir();
    let dir = lease::dir(&store);
    if let Some(k) = lease::latest(&dir).await.context("reading the lease")?
        && let Some(body) = lease::read(&dir, k).await.context("reading the lease")?
        && !body.released
    {
        eprintln!(
            "note: a coordinator ({}) may be running on this store: its running jobs' data is kept, \
             and unknown jobs' only past --min-age",
            body.addr
        );
    }
    let plan = survey(&store, a.min_age).await.context("surveying the store")?;
    for item in &plan.delete {
        println!("delete  {}  {}  ({})", item.dir, extent(&item.extent), item.why);
        for up in &item.uploads {
            println!("abort   {}  upload {}  (noted in {})", up.part, up.id, item.dir);
        }
    }
    for (dir, ext, why) in &plan.keep {
        println!("keep    {dir}  {}  ({why})", extent(ext));
    }
    let total = plan.delete.iter().fold(Extent::default(), |mut t, i| {
        t.objects += i.extent.objects;
        t.bytes += i.extent.bytes;
        t
    });
    let uploads: usize = plan.delete.iter().map(|i| i.uploads.len()).sum();
    let dirs = format!(
        "{} director{} ({})",
        plan.delete.len(),
        if plan.delete.len() == 1 { "y" } else { "ies" },
        extent(&total)
    );
    let ups = format!("{uploads} upload{}", if uploads == 1 { "" } else { "s" });
    if !a.delete {
        println!("dry run: would delete {dirs} and abort {ups}; keeping {}; --delete deletes them", plan.keep.len());
        return Ok(());
    }
    let mut failed = 0;
    for item in &plan.delete {
        if let Err(e) = delete_job_dir(&item.dir).await {
            println!("failed  {}  ({e})", item.dir);
            failed += 1;
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} of {} directories could not be deleted (listed above)", plan.delete.len());
    }
    println!("deleted {dirs} and aborted {ups}; kept {}", plan.keep.len());
    Ok(())
}

fn extent(e: &Extent) -> String {
    format!("{} object{}, {} bytes", e.objects, if e.objects == 1 { "" } else { "s" }, e.bytes)
}
