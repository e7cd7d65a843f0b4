//! `hook.run`: one executable of an unpacked revision run to its end, as
//! Juju's uniter runs a charm's hook: found by its path in the revision
//! (`hooks/<endpoint>-relation-<kind>`), run in the revision with the
//! environment the caller gives, its outcome reported as data.
//!
//! A hook that does not exist is reported as [`HookRun::Missing`] without
//! running anything (Juju counts it a success); a hook that exists but is
//! not an executable regular file is an error.
//!
//! Invariants: the hook and its working directory resolve inside the
//! revision's directory (symlinks included); the hook leads a process group
//! of its own, and nothing of that group outlives the run: it is killed
//! when the timeout passes, when the hook exits, and when the run is
//! abandoned; what it writes is kept bounded, the tail of each stream.

mod args;
mod error;
mod group;
mod tail;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

use group::ProcessGroup;
use tail::Tail;

use super::artifact::ArtifactStore;

pub use args::{HookArgs, HookEnv, HookRun, InsidePath, InvalidEnv, InvalidPath};
pub use error::{HookError, Result};
pub use tail::Output;

/// How long a hook may run unless its request says otherwise: below the
/// provider's default task timeout, so that a hook running too long is
/// reported `timed_out` with its output rather than cut off by the provider
/// with none. A longer hook needs its `timeout` and its task's timeout
/// (`tasks.hook.run.timeout`) raised together.
pub const DEFAULT_TIMEOUT: Duration =
    crate::provider::DEFAULT_TIMEOUT.saturating_sub(Duration::from_secs(5));
/// How much of each of a hook's streams is kept, in bytes.
pub const DEFAULT_OUTPUT_LIMIT: usize = 64 * 1024;

/// How long output is still read once the hook's group is dead: only a
/// process that left the group can hold its pipes open by then, and the
/// run does not wait on it.
const DRAIN: Duration = Duration::from_secs(1);

/// How hooks are run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookConfig {
    /// The timeout of a request that gives none.
    pub default_timeout: Duration,
    /// How many bytes of each stream are kept (the last ones).
    pub output_limit: usize,
}

impl Default for HookConfig {
    fn default() -> Self {
        Self {
            default_timeout: DEFAULT_TIMEOUT,
            output_limit: DEFAULT_OUTPUT_LIMIT,
        }
    }
}

/// Runs hooks from the revisions an [`ArtifactStore`] holds.
#[derive(Debug, Clone)]
pub struct HookRunner {
    artifacts: ArtifactStore,
    config: HookConfig,
}

impl HookRunner {
    /// A runner for the revisions of `artifacts`.
    pub fn new(artifacts: ArtifactStore, config: HookConfig) -> Self {
        Self { artifacts, config }
    }

    /// `hook.run`: runs the hook to its end (or its timeout).
    pub async fn run(&self, args: HookArgs) -> Result<HookRun> {
        let dir = self
            .artifacts
            .revision_dir(&args.app, &args.revision)
            .ok_or_else(|| HookError::NotFetched {
                app: args.app.clone(),
                revision: args.revision.clone(),
            })?;
        let top = canonical(&dir).await?;
        let hook = dir.join(args.hook.as_path());
        let meta = match tokio::fs::metadata(&hook).await {
            Ok(meta) => meta,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Ok(HookRun::Missing);
            }
            Err(source) => return Err(HookError::Inspect { path: hook, source }),
        };
        let hook = inside(&top, &hook).await?;
        if !meta.is_file() {
            return Err(HookError::NotAFile { path: hook });
        }
        if meta.permissions().mode() & 0o111 == 0 {
            return Err(HookError::NotExecutable { path: hook });
        }
        let work = match &args.working_dir {
            Some(path) => dir.join(path.as_path()),
            None => dir,
        };
        let work = inside(&top, &work).await?;
        if !tokio::fs::metadata(&work)
            .await
            .is_ok_and(|meta| meta.is_dir())
        {
            return Err(HookError::NotADir { path: work });
        }
        let timeout = args.timeout.unwrap_or(self.config.default_timeout);
        run_process(&hook, &work, &args.env, timeout, self.config.output_limit).await
    }
}

async fn canonical(path: &Path) -> Result<PathBuf> {
    tokio::fs::canonicalize(path)
        .await
        .map_err(|source| HookError::Inspect {
            path: path.to_path_buf(),
            source,
        })
}

/// `path` resolved, if it stays under `top` (itself resolved).
async fn inside(top: &Path, path: &Path) -> Result<PathBuf> {
    let resolved = canonical(path).await?;
    if resolved.starts_with(top) {
        Ok(resolved)
    } else {
        Err(HookError::Escapes {
            path: path.to_path_buf(),
            resolved,
        })
    }
}

async fn run_process(
    hook: &Path,
    work: &Path,
    env: &HookEnv,
    timeout: Duration,
    limit: usize,
) -> Result<HookRun> {
    let mut child = Command::new(hook)
        .current_dir(work)
        .env_clear()
        .envs(env.vars())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| HookError::Spawn {
            path: hook.to_path_buf(),
            source,
        })?;
    let mut group = ProcessGroup::led_by(child.id());
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let ended = CancellationToken::new();
    let waited = async {
        let waited = match tokio::time::timeout(timeout, child.wait()).await {
            Ok(status) => status.map(Some),
            Err(_elapsed) => {
                group.kill();
                child.wait().await.map(|_| None)
            }
        };
        group.kill();
        ended.cancel();
        waited
    };
    let (waited, stdout, stderr) = tokio::join!(
        waited,
        capture(stdout, limit, &ended),
        capture(stderr, limit, &ended),
    );
    let status = waited.map_err(|source| HookError::Wait {
        path: hook.to_path_buf(),
        source,
    })?;
    Ok(match status {
        None => HookRun::TimedOut { stdout, stderr },
        Some(status) => match status.code() {
            Some(code) => HookRun::Exited {
                code,
                stdout,
                stderr,
            },
            None => HookRun::Signaled {
                signal: status
                    .signal()
                    .expect("on Unix, a process that exited without a code was killed by a signal"),
                stdout,
                stderr,
            },
        },
    })
}

/// Reads a stream to its end, keeping its tail; stops [`DRAIN`] after the
/// hook's group ended if something outside it still holds the stream.
async fn capture(
    stream: Option<impl AsyncRead + Unpin>,
    limit: usize,
    ended: &CancellationToken,
) -> Output {
    let mut tail = Tail::new(limit);
    let Some(mut stream) = stream else {
        return tail.into_output();
    };
    let drained = async {
        ended.cancelled().await;
        tokio::time::sleep(DRAIN).await;
    };
    tokio::pin!(drained);
    let mut buf = vec![0u8; 8192];
    loop {
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) => break,
                Ok(read) => tail.push(&buf[..read]),
                Err(error) => {
                    tracing::warn!(%error, "reading a hook's output; keeping what was read");
                    break;
                }
            },
            () = &mut drained => break,
        }
    }
    tail.into_output()
}
