//! The leadership loop (I/O around [`crate::lease`]): wait as a standby until the lease is
//! free, take it, replay the journal into the core, then renew until shut down or outrun.

use std::sync::Arc;
use std::time::{Duration, Instant};

use quern_api::StoreUrl;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::journal;
use crate::lease::{self, LeaderClock, LeaseBody, Standby};
use crate::perform::DRAIN_LIMIT;
use crate::service::Shared;

/// How leadership ended.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LeadError {
    /// Another coordinator holds the lease now.
    #[error("another coordinator took over the store's lease; this one stopped")]
    Superseded,
    /// The store could not be reached for longer than the lease.
    #[error("could not renew the lease in the store for {0:?}; this coordinator stopped")]
    Expired(Duration),
    /// The journal could not be read at takeover.
    #[error(transparent)]
    Journal(#[from] journal::JournalError),
    /// The journal could not be written: decisions would no longer survive a restart.
    #[error("{0}; this coordinator stopped")]
    JournalLost(journal::JournalFailure),
    /// Another coordinator is alive on a store without atomic conditional writes, where a
    /// standby could take the lease at the same moment as someone else.
    #[error(
        "another coordinator ({holder}) holds the lease of {store}, and that store is configured without atomic \
         conditional writes (--store-conditional-writes=false): a standby there could lead at the same time \
         as another coordinator, so this one does not wait as one"
    )]
    NoStandby {
        /// The store.
        store: String,
        /// Who holds its lease.
        holder: String,
    },
    /// The store could not be used at all (at start). The store's error already says why,
    /// so it is not repeated as a source.
    #[error("the store is unusable: {0}")]
    Store(quern_api::StoreError),
}

impl From<quern_api::StoreError> for LeadError {
    fn from(e: quern_api::StoreError) -> Self {
        LeadError::Store(e)
    }
}

/// The tokens that end leadership: `stop` for a clean shutdown (or a loss, once noticed),
/// `lost` cancelled by the journal writer when the journal can no longer be written.
#[derive(Clone, Debug, Default)]
pub struct Stops {
    /// Cancelled to stop serving.
    pub stop: CancellationToken,
    /// Cancelled when the journal is lost.
    pub lost: CancellationToken,
}

/// Takes the lease right away if it is free (a fresh store, or a leader that released it) and
/// resumes from the journal, so a coordinator that can lead is ready when `start` returns.
/// Returns the lease taken, or None when another coordinator holds it.
pub async fn take_if_free(
    shared: &Arc<Shared>,
    store: &StoreUrl,
    clock: &LeaderClock,
    stops: &Stops,
    lease: Duration,
) -> Result<Option<u64>, LeadError> {
    let dir = lease::dir(store);
    let now = Instant::now();
    // A store that cannot be listed or written now is a configuration error: say so and
    // exit, rather than wait forever as a standby of nobody.
    let next = match lease::latest(&dir).await? {
        None => 0,
        Some(k) => match lease::read(&dir, k).await? {
            Some(body) if body.released => k + 1,
            _ => return Ok(None),
        },
    };
    if !lease::try_create(&dir, next, &me(shared)).await? {
        return Ok(None);
    }
    resume(shared, store, clock, stops, lease, now).await?;
    info!(lease = next, "took the lead");
    Ok(Some(next))
}

fn me(shared: &Shared) -> LeaseBody {
    LeaseBody { holder: format!("{}@{}", shared.url, quern_api::now_ms()), addr: shared.url.clone(), released: false }
}

/// Replays the journal, starts journalling, starts answering calls, then sweeps the store
/// of what ended and unknown jobs left ([`crate::gc::sweep`]).
async fn resume(
    shared: &Arc<Shared>,
    store: &StoreUrl,
    clock: &LeaderClock,
    stops: &Stops,
    lease: Duration,
    taken_at: Instant,
) -> Result<(), LeadError> {
    let started = Instant::now();
    let contents = journal::read_all(store).await?;
    let every = shared.snapshot_every();
    let snapshots = (every > 0).then(|| journal::Snapshots::after(&contents, every));
    let (next_entry, snapshot) = (contents.next, contents.snapshot);
    let replayed = contents.records.len();
    let resume = shared.core().replay(contents.records);
    if replayed > 0 {
        let jobs = shared.core().jobs().count();
        let ms = started.elapsed().as_millis() as u64;
        info!(records = replayed, jobs, ?snapshot, entries = next_entry, ms, "recovered from the journal");
    }
    // The journal may fail for as long as the lease may: longer, and the decisions made
    // meanwhile would be lost by a restart.
    let give_up = (lease * 2).max(Duration::from_secs(5));
    shared.set_journal(journal::Journal::start_with(store, next_entry, snapshots, give_up, stops.lost.clone()));
    // Only now answer calls: a client must never see the state before the replay. The lease
    // counts from when it was taken.
    clock.renewed(taken_at);
    shared.perform(resume);
    shared.bump();
    // What crashed jobs left in the store goes in the background: takeover does not wait.
    shared.in_flight.spawn("sweeping the store".into(), crate::gc::sweep(shared.clone(), stops.stop.clone()));
    Ok(())
}

/// Runs leadership until `stop` is cancelled (then waits, at most [`DRAIN_LIMIT`], for the
/// I/O in flight and releases the lease) or it is lost (then cancels `stop`, which stops the
/// server). `held` is a lease already taken by [`take_if_free`].
pub async fn lead(
    shared: Arc<Shared>,
    store: StoreUrl,
    lease: Duration,
    clock: Arc<LeaderClock>,
    stops: Stops,
    held: Option<u64>,
) -> Result<(), LeadError> {
    let result = lead_inner(&shared, &store, lease, &clock, &stops, held).await;
    clock.step_down();
    if result.is_err() {
        stops.stop.cancel();
    }
    result
}

async fn lead_inner(
    shared: &Arc<Shared>,
    store: &StoreUrl,
    lease: Duration,
    clock: &LeaderClock,
    stops: &Stops,
    held: Option<u64>,
) -> Result<(), LeadError> {
    let stop = &stops.stop;
    let dir = lease::dir(store);
    let me = me(shared);
    let poll = (lease / 6).max(Duration::from_millis(20));
    let mut n = match held {
        Some(n) => n,
        None => {
            let (n, taken_at) = wait_as_standby(&dir, lease, poll, &me, stop, shared.conditional_writes()).await?;
            let Some(n) = n else { return Ok(()) };
            info!(lease = n, "took the lead");
            resume(shared, store, clock, stops, lease, taken_at).await?;
            n
        }
    };

    // Renew every third of the lease; stop acting once a lease has passed without renewal.
    let every = lease / 3;
    // Once stopped, the I/O already decided (a job's cleanup, its `_SUCCESS`) gets until this
    // deadline to finish, under the lease: no successor acts on those jobs meanwhile.
    let mut draining: Option<Instant> = None;
    // When the first renewal attempt of lease n + 1 that failed without an answer started.
    let mut unsure: Option<Instant> = None;
    loop {
        let idle = async {
            match draining {
                Some(_) => shared.in_flight.idle().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stops.lost.cancelled() => {
                let why = shared.journal_failure().unwrap_or(journal::JournalFailure::Unwritable {
                    entry: "?".into(),
                    error: "unknown".into(),
                });
                return Err(LeadError::JournalLost(why));
            }
            _ = stop.cancelled(), if draining.is_none() => {
                draining = Some(Instant::now() + DRAIN_LIMIT);
                continue;
            }
            _ = idle => {
                release(&dir, n, &me, clock).await;
                return Ok(());
            }
        }
        if draining.is_some_and(|deadline| Instant::now() >= deadline) {
            let abandoned = shared.in_flight.running();
            warn!(?abandoned, "stopping without the I/O still running after {DRAIN_LIMIT:?}");
            release(&dir, n, &me, clock).await;
            return Ok(());
        }
        let at = Instant::now();
        match renew(&dir, n, &me, every, &mut unsure).await {
            Renewal::Renewed(since) => {
                n += 1;
                clock.renewed(since.unwrap_or(at));
                lease::prune(&dir, n).await;
                if !clock.valid(Instant::now()) {
                    return Err(LeadError::Expired(lease));
                }
            }
            Renewal::Superseded => {
                error!("another coordinator took the lease");
                return Err(LeadError::Superseded);
            }
            Renewal::Unsure => {
                unsure.get_or_insert(at);
                if !clock.valid(Instant::now()) {
                    return Err(LeadError::Expired(lease));
                }
            }
        }
    }
}

/// What one attempt to renew the lease found.
#[derive(Debug, PartialEq, Eq)]
enum Renewal {
    /// Lease n + 1 is this coordinator's: written now (None), or by an earlier attempt that
    /// seemed to fail, which started at the time given.
    Renewed(Option<Instant>),
    /// Another coordinator wrote lease n + 1.
    Superseded,
    /// The write failed or timed out: it may or may not have landed.
    Unsure,
}

/// Tries to write lease `n + 1`. `unsure` is when the first attempt at it that ended without
/// an answer started: such a write may land later (a local file put runs on after its future
/// is dropped), so finding lease n + 1 already written as this coordinator's own is a renewal
/// from that time, not a takeover.
async fn renew(dir: &StoreUrl, n: u64, me: &LeaseBody, every: Duration, unsure: &mut Option<Instant>) -> Renewal {
    // A store call that hangs must not keep a lapsed leader alive: it counts as a failed
    // renewal once a renewal period has passed.
    match tokio::time::timeout(every, lease::try_create(dir, n + 1, me)).await {
        Ok(Ok(true)) => {
            // This write created it, so no earlier one did.
            *unsure = None;
            Renewal::Renewed(None)
        }
        Ok(Ok(false)) => {
            let Some(since) = *unsure else { return Renewal::Superseded };
            match lease::read(dir, n + 1).await {
                Ok(Some(body)) if body == *me => {
                    warn!(lease = n + 1, "a lease renewal that seemed to fail had been written");
                    *unsure = None;
                    Renewal::Renewed(Some(since))
                }
                Ok(_) => Renewal::Superseded,
                Err(e) => {
                    warn!(error = %e, "reading the lease after a refused renewal failed");
                    Renewal::Unsure
                }
            }
        }
        Ok(Err(e)) => {
            warn!(error = %e, "lease renewal failed");
            Renewal::Unsure
        }
        Err(_) => {
            warn!(after = ?every, "lease renewal timed out");
            Renewal::Unsure
        }
    }
}

/// Steps down and writes a released lease after lease `n`, so a successor starts at once.
async fn release(dir: &StoreUrl, n: u64, me: &LeaseBody, clock: &LeaderClock) {
    clock.step_down();
    let released = LeaseBody { released: true, ..me.clone() };
    let _ = lease::try_create(dir, n + 1, &released).await;
}

/// Waits until the lease is free: a released one, or one that stood still for 1.5 leases.
/// Returns the lease taken (None if stopped first) and when. Without atomic conditional
/// writes (`conditional`), a lease that moves on (a live coordinator renewing it) is an
/// error rather than something to wait out: only a dead holder's lease may be taken there.
async fn wait_as_standby(
    dir: &StoreUrl,
    lease: Duration,
    poll: Duration,
    me: &LeaseBody,
    stop: &CancellationToken,
    conditional: bool,
) -> Result<(Option<u64>, Instant), LeadError> {
    let mut standby = Standby::new(lease, Instant::now());
    let mut announced = false;
    let mut first = None;
    loop {
        if stop.is_cancelled() {
            return Ok((None, Instant::now()));
        }
        let now = Instant::now();
        match lease::latest(dir).await {
            Ok(latest) => {
                let released = match latest {
                    None => Some(0),
                    Some(k) => match lease::read(dir, k).await {
                        Ok(Some(body)) if body.released => Some(k + 1),
                        _ => None,
                    },
                };
                if !conditional && released.is_none() && *first.get_or_insert(latest) != latest {
                    let holder = match latest {
                        Some(k) => lease::read(dir, k).await.ok().flatten().map(|b| b.addr),
                        None => None,
                    };
                    let holder = holder.unwrap_or_else(|| "unknown".into());
                    let store = dir.parent_dir().unwrap_or_else(|| dir.clone()).to_string();
                    return Err(LeadError::NoStandby { store, holder });
                }
                standby.observe(latest, now);
                if let Some(next) = released.or_else(|| standby.takeover(now)) {
                    if lease::try_create(dir, next, me).await.unwrap_or(false) {
                        return Ok((Some(next), now));
                    }
                } else if !announced {
                    info!(lease = ?latest, "another coordinator holds the store's lease; waiting as a standby");
                    announced = true;
                }
            }
            Err(e) => warn!(error = %e, "cannot read the lease"),
        }
        tokio::select! {
            _ = tokio::time::sleep(poll) => {}
            _ = stop.cancelled() => return Ok((None, Instant::now())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(holder: &str) -> LeaseBody {
        LeaseBody { holder: holder.into(), addr: String::new(), released: false }
    }

    #[tokio::test]
    async fn a_late_renewal_of_its_own_is_not_a_takeover_and_anothers_is() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = lease::dir(&StoreUrl::from_user(&format!("{}/", tmp.path().display())).unwrap());
        let (me, every) = (body("me"), Duration::from_secs(5));
        let t0 = Instant::now();

        // Nothing in the way: renewed by this write.
        let mut unsure = None;
        assert_eq!(renew(&dir, 0, &me, every, &mut unsure).await, Renewal::Renewed(None));
        // Lease 2 landed from an attempt that timed out at t0: a renewal from t0.
        assert!(lease::try_create(&dir, 2, &me).await.unwrap());
        let mut unsure = Some(t0);
        assert_eq!(renew(&dir, 1, &me, every, &mut unsure).await, Renewal::Renewed(Some(t0)));
        assert_eq!(unsure, None);
        // The same without an attempt in doubt cannot be this coordinator's write.
        assert!(lease::try_create(&dir, 3, &me).await.unwrap());
        assert_eq!(renew(&dir, 2, &me, every, &mut None).await, Renewal::Superseded);
        // Another holder's lease is a takeover, doubt or not.
        assert!(lease::try_create(&dir, 4, &body("other")).await.unwrap());
        assert_eq!(renew(&dir, 3, &me, every, &mut Some(t0)).await, Renewal::Superseded);
    }
}
