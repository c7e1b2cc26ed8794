//! The one retry/poll helper: every loop that waits for something or retries a call goes
//! through [`retry`], bounded by attempts and/or time, with exponential backoff and jitter.
//! Retries are opt-in per call site (the closure says what is retryable), never a default.

use std::future::Future;
use std::time::{Duration, Instant};

/// How long to keep trying and how to space the tries.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// Delay after the first failed try.
    pub first: Duration,
    /// Upper bound of any delay.
    pub max: Duration,
    /// Each delay is the previous one times this (1 = fixed interval).
    pub factor: u32,
    /// At most this many tries (`None`: bounded by `deadline` only).
    pub attempts: Option<u32>,
    /// No new try starts after this much time (`None`: bounded by `attempts` only).
    pub deadline: Option<Duration>,
    /// Spread delays by up to ±20% so many nodes do not retry in lockstep.
    pub jitter: bool,
}

impl Backoff {
    /// A fixed interval until `deadline`: polling.
    pub fn poll(interval: Duration, deadline: Duration) -> Backoff {
        Backoff {
            first: interval,
            max: interval,
            factor: 1,
            attempts: None,
            deadline: Some(deadline),
            jitter: false,
        }
    }

    /// Doubling delays from `first` up to `max`, until `deadline`.
    pub fn exponential(first: Duration, max: Duration, deadline: Duration) -> Backoff {
        Backoff {
            first,
            max,
            factor: 2,
            attempts: None,
            deadline: Some(deadline),
            jitter: true,
        }
    }

    /// At most `attempts` tries, `delay` apart (growing linearly with `factor` 1 and no cap).
    pub fn attempts(attempts: u32, delay: Duration) -> Backoff {
        Backoff {
            first: delay,
            max: delay,
            factor: 1,
            attempts: Some(attempts),
            deadline: None,
            jitter: false,
        }
    }
}

/// What one try found.
pub enum Try<T, E> {
    /// Finished: return this.
    Done(T),
    /// Not yet (a retryable error or a status to report if time runs out): try again.
    Again(E),
    /// A final failure: return it at once.
    Fail(E),
}

/// Calls `attempt(n)` (n = 1, 2, ...) until it returns [`Try::Done`] or [`Try::Fail`], or the
/// bounds of `backoff` run out; then the last [`Try::Again`] value is returned as the error.
pub async fn retry<T, E, F, Fut>(backoff: &Backoff, mut attempt: F) -> Result<T, E>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Try<T, E>>,
{
    let started = Instant::now();
    let mut delay = backoff.first;
    let mut n = 1;
    loop {
        let last = match attempt(n).await {
            Try::Done(v) => return Ok(v),
            Try::Fail(e) => return Err(e),
            Try::Again(e) => e,
        };
        let out_of_tries = backoff.attempts.is_some_and(|max| n >= max);
        let out_of_time = backoff
            .deadline
            .is_some_and(|d| started.elapsed() + delay.min(backoff.max) > d);
        if out_of_tries || out_of_time {
            return Err(last);
        }
        tokio::time::sleep(jittered(delay.min(backoff.max), backoff.jitter)).await;
        delay = (delay * backoff.factor).min(backoff.max);
        n += 1;
    }
}

fn jittered(d: Duration, jitter: bool) -> Duration {
    if !jitter {
        return d;
    }
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(d.subsec_nanos());
    let spread = (h.finish() % 41) as f64 / 100.0 - 0.2; // -0.20 ..= +0.20
    d.mul_f64(1.0 + spread)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stops_when_done_failed_or_out_of_tries() {
        let done: Result<u32, &str> =
            retry(&Backoff::attempts(5, Duration::ZERO), |n| async move {
                if n == 3 {
                    Try::Done(n)
                } else {
                    Try::Again("not yet")
                }
            })
            .await;
        assert_eq!(done, Ok(3));
        let mut tries = 0;
        let failed: Result<(), &str> = retry(&Backoff::attempts(5, Duration::ZERO), |_| {
            tries += 1;
            async { Try::Fail("fatal") }
        })
        .await;
        assert_eq!((failed, tries), (Err("fatal"), 1));
        let mut tries = 0;
        let exhausted: Result<(), String> = retry(&Backoff::attempts(3, Duration::ZERO), |n| {
            tries += 1;
            async move { Try::Again(format!("try {n}")) }
        })
        .await;
        assert_eq!((exhausted, tries), (Err("try 3".to_string()), 3));
    }

    #[tokio::test]
    async fn a_deadline_bounds_polling() {
        let started = Instant::now();
        let r: Result<(), &str> = retry(
            &Backoff::poll(Duration::from_millis(5), Duration::from_millis(40)),
            |_| async { Try::Again("waiting") },
        )
        .await;
        assert_eq!(r, Err("waiting"));
        assert!(started.elapsed() < Duration::from_millis(500));
        for _ in 0..50 {
            let d = jittered(Duration::from_secs(10), true);
            assert!(
                d >= Duration::from_secs(8) && d <= Duration::from_secs(12),
                "{d:?}"
            );
        }
    }
}
