//! Leadership: at most one coordinator acts on a store at a time, without ZooKeeper.
//!
//! The lease is a sequence of objects `STORE/lease/NNNNNNNNNNNNNNNN`, each written with a
//! create-only put, so two coordinators can never both write number N: whoever creates the
//! next number holds the lease. The leader renews every third of the lease duration by
//! creating the next number; a standby watches the numbers and, once they have not moved for
//! the lease duration plus a margin (by its own clock), creates the next one itself and takes
//! over. A leader stops acting as soon as a lease duration has passed since its last
//! successful renewal, which is before any standby may take over: so even across a network
//! partition, two coordinators never act at once. A leader that shuts down cleanly writes a
//! `released` lease so that its successor need not wait.
//!
//! This needs a store whose create-only puts are atomic: local files, AWS S3, GCS (see
//! DESIGN-NOTES: some S3 clones are not). [`LeaderClock`] and [`Standby`] hold the timing
//! rules as pure, fake-clock-testable logic.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use quern_api::{StoreError, StoreUrl};
use serde::{Deserialize, Serialize};

/// What a lease object says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseBody {
    /// Who holds it (the coordinator's address and start time).
    pub holder: String,
    /// The holder's client address.
    pub addr: String,
    /// True when the holder gave the lease up on shutdown.
    pub released: bool,
}

/// The lease directory under a store root.
pub fn dir(store: &StoreUrl) -> StoreUrl {
    store.join("lease/")
}

/// The highest lease number, if any.
pub async fn latest(dir: &StoreUrl) -> Result<Option<u64>, StoreError> {
    let os = dir.store()?;
    let mut list = os.list(Some(&dir.path()));
    let mut max = None;
    while let Some(meta) = list.next().await {
        let meta = meta.map_err(|e| StoreError::from_store(dir.as_str(), e))?;
        if let Ok(n) = dir.with_path(&meta.location).base_name().parse::<u64>() {
            max = max.max(Some(n));
        }
    }
    Ok(max)
}

/// Reads lease `n`.
pub async fn read(dir: &StoreUrl, n: u64) -> Result<Option<LeaseBody>, StoreError> {
    let url = dir.join(&format!("{n:016}"));
    let os = url.store()?;
    match os.get(&url.path()).await {
        Ok(r) => {
            let bytes = r.bytes().await.map_err(|e| StoreError::from_store(url.as_str(), e))?;
            Ok(serde_json::from_slice(&bytes).ok())
        }
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(StoreError::from_store(url.as_str(), e)),
    }
}

/// Tries to create lease `n`; false if someone else already did.
pub async fn try_create(dir: &StoreUrl, n: u64, body: &LeaseBody) -> Result<bool, StoreError> {
    let url = dir.join(&format!("{n:016}"));
    let os = url.store()?;
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let opts = PutOptions { mode: PutMode::Create, ..Default::default() };
    match os.put_opts(&url.path(), PutPayload::from(bytes), opts).await {
        Ok(_) => Ok(true),
        Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
        Err(e) => Err(StoreError::from_store(url.as_str(), e)),
    }
}

/// Deletes leases older than `n - 1` (best effort: only the newest ones matter).
pub async fn prune(dir: &StoreUrl, n: u64) {
    let Ok(os) = dir.store() else { return };
    for old in n.saturating_sub(4)..n.saturating_sub(1) {
        let _ = os.delete(&dir.join(&format!("{old:016}")).path()).await;
    }
}

/// The leader's side: whether it may still act.
#[derive(Debug)]
pub struct LeaderClock {
    base: Instant,
    lease: Duration,
    leading: AtomicBool,
    renewed_ms: AtomicU64,
}

impl LeaderClock {
    /// Not leading yet.
    pub fn new(lease: Duration, base: Instant) -> Self {
        LeaderClock { base, lease, leading: AtomicBool::new(false), renewed_ms: AtomicU64::new(0) }
    }

    /// A renewal (or the takeover) was written; `at` is when the write *started*, so the
    /// lease is counted conservatively.
    pub fn renewed(&self, at: Instant) {
        let ms = at.saturating_duration_since(self.base).as_millis() as u64;
        self.renewed_ms.fetch_max(ms, Ordering::SeqCst);
        self.leading.store(true, Ordering::SeqCst);
    }

    /// Stops acting for good (lost the lease to another coordinator, or shutting down).
    pub fn step_down(&self) {
        self.leading.store(false, Ordering::SeqCst);
    }

    /// Whether this coordinator took the lease and has not stepped down (it may still have
    /// lapsed: see [`LeaderClock::valid`]).
    pub fn leading(&self) -> bool {
        self.leading.load(Ordering::SeqCst)
    }

    /// Whether this coordinator may act at `now`: it leads, and its last renewal is younger
    /// than the lease.
    pub fn valid(&self, now: Instant) -> bool {
        let renewed = self.base + Duration::from_millis(self.renewed_ms.load(Ordering::SeqCst));
        self.leading.load(Ordering::SeqCst) && now.saturating_duration_since(renewed) < self.lease
    }
}

/// The standby's side: when it may take over.
#[derive(Clone, Debug)]
pub struct Standby {
    lease: Duration,
    seen: Option<u64>,
    since: Instant,
}

impl Standby {
    /// Starts watching at `now`.
    pub fn new(lease: Duration, now: Instant) -> Self {
        Standby { lease, seen: None, since: now }
    }

    /// Records the highest lease number seen at `now`; a change restarts the wait.
    pub fn observe(&mut self, latest: Option<u64>, now: Instant) {
        if latest != self.seen {
            self.seen = latest;
            self.since = now;
        }
    }

    /// The lease number to create to take over at `now`, once the leases have stood still
    /// for the lease duration plus half again (the margin covers the leader's write latency).
    pub fn takeover(&self, now: Instant) -> Option<u64> {
        let wait = self.lease + self.lease / 2;
        (now.saturating_duration_since(self.since) >= wait).then(|| self.seen.map_or(0, |n| n + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_standby_takes_over_only_after_the_leader_must_have_stopped() {
        let lease = Duration::from_secs(3);
        let t0 = Instant::now();
        let leader = LeaderClock::new(lease, t0);
        leader.renewed(t0);
        let mut standby = Standby::new(lease, t0);
        standby.observe(Some(7), t0);
        // The leader's renewals stop at t0 (partitioned from the store). Walk a fake clock.
        for ms in (0..10_000).step_by(50) {
            let now = t0 + Duration::from_millis(ms);
            let standby_may = standby.takeover(now).is_some();
            assert!(!(standby_may && leader.valid(now)), "two leaders at {ms} ms");
        }
        assert_eq!(standby.takeover(t0 + Duration::from_millis(4500)), Some(8));
        assert!(!leader.valid(t0 + lease));
    }

    #[test]
    fn renewals_keep_the_standby_waiting() {
        let lease = Duration::from_secs(3);
        let t0 = Instant::now();
        let mut standby = Standby::new(lease, t0);
        for k in 0..10u64 {
            let now = t0 + Duration::from_secs(k);
            standby.observe(Some(k), now);
            assert_eq!(standby.takeover(now), None);
        }
        assert_eq!(standby.takeover(t0 + Duration::from_secs(9) + lease * 2), Some(10));
        // An empty store: lease 0 after the wait.
        let empty = Standby::new(lease, t0);
        assert_eq!(empty.takeover(t0 + lease * 2), Some(0));
    }

    #[test]
    fn a_stepped_down_leader_never_acts_again() {
        let t0 = Instant::now();
        let leader = LeaderClock::new(Duration::from_secs(3), t0);
        assert!(!leader.valid(t0), "not leading before the takeover");
        leader.renewed(t0);
        assert!(leader.valid(t0 + Duration::from_secs(1)));
        leader.step_down();
        assert!(!leader.valid(t0 + Duration::from_secs(1)));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn racing_creates_on_local_files_have_exactly_one_winner() {
        let dir = tempfile::tempdir().unwrap();
        let store = StoreUrl::from_user(&format!("{}/", dir.path().display())).unwrap();
        let leases = super::dir(&store);
        for round in 0..20u64 {
            let tasks: Vec<_> = (0..8)
                .map(|k| {
                    let leases = leases.clone();
                    tokio::spawn(async move {
                        let body = LeaseBody { holder: format!("c{k}"), addr: String::new(), released: false };
                        try_create(&leases, round, &body).await.unwrap()
                    })
                })
                .collect();
            let mut winners = 0;
            for t in tasks {
                winners += usize::from(t.await.unwrap());
            }
            assert_eq!(winners, 1, "round {round}");
        }
        assert_eq!(latest(&leases).await.unwrap(), Some(19));
    }
}
