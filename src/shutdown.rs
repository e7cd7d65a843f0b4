//! Waiting for the signals that ask a long-running command to stop.
//!
//! Handlers are installed when a [`Shutdown`] is made, not when it is first
//! awaited, so a signal that arrives during start-up is not lost (and does not
//! kill the process with its children still running).

use tokio::signal::unix::{Signal, SignalKind, signal};

/// Installed SIGINT and SIGTERM handlers.
#[derive(Debug)]
pub struct Shutdown {
    interrupt: Signal,
    terminate: Signal,
}

impl Shutdown {
    /// Installs the handlers; from now on the signals no longer kill the process.
    pub fn install() -> std::io::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// Resolves on the first SIGINT (Ctrl-C) or SIGTERM (service managers, `kill`)
    /// received since [`install`](Self::install).
    pub async fn requested(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}
