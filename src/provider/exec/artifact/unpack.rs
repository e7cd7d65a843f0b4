//! Unpacking a revision into a fresh directory: from a gzip-compressed tar
//! (digesting it on the way) or by copying a source directory.
//!
//! Every entry is judged by [`Tree`] before anything of it is written, and
//! the links of the whole tree are resolved before the caller may promote
//! it; the total size of regular files is bounded. Nothing keeps an owner,
//! a set-id bit or a group- or world-write bit, and directories are always
//! their owner's to fill and to remove: the tree is this process's user's,
//! and only it may change it.
//!
//! This is blocking file work, run off the async runtime.

use std::fs::{self, File};
use std::io::{self, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use url::Url;

use super::digest::{HashingReader, Sha256};
use super::entry::{EntryKind, Refusal, Tree};
use super::error::{ArtifactError, Result};

/// Mode bits never kept: set-id and sticky bits, group and world write.
const MODE_MASK: u32 = 0o7022;

/// Unpacks the archive at `path` into `into` (which must not exist), and
/// returns the archive's digest. When `expected` is given and the archive
/// is not it, that mismatch is the error, whatever else went wrong: the
/// content is not the one asked for, so its entries are not worth judging.
pub(crate) fn unpack_archive(
    url: &Url,
    path: &Path,
    into: &Path,
    max_bytes: u64,
    expected: Option<&Sha256>,
) -> Result<Sha256> {
    let file = File::open(path).map_err(|source| ArtifactError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    // The buffer is below the hasher, so every byte reaches the digest once.
    let mut hashing = HashingReader::new(BufReader::new(file));
    let unpacked = unpack_entries(url, &mut hashing, into, max_bytes);
    let digest = hashing
        .finish()
        .map_err(|source| ArtifactError::ReadArchive {
            url: url.to_string(),
            source,
        });
    match (expected, digest) {
        (Some(expected), Ok(actual)) if *expected != actual => Err(ArtifactError::DigestMismatch {
            url: url.to_string(),
            expected: expected.clone(),
            actual,
        }),
        (_, digest) => unpacked.and(digest),
    }
}

fn unpack_entries(url: &Url, input: impl io::Read, into: &Path, max_bytes: u64) -> Result<()> {
    let read_error = |source| ArtifactError::ReadArchive {
        url: url.to_string(),
        source,
    };
    let mut archive = tar::Archive::new(flate2::read::MultiGzDecoder::new(input));
    archive.set_overwrite(false);
    archive.set_preserve_ownerships(false);
    archive.set_preserve_permissions(false);
    archive.set_unpack_xattrs(false);
    archive.set_mask(MODE_MASK);
    let mut writer = Writer::new(url, into, max_bytes)?;
    for entry in archive.entries().map_err(read_error)? {
        let mut entry = entry.map_err(read_error)?;
        let name = entry.path().map_err(read_error)?.into_owned();
        let link = || -> Result<PathBuf> {
            Ok(entry
                .link_name()
                .map_err(read_error)?
                .map(|target| target.into_owned())
                .unwrap_or_default())
        };
        let kind = match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => EntryKind::File,
            tar::EntryType::Directory => EntryKind::Dir,
            tar::EntryType::Symlink => EntryKind::Symlink { target: link()? },
            tar::EntryType::Link => EntryKind::Hardlink { target: link()? },
            // A global header describes the archive (git archive writes its
            // commit in one), not a file.
            tar::EntryType::XGlobalHeader => continue,
            tar::EntryType::Char => EntryKind::Special("character device"),
            tar::EntryType::Block => EntryKind::Special("block device"),
            tar::EntryType::Fifo => EntryKind::Special("fifo"),
            tar::EntryType::GNUSparse => EntryKind::Special("sparse file"),
            _ => EntryKind::Special("entry of an unknown type"),
        };
        let Some(clean) = writer.admit(&name, &kind, entry.size())? else {
            continue;
        };
        if kind == EntryKind::Dir {
            writer.dir(&name, &clean, entry.header().mode().map_err(read_error)?)?;
            continue;
        }
        let unpack_error = |source| ArtifactError::Unpack {
            url: url.to_string(),
            entry: name.clone(),
            source,
        };
        // The tar crate checks again that the entry lands inside `into`;
        // `false` means it refused, which the tree's rules already exclude.
        if !entry.unpack_in(into).map_err(unpack_error)? {
            return Err(writer.unsafe_entry(name, Refusal::ParentDir));
        }
    }
    writer.finish()
}

/// Copies the directory `from` into `into` (which must not exist), under
/// the same rules as an archive: symlinks are copied as links, and judged.
pub(crate) fn copy_dir(url: &Url, from: &Path, into: &Path, max_bytes: u64) -> Result<()> {
    let mut writer = Writer::new(url, into, max_bytes)?;
    let open_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ArtifactError::Open { path, source }
    };
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        let source_dir = from.join(&relative);
        let mut children: Vec<_> = fs::read_dir(&source_dir)
            .and_then(|listing| listing.collect::<io::Result<Vec<_>>>())
            .map_err(open_error(&source_dir))?;
        children.sort_by_key(|child| child.file_name());
        for child in children {
            let name = relative.join(child.file_name());
            let source = child.path();
            let meta = fs::symlink_metadata(&source).map_err(open_error(&source))?;
            let file_type = meta.file_type();
            let kind = if file_type.is_dir() {
                EntryKind::Dir
            } else if file_type.is_file() {
                EntryKind::File
            } else if file_type.is_symlink() {
                let target = fs::read_link(&source).map_err(open_error(&source))?;
                EntryKind::Symlink { target }
            } else {
                EntryKind::Special(special_kind(&file_type))
            };
            let Some(clean) = writer.admit(&name, &kind, meta.len())? else {
                continue;
            };
            let dest = into.join(&clean);
            let copy_error = |source| ArtifactError::Unpack {
                url: url.to_string(),
                entry: name.clone(),
                source,
            };
            match kind {
                EntryKind::Dir => {
                    writer.dir(&name, &clean, meta.permissions().mode())?;
                    pending.push(name.clone());
                }
                EntryKind::File => {
                    fs::copy(&source, &dest).map_err(copy_error)?;
                    let mode = meta.permissions().mode() & 0o777 & !MODE_MASK;
                    fs::set_permissions(&dest, fs::Permissions::from_mode(mode))
                        .map_err(copy_error)?;
                }
                EntryKind::Symlink { target } => {
                    std::os::unix::fs::symlink(target, &dest).map_err(copy_error)?;
                }
                EntryKind::Hardlink { .. } | EntryKind::Special(_) => {
                    unreachable!(
                        "a directory walk yields no hard links, and the tree refuses special files"
                    )
                }
            }
        }
    }
    writer.finish()
}

fn special_kind(file_type: &fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if file_type.is_fifo() {
        "fifo"
    } else if file_type.is_socket() {
        "socket"
    } else if file_type.is_char_device() {
        "character device"
    } else if file_type.is_block_device() {
        "block device"
    } else {
        "file of an unknown type"
    }
}

/// What unpacking into one directory keeps track of: the tree admitted so
/// far, the bytes written, and the directories' modes to set at the end.
struct Writer<'a> {
    url: &'a Url,
    into: &'a Path,
    max_bytes: u64,
    written: u64,
    tree: Tree,
}

impl<'a> Writer<'a> {
    fn new(url: &'a Url, into: &'a Path, max_bytes: u64) -> Result<Self> {
        fs::create_dir(into).map_err(|source| ArtifactError::CreateDir {
            path: into.to_path_buf(),
            source,
        })?;
        Ok(Self {
            url,
            into,
            max_bytes,
            written: 0,
            tree: Tree::default(),
        })
    }

    fn unsafe_entry(&self, entry: PathBuf, reason: Refusal) -> ArtifactError {
        ArtifactError::UnsafeEntry {
            url: self.url.to_string(),
            entry,
            reason,
        }
    }

    /// Judges an entry and counts its bytes; its clean path, or `None` when
    /// there is nothing to write (the top directory).
    fn admit(&mut self, name: &Path, kind: &EntryKind, size: u64) -> Result<Option<PathBuf>> {
        let clean = self
            .tree
            .admit(name, kind)
            .map_err(|reason| self.unsafe_entry(name.to_path_buf(), reason))?;
        if *kind == EntryKind::File {
            self.written = self.written.saturating_add(size);
            if self.written > self.max_bytes {
                return Err(ArtifactError::UnpackedTooLarge {
                    url: self.url.to_string(),
                    limit: self.max_bytes,
                });
            }
        }
        Ok(clean)
    }

    /// Creates an admitted directory with its mode, owner `rwx` always.
    fn dir(&self, name: &Path, clean: &Path, mode: u32) -> Result<()> {
        let path = self.into.join(clean);
        let mode = (mode & 0o777 & !MODE_MASK) | 0o700;
        fs::create_dir_all(&path)
            .and_then(|()| fs::set_permissions(&path, fs::Permissions::from_mode(mode)))
            .map_err(|source| ArtifactError::Unpack {
                url: self.url.to_string(),
                entry: name.to_path_buf(),
                source,
            })
    }

    /// Checks the links of the whole tree.
    fn finish(self) -> Result<()> {
        self.tree
            .check_links()
            .map_err(|(entry, reason)| self.unsafe_entry(entry, reason))
    }
}
