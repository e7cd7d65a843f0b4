//! Waiting for the signals that ask a long-running command to stop.

/// Resolves on the first SIGINT (Ctrl-C) or SIGTERM (service managers, `kill`).
pub async fn signal() -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    tokio::select! {
        interrupted = tokio::signal::ctrl_c() => interrupted,
        _ = terminate.recv() => Ok(()),
    }
}
