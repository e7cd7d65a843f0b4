//! A `PATH` like this process's, but without one program: a directory of
//! links to every other program on `PATH`, so a child run with it cannot
//! find that program however it looks (`visor up` without `etcd`).

use std::ffi::OsString;
use std::path::Path;

use tempfile::TempDir;

/// The directory of links, removed on drop.
pub struct PathWithout {
    dir: TempDir,
}

impl PathWithout {
    /// Every program on `PATH` but `program`.
    ///
    /// # Panics
    ///
    /// If the directory or a link cannot be made.
    pub fn new(program: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("path-without-")
            .tempdir()
            .expect("a temp dir");
        let path = std::env::var_os("PATH").unwrap_or_default();
        for entry_dir in std::env::split_paths(&path) {
            let Ok(entries) = std::fs::read_dir(&entry_dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                let link = dir.path().join(&name);
                // The first program of a name on PATH wins, as in a lookup.
                if name == program || link.symlink_metadata().is_ok() {
                    continue;
                }
                std::os::unix::fs::symlink(entry.path(), &link).expect("link a program");
            }
        }
        Self { dir }
    }

    /// The value for `PATH`.
    pub fn var(&self) -> OsString {
        self.dir.path().as_os_str().to_owned()
    }

    /// Whether `program` can be run with this `PATH`.
    pub fn finds(&self, program: &str) -> bool {
        let found = Path::new(self.dir.path()).join(program);
        found.exists()
    }
}
