//! Which entries of a revision's archive (or source directory) may be
//! unpacked, judged before anything is written: no entry may put a file, or
//! a link that resolves, outside the revision's directory.
//!
//! [`Tree::admit`] judges each entry as it comes: its path is relative with
//! no `..` component; it does not pass through a symlink made earlier (so no
//! write lands outside through one) and does not repeat an earlier path (so
//! no write replaces a symlink or follows one); a symlink's target does not
//! climb above the directory as written; a hardlink names an earlier regular
//! file; fifos, devices and other special files are refused. When every
//! entry is in, [`Tree::check_links`] resolves each symlink as the kernel
//! would, through the tree's other symlinks, and refuses if one leads out:
//! `s -> .` and `t -> s/../etc` each look harmless alone, but `t` is `../etc`.
//!
//! Invariant: in a tree whose entries were all admitted and whose links
//! check, every path and every symlink's resolution is inside the directory.
//! The tree is the whole content of a fresh directory, so nothing outside
//! what was admitted can take part in a resolution.

use std::collections::{BTreeMap, VecDeque};
use std::ffi::OsStr;
use std::path::{Component, Path, PathBuf};

/// Linux's own limit on symlinks followed in one resolution (`MAXSYMLINKS`).
const MAX_LINK_HOPS: usize = 40;

/// What an entry is, as far as unpacking it safely is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link to `target`, relative to the link's own directory.
    Symlink { target: PathBuf },
    /// A hard link to `target`, relative to the top of the tree.
    Hardlink { target: PathBuf },
    /// Anything else (fifo, device, socket, sparse file): never unpacked.
    Special(&'static str),
}

/// Why an entry (or a hook's path) is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The path starts at the root of the file system.
    #[error("is an absolute path")]
    Absolute,
    /// The path has a `..` component.
    #[error("has a `..` component")]
    ParentDir,
    /// The path names the directory itself, where a file was expected.
    #[error("has an empty path")]
    Empty,
    /// The entry is a fifo, a device or another special file.
    #[error("is a {0}")]
    Special(&'static str),
    /// The path passes through a symlink the archive made.
    #[error("passes through the symlink {}", .0.display())]
    ThroughSymlink(PathBuf),
    /// The path passes through a file the archive made.
    #[error("is inside {}, which is not a directory", .0.display())]
    ParentNotDir(PathBuf),
    /// The path was already unpacked, as something other than a directory.
    #[error("appears twice")]
    Duplicate,
    /// The symlink resolves outside the directory (or is absolute).
    #[error("links to {}, outside the directory", .0.display())]
    LinkEscapes(PathBuf),
    /// The symlink has an empty target.
    #[error("is a symlink with an empty target")]
    EmptyTarget,
    /// The hard link's target is not a regular file unpacked before it.
    #[error("is a hard link to {}, which is not an earlier regular file", .0.display())]
    HardlinkTarget(PathBuf),
    /// The symlink is part of a cycle or of too long a chain to resolve.
    #[error("is a symlink in a cycle or in a chain of more than {MAX_LINK_HOPS} links")]
    TooManyLinks,
}

/// `path` with `.` components dropped, if it is relative and has no `..`:
/// the form every path inside a revision's directory takes. The empty path
/// (the directory itself) is returned as such; callers decide if it may be.
pub(crate) fn relative_path(path: &Path) -> Result<PathBuf, Refusal> {
    let mut clean = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Prefix(_) | Component::RootDir => return Err(Refusal::Absolute),
            Component::ParentDir => return Err(Refusal::ParentDir),
            Component::CurDir => {}
            Component::Normal(name) => clean.push(name),
        }
    }
    Ok(clean)
}

/// Whether `target`, read from the directory `from` (a clean relative
/// path), stays inside the tree as written, without following any link.
fn lexically_inside(from: &Path, target: &Path) -> bool {
    let mut depth = from.components().count();
    for component in target.components() {
        match component {
            Component::Prefix(_) | Component::RootDir => return false,
            Component::CurDir => {}
            Component::ParentDir => match depth.checked_sub(1) {
                Some(up) => depth = up,
                None => return false,
            },
            Component::Normal(_) => depth += 1,
        }
    }
    true
}

/// What an admitted path is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Dir,
    /// A regular file, or a hard link to one.
    File,
    Symlink(PathBuf),
}

/// The entries admitted so far, by clean relative path (directories that
/// entries' paths imply included).
#[derive(Debug, Default)]
pub(crate) struct Tree {
    nodes: BTreeMap<PathBuf, Node>,
}

impl Tree {
    /// Admits an entry: its clean relative path, or `None` for the
    /// directory itself (an archive's `./`), which needs no unpacking.
    pub(crate) fn admit(
        &mut self,
        path: &Path,
        kind: &EntryKind,
    ) -> Result<Option<PathBuf>, Refusal> {
        if let EntryKind::Special(what) = kind {
            return Err(Refusal::Special(what));
        }
        let path = relative_path(path)?;
        if path.as_os_str().is_empty() {
            return match kind {
                EntryKind::Dir => Ok(None),
                _ => Err(Refusal::Empty),
            };
        }
        let mut ancestors: Vec<&Path> = path
            .ancestors()
            .skip(1)
            .filter(|ancestor| !ancestor.as_os_str().is_empty())
            .collect();
        ancestors.reverse();
        for ancestor in &ancestors {
            match self.nodes.get(*ancestor) {
                Some(Node::Symlink(_)) => {
                    return Err(Refusal::ThroughSymlink(ancestor.to_path_buf()));
                }
                Some(Node::File) => return Err(Refusal::ParentNotDir(ancestor.to_path_buf())),
                Some(Node::Dir) | None => {}
            }
        }
        match (self.nodes.get(&path), kind) {
            (Some(Node::Dir), EntryKind::Dir) => return Ok(Some(path)),
            (Some(_), _) => return Err(Refusal::Duplicate),
            (None, _) => {}
        }
        let node = match kind {
            EntryKind::Dir => Node::Dir,
            EntryKind::File => Node::File,
            EntryKind::Symlink { target } => {
                if target.as_os_str().is_empty() {
                    return Err(Refusal::EmptyTarget);
                }
                let from = path.parent().unwrap_or(Path::new(""));
                if !lexically_inside(from, target) {
                    return Err(Refusal::LinkEscapes(target.clone()));
                }
                Node::Symlink(target.clone())
            }
            EntryKind::Hardlink { target } => match relative_path(target) {
                Ok(clean) if self.nodes.get(&clean) == Some(&Node::File) => Node::File,
                _ => return Err(Refusal::HardlinkTarget(target.clone())),
            },
            EntryKind::Special(what) => return Err(Refusal::Special(what)),
        };
        for ancestor in ancestors {
            self.nodes
                .entry(ancestor.to_path_buf())
                .or_insert(Node::Dir);
        }
        self.nodes.insert(path.clone(), node);
        Ok(Some(path))
    }

    /// Resolves every symlink of the tree; the first that leads outside (or
    /// cannot be resolved) is returned with its path.
    pub(crate) fn check_links(&self) -> Result<(), (PathBuf, Refusal)> {
        for (path, node) in &self.nodes {
            if let Node::Symlink(target) = node {
                self.resolve(path, target)
                    .map_err(|refusal| (path.clone(), refusal))?;
            }
        }
        Ok(())
    }

    /// Follows the link at `link` as path resolution would: component by
    /// component from the link's directory, each symlink met replaced by its
    /// target. Names the tree does not hold are plain names (a dangling link
    /// is harmless: nothing outside the tree is ever created through it).
    fn resolve(&self, link: &Path, target: &Path) -> Result<(), Refusal> {
        let escapes = || Refusal::LinkEscapes(target.to_path_buf());
        let mut at: Vec<&OsStr> = link
            .parent()
            .map(|parent| parent.iter().collect())
            .unwrap_or_default();
        let mut pending: VecDeque<Component<'_>> = target.components().collect();
        let mut hops = 1;
        while let Some(component) = pending.pop_front() {
            match component {
                Component::Prefix(_) | Component::RootDir => return Err(escapes()),
                Component::CurDir => {}
                Component::ParentDir => {
                    at.pop().ok_or_else(escapes)?;
                }
                Component::Normal(name) => {
                    at.push(name);
                    let here: PathBuf = at.iter().collect();
                    if let Some(Node::Symlink(next)) = self.nodes.get(&here) {
                        hops += 1;
                        if hops > MAX_LINK_HOPS {
                            return Err(Refusal::TooManyLinks);
                        }
                        at.pop();
                        for component in next.components().rev() {
                            pending.push_front(component);
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
