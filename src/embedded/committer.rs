//! The embedded registry's database thread: it commits to the database what
//! the writer has already made durable in the write-ahead log and answered.
//!
//! A database commit, and still more a synced one, costs more the larger
//! the database; on a thread of its own it never stands between a write
//! and its answer. The writer hands it each batch it appended; the thread
//! commits them together once writes pause (or enough have gathered), and
//! syncs every so often. The one thing the writer waits for is a
//! checkpoint, when its write-ahead log has grown enough to start over:
//! everything appended must be synced in the database first.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::log::{Batch, Log, LogError};
use super::metrics::RegistryMetrics;

/// How long the thread waits for more batches before it commits those it
/// has: a commit per batch would cost more than the batches' writes.
const APPLY_DELAY: Duration = Duration::from_millis(1);
/// How many batches wait for a commit at most, when writes never pause.
const MAX_UNAPPLIED: usize = 256;
/// Batches committed between two synced commits at most: a synced commit
/// writes every page dirtied since the last, so a small one often costs
/// less than a large one seldom (measured with `cargo bench --bench
/// registries`: 16, 64 and 1,024 tried).
const CHECKPOINT_BATCHES: usize = 64;

/// Work for the database thread, done in the order sent.
#[derive(Debug)]
enum Job {
    /// A batch durable in the write-ahead log, with its number.
    Apply(Batch, u64),
    /// Commit and sync everything sent before; answered with the number of
    /// the last batch synced.
    Checkpoint(std::sync::mpsc::SyncSender<Result<u64, CommitError>>),
    /// Commit and sync everything sent before, then give the database's
    /// free pages back to the file system.
    Defragment(oneshot::Sender<Result<(), LogError>>),
    /// Commit and sync everything sent before, then stop.
    Stop,
}

/// Why the database thread did not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// The database failed to do it.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The database failed to sync (what it said is logged), and the
    /// thread stopped.
    #[error("the registry's database could not be synced")]
    Failed,
    /// The thread stopped (its database failed earlier, or the node stopped).
    #[error("the registry's database thread has stopped")]
    Stopped,
}

/// A handle on the database thread, cheap to clone.
#[derive(Debug, Clone)]
pub struct Committer {
    jobs: Sender<Job>,
    /// The database file's size, as last measured (when it can change:
    /// after a commit, a defragmentation), for `Status` without a syscall.
    size: Arc<AtomicU64>,
}

impl Committer {
    /// Starts the thread with `log`. It cancels `failed` if the database
    /// cannot be written, since the node cannot go on without it.
    pub fn start(
        log: Log,
        metrics: RegistryMetrics,
        failed: CancellationToken,
    ) -> std::io::Result<(Self, std::thread::JoinHandle<()>)> {
        let (jobs, queue) = std::sync::mpsc::channel();
        let committer = Self {
            jobs,
            size: Arc::default(),
        };
        committer.measure(&log, &metrics);
        let thread_committer = committer.clone();
        let thread = std::thread::Builder::new()
            .name("registry-database".into())
            .spawn(move || {
                if let Err(error) = thread_committer.run(log, &queue, &metrics) {
                    tracing::error!(%error, "cannot write the registry's database; stopping");
                    failed.cancel();
                }
            })?;
        Ok((committer, thread))
    }

    /// The database file's size, for Maintenance `Status`.
    pub fn size(&self) -> u64 {
        self.size.load(Ordering::Relaxed)
    }

    /// Hands over a batch appended to the write-ahead log as number `seq`.
    pub fn apply(&self, batch: Batch, seq: u64) -> Result<(), CommitError> {
        self.send(Job::Apply(batch, seq))
    }

    /// Waits until every batch handed over is synced in the database, and
    /// returns the last one's number (blocking: for the writer's thread).
    pub fn checkpoint(&self) -> Result<u64, CommitError> {
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        self.send(Job::Checkpoint(reply))?;
        answer.recv().map_err(|_| CommitError::Stopped)?
    }

    /// Gives the database's free pages back to the file system (Maintenance
    /// `Defragment`), once every batch handed over is in it.
    pub async fn defragment(&self) -> Result<(), CommitError> {
        let (reply, answer) = oneshot::channel();
        self.send(Job::Defragment(reply))?;
        Ok(answer.await.map_err(|_| CommitError::Stopped)??)
    }

    /// Asks the thread to commit and sync what it has, then stop.
    pub fn stop(&self) {
        // A thread stopped already has nothing left to commit.
        let _ = self.send(Job::Stop);
    }

    fn send(&self, job: Job) -> Result<(), CommitError> {
        self.jobs.send(job).map_err(|_| CommitError::Stopped)
    }

    fn measure(&self, log: &Log, metrics: &RegistryMetrics) {
        let size = log.size();
        self.size.store(size, Ordering::Relaxed);
        metrics.sized(size);
    }

    /// The thread: until told to stop, or the database fails.
    fn run(
        &self,
        mut log: Log,
        queue: &Receiver<Job>,
        metrics: &RegistryMetrics,
    ) -> Result<(), LogError> {
        let mut database = Pending {
            log: &mut log,
            unapplied: Vec::new(),
            unsynced: 0,
        };
        loop {
            let job = if database.unapplied.is_empty() {
                queue.recv().ok()
            } else {
                match queue.recv_timeout(APPLY_DELAY) {
                    Ok(job) => Some(job),
                    Err(RecvTimeoutError::Timeout) => {
                        database.commit()?;
                        self.measure(database.log, metrics);
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => None,
                }
            };
            match job {
                Some(Job::Apply(batch, seq)) => {
                    database.unapplied.push((batch, seq));
                    if database.unapplied.len() >= MAX_UNAPPLIED {
                        database.commit()?;
                        self.measure(database.log, metrics);
                    }
                }
                // The writer waits for the answer (it stops without one).
                Some(Job::Checkpoint(reply)) => match database.sync() {
                    Ok(synced) => {
                        let _ = reply.send(Ok(synced));
                        self.measure(database.log, metrics);
                    }
                    Err(error) => {
                        let _ = reply.send(Err(CommitError::Failed));
                        return Err(error);
                    }
                },
                Some(Job::Defragment(reply)) => {
                    let defragmented = database.sync().and_then(|_| database.log.defragment());
                    self.measure(database.log, metrics);
                    // Whoever asked may have gone away.
                    let _ = reply.send(defragmented);
                }
                Some(Job::Stop) | None => {
                    database.sync()?;
                    return Ok(());
                }
            }
        }
    }
}

/// The database and what was handed over but is not yet in it, or not yet
/// synced.
struct Pending<'a> {
    log: &'a mut Log,
    unapplied: Vec<(Batch, u64)>,
    unsynced: usize,
}

impl Pending<'_> {
    /// Commits what waits, in one transaction; syncs every
    /// [`CHECKPOINT_BATCHES`].
    fn commit(&mut self) -> Result<(), LogError> {
        self.log.apply(&self.unapplied)?;
        self.unsynced += self.unapplied.len();
        self.unapplied.clear();
        if self.unsynced >= CHECKPOINT_BATCHES {
            self.log.checkpoint()?;
            self.unsynced = 0;
        }
        Ok(())
    }

    /// Commits what waits and syncs; returns the last batch's number.
    fn sync(&mut self) -> Result<u64, LogError> {
        self.log.apply(&self.unapplied)?;
        self.unapplied.clear();
        let synced = self.log.checkpoint()?;
        self.unsynced = 0;
        Ok(synced)
    }
}
