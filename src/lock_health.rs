//! Whether this process still holds the remote state lock, and what happens when it does not.
//!
//! A lease is only as good as its last renewal. The holder renews every third of the lease; a
//! run that has not renewed for two thirds of it (the network failed, or the process was
//! stopped and resumed) or whose renewal found the lock taken over has *lost* it: another run
//! may already be working. It must stop at once, before any further write. [`lost`] records
//! why and wakes [`wait_lost`], which `lib.rs` races against the command: the command's future
//! is dropped (SSH channels closed, API and AWS calls abandoned) and the run exits with the
//! lock error (exit 3). Journal pushes ask [`still_held`] first, so nothing is written in the
//! window before the cancellation lands.
//!
//! Time here is the monotonic clock of this process, never a wall clock: the stealer's side
//! judges expiry by an unchanged ETag over a whole lease (see `remote_state::acquire`).

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The lease of the lock this process holds and when it was last renewed.
#[derive(Debug)]
struct Lease {
    length: Duration,
    renewed: Instant,
}

static LEASE: Mutex<Option<Lease>> = Mutex::new(None);
static LOST: OnceLock<String> = OnceLock::new();
static NOTIFY: tokio::sync::Notify = tokio::sync::Notify::const_new();

fn lease() -> std::sync::MutexGuard<'static, Option<Lease>> {
    LEASE.lock().unwrap_or_else(|p| p.into_inner())
}

/// The lock was taken (or renewed) now, for `length`.
pub fn renewed(length: Duration) {
    *lease() = Some(Lease {
        length,
        renewed: Instant::now(),
    });
}

/// The lock was released on purpose: nothing to watch any more.
pub fn released() {
    *lease() = None;
}

/// How long since the last renewal, when a lock is held.
pub fn since_renewal() -> Option<(Duration, Duration)> {
    lease().as_ref().map(|l| (l.renewed.elapsed(), l.length))
}

/// A lease not renewed for two thirds of its length can no longer be trusted: a stealer waits
/// one whole lease of unchanged ETag, so the remaining third is the safety margin.
pub fn stale(elapsed: Duration, length: Duration) -> bool {
    elapsed * 3 >= length * 2
}

/// The lock is lost for `why`: every waiter of [`wait_lost`] wakes (first reason wins).
pub fn lost(why: String) {
    let _ = LOST.set(why);
    NOTIFY.notify_waiters();
    NOTIFY.notify_one();
}

/// Why the lock was lost, if it was.
pub fn lost_reason() -> Option<String> {
    LOST.get().cloned()
}

/// `Ok` while this process may still write (no lock held, or a lease renewed recently
/// enough); otherwise marks the lock lost and returns why.
pub fn still_held() -> Result<(), String> {
    if let Some(why) = lost_reason() {
        return Err(why);
    }
    match since_renewal() {
        Some((elapsed, length)) if stale(elapsed, length) => {
            let why = format!(
                "the state lock was last renewed {}s ago, past two thirds of its {}s lease (was this process stopped, or S3 unreachable?)",
                elapsed.as_secs(),
                length.as_secs()
            );
            lost(why.clone());
            Err(why)
        }
        _ => Ok(()),
    }
}

/// Returns at once while the lock holds; once it is lost, never returns (the command's future
/// is then dropped by the race in `lib.rs`). Called before every mutating AWS call and every
/// SSH command, so no new remote work starts after the lock is gone.
pub async fn hold_or_park() {
    if still_held().is_err() {
        std::future::pending::<()>().await;
    }
}

/// Resolves once the lock is lost, with why.
pub async fn wait_lost() -> String {
    loop {
        let notified = NOTIFY.notified();
        if let Some(why) = lost_reason() {
            return why;
        }
        notified.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_thirds_of_a_lease_is_the_limit() {
        let lease = Duration::from_secs(120);
        assert!(!stale(Duration::from_secs(40), lease));
        assert!(!stale(Duration::from_secs(79), lease));
        assert!(stale(Duration::from_secs(80), lease));
        assert!(stale(Duration::from_secs(600), lease));
    }
}
