//! Bounded polling (the API double, like many proxies, serves no watches; polling is also what
//! survives a flaky tunnel best).

use std::future::Future;
use std::time::Duration;

use crate::error::Result;
use crate::retry::{Backoff, Try, retry};

/// Calls `check` every `interval` until it returns `Ok(None)` (done) or `timeout` passes.
/// Returns `None` when done, else the last status `check` reported.
pub async fn until<F, Fut>(
    timeout: Duration,
    interval: Duration,
    mut check: F,
) -> Result<Option<String>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<String>>>,
{
    let polled = retry(&Backoff::poll(interval, timeout), |_| {
        let check = check();
        async move {
            match check.await {
                Ok(None) => Try::Done(()),
                Ok(Some(status)) => Try::Again(Ok(status)),
                Err(e) => Try::Fail(Err(e)),
            }
        }
    })
    .await;
    match polled {
        Ok(()) => Ok(None),
        Err(Ok(status)) => Ok(Some(status)),
        Err(Err(e)) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_done_or_the_last_status_after_the_timeout() {
        let mut n = 0;
        let done = until(Duration::from_secs(5), Duration::from_millis(1), || {
            n += 1;
            let left = 3 - n;
            async move { Ok((left > 0).then(|| format!("{left} left"))) }
        })
        .await
        .unwrap();
        assert_eq!(done, None);
        let stuck = until(
            Duration::from_millis(20),
            Duration::from_millis(5),
            || async { Ok(Some("still waiting".to_string())) },
        )
        .await
        .unwrap();
        assert_eq!(stuck.as_deref(), Some("still waiting"));
    }
}
