//! The single writer thread and its group commit.
//!
//! Jobs queue on a channel; the thread takes every job waiting (up to
//! `max_batch`), runs them all in one transaction, commits once, and only
//! then answers the callers. While it commits, new
//! jobs pile up and ride the next commit, so the cost of the fsync is shared.

use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::sync::{mpsc, oneshot};

use super::rollups::{self, QueueDepth};
use super::{Connection, Result, StoreError};

/// How a job's run went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Run {
    Done,
    Failed,
    /// The database aborted the transaction for a conflict with another
    /// node's (PostgreSQL): the whole batch runs again.
    Conflict,
}

trait Job: Send {
    /// Runs the job in the open transaction and keeps its result.
    fn run(&mut self, conn: &Connection) -> Run;
    /// Answers the caller once the transaction's fate is known.
    fn finish(self: Box<Self>, commit: Result<(), CommitFailed>);
}

struct TypedJob<R, F> {
    work: F,
    result: Option<Result<R>>,
    reply: oneshot::Sender<Result<R>>,
}

impl<R, F> Job for TypedJob<R, F>
where
    R: Send,
    F: Fn(&Connection) -> Result<R> + Send,
{
    fn run(&mut self, conn: &Connection) -> Run {
        let result = (self.work)(conn);
        let run = match &result {
            Ok(_) => Run::Done,
            Err(err) if err.is_conflict() => Run::Conflict,
            Err(_) => Run::Failed,
        };
        self.result = Some(result);
        run
    }

    fn finish(self: Box<Self>, commit: Result<(), CommitFailed>) {
        let result = match (commit, self.result) {
            (Ok(()), Some(result)) => result,
            (Ok(()), None) => Err(StoreError::Closed),
            (Err(CommitFailed { full: true, .. }), _) => Err(StoreError::Full),
            (Err(CommitFailed { message, .. }), _) => Err(StoreError::WriteFailed(message)),
        };
        let _ = self.reply.send(result);
    }
}

/// Why a batch's transaction did not commit.
#[derive(Debug, Clone)]
struct CommitFailed {
    message: String,
    /// SQLITE_FULL.
    full: bool,
}

/// Failed commits: the same fault fails every batch, so a line now and then.
static COMMIT_FAILURE_LOG: crate::log_limit::LogLimiter =
    crate::log_limit::LogLimiter::new(10_000, 1);

enum Command {
    Job(Box<dyn Job>),
    Close(oneshot::Sender<()>),
}

pub(super) struct WriterHandle {
    tx: mpsc::Sender<Command>,
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
}

/// Jobs that may wait for the writer before callers feel back-pressure.
const QUEUE_DEPTH: usize = 16 * 1024;

pub(super) fn spawn(conn: Connection, max_batch: usize, depth: Arc<QueueDepth>) -> WriterHandle {
    let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
    let thread = std::thread::Builder::new()
        .name("pigeon-store-writer".into())
        .spawn(move || writer_loop(conn, rx, max_batch, &depth))
        .expect("spawning the store writer thread");
    WriterHandle {
        tx,
        thread: std::sync::Mutex::new(Some(thread)),
    }
}

impl WriterHandle {
    pub(super) async fn submit<R, F>(&self, work: F) -> Result<R>
    where
        R: Send + 'static,
        F: Fn(&Connection) -> Result<R> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = TypedJob {
            work,
            result: None,
            reply,
        };
        self.tx
            .send(Command::Job(Box::new(job)))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    pub(super) async fn close(&self) {
        let (done, closed) = oneshot::channel();
        if self.tx.send(Command::Close(done)).await.is_ok() {
            let _ = closed.await;
        }
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

fn writer_loop(
    conn: Connection,
    mut rx: mpsc::Receiver<Command>,
    max_batch: usize,
    depth: &QueueDepth,
) {
    let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(max_batch);
    let mut close_replies = Vec::new();
    // After a close the channel refuses new jobs but still yields the queued
    // ones, so everything accepted before the close is written.
    while let Some(first) = rx.blocking_recv() {
        let mut next = Some(first);
        while let Some(command) = next.take() {
            match command {
                Command::Job(job) => batch.push(job),
                Command::Close(reply) => {
                    close_replies.push(reply);
                    rx.close();
                }
            }
            if batch.len() < max_batch {
                next = rx.try_recv().ok();
            }
        }
        let (started, jobs) = (std::time::Instant::now(), batch.len());
        commit_batch(&conn, &mut batch, depth);
        ::metrics::histogram!("pigeon_store_commit_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        ::metrics::histogram!("pigeon_store_batch_jobs").record(jobs as f64);
    }
    conn.close();
    for reply in close_replies {
        let _ = reply.send(());
    }
}

/// Times a batch runs again after conflicts before its jobs fail.
const CONFLICT_RETRIES: u32 = 20;

/// Commits the batch as one transaction. Jobs run without savepoints (they
/// cost a page copy per page touched); if one fails, the transaction is
/// rolled back, that job gets its error, and the rest run again. A
/// conflict with another node's transaction (PostgreSQL's deadlock or
/// serialization failure) runs the whole batch again, a few times.
fn commit_batch(conn: &Connection, batch: &mut Vec<Box<dyn Job>>, depth: &QueueDepth) {
    let mut conflicts = 0;
    while !batch.is_empty() {
        rollups::discard();
        let outcome = (|| -> Result<Option<(usize, Run)>> {
            conn.begin()?;
            let failed = batch
                .iter_mut()
                .enumerate()
                .find_map(|(i, job)| match job.run(conn) {
                    Run::Done => None,
                    run => Some((i, run)),
                });
            if let Some(failed) = failed {
                // Some errors (a full disk mid-statement) end the
                // transaction themselves.
                if conn.in_transaction() {
                    conn.end(false)?;
                }
                return Ok(Some(failed));
            }
            let moved_parts = rollups::flush(conn)?;
            conn.end(true)?;
            depth.apply(&moved_parts);
            Ok(None)
        })();
        let conflicted = match &outcome {
            Ok(Some((_, Run::Conflict))) => true,
            Err(err) => err.is_conflict(),
            _ => false,
        };
        if conflicted && conflicts < CONFLICT_RETRIES {
            conflicts += 1;
            if conn.in_transaction() {
                let _ = conn.end(false);
            }
            ::metrics::counter!("pigeon_store_conflicts_total").increment(1);
            // A moment's pause, longer each time, lets the other commit go.
            std::thread::sleep(std::time::Duration::from_millis(u64::from(conflicts)));
            continue;
        }
        match outcome {
            Ok(None) => {
                for job in batch.drain(..) {
                    job.finish(Ok(()));
                }
            }
            Ok(Some((failed, _))) => batch.remove(failed).finish(Ok(())),
            Err(err) => {
                if let Some(suppressed) = COMMIT_FAILURE_LOG.allow() {
                    tracing::error!(error = %err, jobs = batch.len(), suppressed, "group commit failed");
                }
                if conn.in_transaction() {
                    let _ = conn.end(false);
                }
                let full = err.is_full();
                let failed = CommitFailed {
                    message: err.to_string(),
                    full,
                };
                for job in batch.drain(..) {
                    job.finish(Err(failed.clone()));
                }
            }
        }
    }
}
