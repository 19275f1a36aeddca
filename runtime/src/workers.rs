//! The loop the dispatcher and the webhook deliverer share: claim due work
//! from the store, run each item in its own task (at most `concurrency` at
//! once), and record the results in batches.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::store::Connection;
use tokio::sync::{Notify, Semaphore, mpsc, watch};

use crate::store::{self, Store, StoreError};

/// Most results recorded in one write.
const RESULT_BATCH: usize = 1024;

pub struct Limits {
    /// Items in progress at once.
    pub concurrency: usize,
    /// Most items claimed in one write.
    pub claim_batch: usize,
    /// How long to wait for due work when `wake` says nothing.
    pub poll: Duration,
}

/// How results are recorded: `write` in a store write job, then `after`
/// with what it returned, once that is committed.
pub struct Recorder<Write, After> {
    pub write: Write,
    pub after: After,
}

/// Runs until `shutdown` turns true, then lets the items in progress finish
/// and records their results. `wake` cuts a poll wait short; it is also
/// notified after each recorded batch (a result may make more work due).
pub async fn run<T, R, O, Claim, ClaimFut, Work, WorkFut, Write, After>(
    store: Store,
    limits: Limits,
    wake: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
    claim: Claim,
    work: Work,
    recorder: Recorder<Write, After>,
) where
    T: Send + 'static,
    R: Send + Sync + 'static,
    O: Send + 'static,
    Claim: Fn(usize) -> ClaimFut,
    ClaimFut: Future<Output = store::Result<Vec<T>>>,
    Work: Fn(T) -> WorkFut,
    WorkFut: Future<Output = Vec<R>> + Send + 'static,
    Write: Fn(&Connection, &[R]) -> store::Result<O> + Send + Sync + 'static,
    After: Fn(O) + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(limits.concurrency));
    let (results_tx, results_rx) = mpsc::unbounded_channel();
    let recorder = tokio::spawn(record_results(
        store,
        results_rx,
        Arc::new(recorder.write),
        recorder.after,
        wake.clone(),
    ));

    while !*shutdown.borrow() {
        // Claim only what can start now, so nothing claimed waits.
        let free = permits.available_permits().min(limits.claim_batch);
        if free == 0 {
            tokio::select! {
                permit = permits.clone().acquire_owned() => drop(permit),
                _ = shutdown.changed() => {}
            }
            continue;
        }
        let claimed = claim(free).await.unwrap_or_else(|err| {
            tracing::error!(error = %err, "claiming due work failed");
            Vec::new()
        });
        if claimed.is_empty() {
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(limits.poll) => {}
                _ = shutdown.changed() => {}
            }
            continue;
        }
        for item in claimed {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                break;
            };
            let results = results_tx.clone();
            let done = work(item);
            tokio::spawn(async move {
                for result in done.await {
                    let _ = results.send(result);
                }
                drop(permit);
            });
        }
    }

    // Wait for every item in progress, then for their results.
    let _ = permits.acquire_many(limits.concurrency as u32).await;
    drop(results_tx);
    let _ = recorder.await;
}

/// Writes results in batches. A failed write is retried: losing a result
/// (a carrier's acceptance, a delivered webhook) would repeat the work.
async fn record_results<R, O, Write, After>(
    store: Store,
    mut results: mpsc::UnboundedReceiver<R>,
    record: Arc<Write>,
    after: After,
    recorded: Arc<Notify>,
) where
    R: Send + Sync + 'static,
    O: Send + 'static,
    Write: Fn(&Connection, &[R]) -> store::Result<O> + Send + Sync + 'static,
    After: Fn(O),
{
    let mut batch = Vec::with_capacity(RESULT_BATCH);
    while results.recv_many(&mut batch, RESULT_BATCH).await > 0 {
        let pending = Arc::new(std::mem::take(&mut batch));
        let mut delay = Duration::from_millis(50);
        loop {
            let (job, record) = (pending.clone(), record.clone());
            match store.write(move |c| record(c, &job)).await {
                Ok(output) => {
                    after(output);
                    recorded.notify_one();
                    break;
                }
                Err(StoreError::Closed) => return,
                Err(err) => {
                    tracing::error!(error = %err, count = pending.len(), "recording results failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}
