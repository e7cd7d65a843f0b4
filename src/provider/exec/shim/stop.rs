//! The stop sequence: SIGTERM to the whole group, the kill timeout, then
//! SIGKILL to the whole group (and its cgroup).
//!
//! Invariant: SIGKILL is sent if and only if the workload has not exited
//! when the kill timeout runs out after SIGTERM, and the sequence ends only
//! with the workload's exit.

use std::future::Future;
use std::time::Duration;

/// The signals a stop sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopSignal {
    /// Asks the group to terminate.
    Terminate,
    /// Kills the group (and the cgroup, where there is one).
    Kill,
}

/// Whatever receives a stop's signals: the workload's process group.
pub trait Signalled {
    /// Sends `signal` to every process of the workload; best effort.
    fn signal(&self, signal: StopSignal);
}

/// How a stop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The workload exited within the kill timeout after SIGTERM.
    Terminated,
    /// It had to be killed.
    Killed,
}

/// Runs the stop sequence on `group`, `exited` being the workload's exit;
/// returns the exit and how the stop ended.
pub async fn stop<G, F>(group: &G, exited: &mut F, kill_timeout: Duration) -> (F::Output, Ended)
where
    G: Signalled,
    F: Future + Unpin,
{
    group.signal(StopSignal::Terminate);
    tokio::select! {
        exit = &mut *exited => return (exit, Ended::Terminated),
        () = tokio::time::sleep(kill_timeout) => {}
    }
    group.signal(StopSignal::Kill);
    (exited.await, Ended::Killed)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tokio::sync::oneshot;
    use tokio::time::Instant;

    use super::*;

    /// A workload that exits on the first signal it does not ignore.
    struct Fake {
        ignores_term: bool,
        exit: Mutex<Option<oneshot::Sender<StopSignal>>>,
        sent: Mutex<Vec<(StopSignal, Duration)>>,
        start: Instant,
    }

    impl Fake {
        fn new(ignores_term: bool) -> (Self, oneshot::Receiver<StopSignal>) {
            let (tx, rx) = oneshot::channel();
            let fake = Self {
                ignores_term,
                exit: Mutex::new(Some(tx)),
                sent: Mutex::new(Vec::new()),
                start: Instant::now(),
            };
            (fake, rx)
        }
    }

    impl Signalled for Fake {
        fn signal(&self, signal: StopSignal) {
            let at = self.start.elapsed();
            self.sent.lock().expect("not poisoned").push((signal, at));
            let obeys = signal == StopSignal::Kill || !self.ignores_term;
            if obeys && let Some(exit) = self.exit.lock().expect("not poisoned").take() {
                let _ = exit.send(signal);
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_workload_that_terminates_is_not_killed() {
        let (fake, mut exited) = Fake::new(false);
        let (exit, ended) = stop(&fake, &mut exited, Duration::from_secs(10)).await;
        assert_eq!(
            (exit.ok(), ended),
            (Some(StopSignal::Terminate), Ended::Terminated)
        );
        let sent = fake.sent.lock().expect("not poisoned").clone();
        assert_eq!(sent, vec![(StopSignal::Terminate, Duration::ZERO)]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_workload_ignoring_sigterm_is_killed_at_the_kill_timeout() {
        let (fake, mut exited) = Fake::new(true);
        let (exit, ended) = stop(&fake, &mut exited, Duration::from_secs(10)).await;
        assert_eq!((exit.ok(), ended), (Some(StopSignal::Kill), Ended::Killed));
        let sent = fake.sent.lock().expect("not poisoned").clone();
        assert_eq!(
            sent,
            vec![
                (StopSignal::Terminate, Duration::ZERO),
                (StopSignal::Kill, Duration::from_secs(10)),
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_zero_kill_timeout_kills_at_once() {
        let (fake, mut exited) = Fake::new(true);
        let (_, ended) = stop(&fake, &mut exited, Duration::ZERO).await;
        assert_eq!(ended, Ended::Killed);
    }
}
