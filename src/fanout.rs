//! The one per-node fan-out helper: runs a closure for every item concurrently (bounded) and
//! returns the results in input order, so callers collect failures in one place instead of
//! hand-writing a JoinSet each time.

use std::future::Future;

use futures::StreamExt;

/// Runs `work` on every item, at most `limit` at a time (0 = all at once), and returns the
/// outputs in the order of `items`.
pub async fn each<I, T, F, Fut>(items: impl IntoIterator<Item = I>, limit: usize, work: F) -> Vec<T>
where
    F: FnMut(I) -> Fut,
    Fut: Future<Output = T>,
{
    let items: Vec<I> = items.into_iter().collect();
    let limit = if limit == 0 {
        items.len().max(1)
    } else {
        limit
    };
    futures::stream::iter(items)
        .map(work)
        .buffered(limit)
        .collect()
        .await
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn keeps_order_and_the_bound() {
        let running = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        let out = super::each(0..10u64, 3, |i| {
            let (running, peak) = (&running, &peak);
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(10 - i)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                i * 2
            }
        })
        .await;
        assert_eq!(out, (0..10).map(|i| i * 2).collect::<Vec<_>>());
        assert_eq!(peak.load(Ordering::SeqCst), 3);
        let all = super::each(0..5, 0, |i| async move { i }).await;
        assert_eq!(all, vec![0, 1, 2, 3, 4]);
    }
}
