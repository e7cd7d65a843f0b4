//! The socket layout, the one place that names and parses the files providers
//! are found by:
//!
//! ```text
//! <socket_dir>/<task>/<priority>-<provider>.sock   a provider's socket for a task
//! <socket_dir>/<task>/<priority>-<provider>.lock   held (flock) by its live owner
//! <socket_dir>/response/<caller>-<uuid>.sock       a caller's response hook
//! ```
//!
//! Routing order is the **numeric** priority, highest first, ties broken by
//! provider name (acomm sorted file names, so `100-x` came before `50-y`).
//! Invariants: [`Layout::candidates`] returns sockets in routing order; a
//! task or provider name is one safe path segment, so no name reaches outside
//! its directory.

use std::cmp::Reverse;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use super::lock::{self, Liveness};

/// The directory of caller response hooks, which no task may be named.
pub const RESPONSE_DIR: &str = "response";

/// The longest socket path a unix socket address holds (`sun_path` is 108
/// bytes on Linux, one of which ends the string).
pub const MAX_SOCKET_PATH: usize = 107;

/// A provider's routing priority (higher is preferred).
pub type Priority = u32;

/// The socket layout under one socket directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// The layout under `socket_dir`.
    pub fn new(socket_dir: impl Into<PathBuf>) -> Self {
        Self {
            root: socket_dir.into(),
        }
    }

    /// The socket directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of `task`'s sockets.
    pub fn task_dir(&self, task: &str) -> PathBuf {
        self.root.join(task)
    }

    /// Where `provider` serves `task` at `priority`.
    pub fn socket(&self, task: &str, priority: Priority, provider: &str) -> SocketPaths {
        let dir = self.task_dir(task);
        SocketPaths {
            socket: dir.join(format!("{priority}-{provider}.sock")),
            lock: dir.join(format!("{priority}-{provider}.lock")),
        }
    }

    /// The directory of caller response hooks.
    pub fn response_dir(&self) -> PathBuf {
        self.root.join(RESPONSE_DIR)
    }

    /// `task`'s sockets in routing order, each with its owner's liveness; none
    /// when the task's directory does not exist.
    pub fn candidates(&self, task: &str) -> io::Result<Vec<Candidate>> {
        let dir = self.task_dir(task);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(error),
        };
        let mut candidates = Vec::new();
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            let Some((priority, provider)) = name.to_str().and_then(parse_socket_name) else {
                continue;
            };
            let paths = self.socket(task, priority, provider);
            candidates.push(Candidate {
                task: task.to_owned(),
                priority,
                provider: provider.to_owned(),
                liveness: lock::probe(&paths.lock),
                socket: paths.socket,
            });
        }
        routing_order(&mut candidates);
        Ok(candidates)
    }

    /// Every task's sockets, tasks by name, each task's in routing order.
    pub fn list(&self) -> io::Result<Vec<Candidate>> {
        let entries = match std::fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(error),
        };
        let mut tasks = Vec::new();
        for entry in entries {
            let entry = entry?;
            if !entry.file_type()?.is_dir() {
                continue;
            }
            if let Some(task) = entry.file_name().to_str()
                && check_task_name(task).is_ok()
            {
                tasks.push(task.to_owned());
            }
        }
        tasks.sort();
        let mut all = Vec::new();
        for task in tasks {
            all.extend(self.candidates(&task)?);
        }
        Ok(all)
    }
}

/// A provider's socket and the lock beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketPaths {
    /// The unix socket requests are sent to.
    pub socket: PathBuf,
    /// The lock its live owner holds.
    pub lock: PathBuf,
}

/// A socket found for a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The task it serves.
    pub task: String,
    /// Its routing priority.
    pub priority: Priority,
    /// The provider's name.
    pub provider: String,
    /// The socket's path.
    pub socket: PathBuf,
    /// Whether its owner is alive, as its lock tells.
    pub liveness: Liveness,
}

impl fmt::Display for Candidate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.priority, self.provider)
    }
}

/// Sorts by priority, highest first, then by provider name.
pub fn routing_order(candidates: &mut [Candidate]) {
    candidates.sort_by(|a, b| {
        (Reverse(a.priority), &a.provider).cmp(&(Reverse(b.priority), &b.provider))
    });
}

/// Reads `<priority>-<provider>.sock`; `None` for any other file name.
pub fn parse_socket_name(file_name: &str) -> Option<(Priority, &str)> {
    let stem = file_name.strip_suffix(".sock")?;
    let (priority, provider) = stem.split_once('-')?;
    if priority.is_empty() || !priority.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    check_provider_name(provider).ok()?;
    Some((priority.parse().ok()?, provider))
}

/// Why a task or provider name cannot be a path segment of the layout.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is empty.
    #[error("{kind} name is empty")]
    Empty {
        /// `task` or `provider`.
        kind: &'static str,
    },
    /// A character outside `A-Z a-z 0-9 . _ -`.
    #[error(
        "{kind} name {name:?} has {found:?}: only letters, digits, '.', '_' and '-' are allowed"
    )]
    Character {
        /// `task` or `provider`.
        kind: &'static str,
        /// The name.
        name: String,
        /// The first character refused.
        found: char,
    },
    /// A name starting with `.` (hidden files, `.` and `..`) or `-`.
    #[error("{kind} name {name:?} starts with {found:?}")]
    Start {
        /// `task` or `provider`.
        kind: &'static str,
        /// The name.
        name: String,
        /// Its first character.
        found: char,
    },
    /// The task name the response hooks' directory takes.
    #[error("task name {RESPONSE_DIR:?} is reserved for response hooks")]
    Reserved,
}

/// Checks that `task` names a task directory (e.g. `instance.start`).
pub fn check_task_name(task: &str) -> Result<(), NameError> {
    check_segment("task", task)?;
    if task == RESPONSE_DIR {
        return Err(NameError::Reserved);
    }
    Ok(())
}

/// Checks that `provider` can name a provider's socket.
pub fn check_provider_name(provider: &str) -> Result<(), NameError> {
    check_segment("provider", provider)
}

fn check_segment(kind: &'static str, name: &str) -> Result<(), NameError> {
    let Some(first) = name.chars().next() else {
        return Err(NameError::Empty { kind });
    };
    if let Some(found) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(NameError::Character {
            kind,
            name: name.into(),
            found,
        });
    }
    if matches!(first, '.' | '-') {
        return Err(NameError::Start {
            kind,
            name: name.into(),
            found: first,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(priority: Priority, provider: &str) -> Candidate {
        Candidate {
            task: "t".into(),
            priority,
            provider: provider.into(),
            socket: PathBuf::new(),
            liveness: Liveness::Unlocked,
        }
    }

    #[test]
    fn routing_is_by_numeric_priority_highest_first_then_by_name() {
        let mut candidates = vec![
            candidate(9, "a"),
            candidate(50, "y"),
            candidate(100, "x"),
            candidate(50, "b"),
            candidate(43, "a"),
            candidate(56, "b"),
        ];
        routing_order(&mut candidates);
        let order: Vec<String> = candidates.iter().map(ToString::to_string).collect();
        assert_eq!(order, ["100-x", "56-b", "50-b", "50-y", "43-a", "9-a"]);
    }

    #[test]
    fn socket_names_parse_to_priority_and_provider() {
        let cases = [
            ("50-exec.sock", Some((50, "exec"))),
            ("100-my-provider.sock", Some((100, "my-provider"))),
            ("007-bond.sock", Some((7, "bond"))),
            ("50-exec.lock", None),
            ("exec.sock", None),
            ("-exec.sock", None),
            ("x5-exec.sock", None),
            ("+5-exec.sock", None),
            ("50-.sock", None),
            ("50-.hidden.sock", None),
            ("99999999999-big.sock", None),
        ];
        for (name, expected) in cases {
            assert_eq!(parse_socket_name(name), expected, "{name}");
        }
    }

    #[test]
    fn names_are_single_safe_segments() {
        for good in ["instance.start", "hook.run", "a_b-c.9"] {
            assert_eq!(check_task_name(good), Ok(()), "{good}");
        }
        let bad = [
            ("", "is empty"),
            ("..", "starts with '.'"),
            (".hidden", "starts with '.'"),
            ("-x", "starts with '-'"),
            ("a/b", "has '/'"),
            ("a b", "has ' '"),
            ("response", "reserved"),
        ];
        for (name, expected) in bad {
            let error = check_task_name(name).expect_err(name).to_string();
            assert!(error.contains(expected), "{name:?}: {error}");
        }
        assert_eq!(check_provider_name("response"), Ok(()));
    }

    #[test]
    fn a_socket_and_its_lock_sit_side_by_side_in_the_task_directory() {
        let layout = Layout::new("/run/p");
        let paths = layout.socket("instance.start", 50, "exec");
        assert_eq!(
            paths.socket,
            Path::new("/run/p/instance.start/50-exec.sock")
        );
        assert_eq!(paths.lock, Path::new("/run/p/instance.start/50-exec.lock"));
        assert_eq!(layout.response_dir(), Path::new("/run/p/response"));
    }
}
