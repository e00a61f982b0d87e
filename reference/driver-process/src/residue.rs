//! What sandboxes leave on the host, found the way the conformance leak audit finds it.
//!
//! - **Processes**: every `/proc/<pid>` whose `root` link resolves to a path under
//!   `<state_dir>/roots/` (a chrooted sandbox process; the first component below `roots/` is the
//!   sandbox id).
//! - **Roots**: the entries of `<state_dir>/roots/` (directories and `<id>.labels.json` files).
//! - **Mounts**: mount points under a root in this process's mount namespace (normally none:
//!   sandboxes mount only inside their own private mount namespace, which dies with them).

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::sys;

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum ResidueError {
    /// A directory or `/proc` file could not be read.
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A leftover mount could not be removed.
    #[error("cannot unmount {path}: {source}")]
    Unmount {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, ResidueError>;

/// A host process running inside a sandbox root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxProcess {
    /// The host pid.
    pub pid: i32,
    /// Its root directory as the host sees it.
    pub root: PathBuf,
}

/// Everything sandboxes of one state directory left on the host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Residue {
    /// Processes chrooted somewhere under `<state_dir>/roots/`.
    pub processes: Vec<SandboxProcess>,
    /// Entries of `<state_dir>/roots/`.
    pub roots: Vec<PathBuf>,
}

impl Residue {
    /// Whether nothing is left.
    pub fn is_empty(&self) -> bool {
        self.processes.is_empty() && self.roots.is_empty()
    }
}

/// The directory all roots of a state directory live in.
pub fn roots_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("roots")
}

/// Scans `/proc` and `<state_dir>/roots/` (see the module doc for the scheme).
pub fn scan(state_dir: &Path) -> Result<Residue> {
    let roots = roots_dir(state_dir);
    let processes = processes_under(&roots)?;
    let mut entries = Vec::new();
    match fs::read_dir(&roots) {
        Ok(dir) => {
            for entry in dir {
                let entry = entry.map_err(|source| ResidueError::Read {
                    path: roots.clone(),
                    source,
                })?;
                entries.push(entry.path());
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(ResidueError::Read {
                path: roots,
                source,
            })
        }
    }
    entries.sort();
    Ok(Residue {
        processes,
        roots: entries,
    })
}

/// Every process whose root directory is `dir` or below it.
pub fn processes_under(dir: &Path) -> Result<Vec<SandboxProcess>> {
    let proc_dir = Path::new("/proc");
    let listing = fs::read_dir(proc_dir).map_err(|source| ResidueError::Read {
        path: proc_dir.into(),
        source,
    })?;
    let mut found = Vec::new();
    for entry in listing.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        // Processes that exit meanwhile, or kernel threads, have no readable root: skip them.
        let Ok(root) = fs::read_link(entry.path().join("root")) else {
            continue;
        };
        if root.starts_with(dir) {
            found.push(SandboxProcess { pid, root });
        }
    }
    found.sort_by_key(|p| p.pid);
    Ok(found)
}

/// Detaches every mount at or below `dir` in this mount namespace, deepest first.
pub fn unmount_below(dir: &Path) -> Result<usize> {
    let path = Path::new("/proc/self/mountinfo");
    let text = fs::read_to_string(path).map_err(|source| ResidueError::Read {
        path: path.into(),
        source,
    })?;
    let mut points: Vec<PathBuf> = text
        .lines()
        .filter_map(mount_point)
        .filter(|point| point.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for point in &points {
        let target =
            CString::new(point.as_os_str().as_bytes()).map_err(|e| ResidueError::Unmount {
                path: point.clone(),
                source: io::Error::other(e),
            })?;
        match sys::unmount_detach(&target) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {} // already gone (stacked mounts)
            Err(source) => {
                return Err(ResidueError::Unmount {
                    path: point.clone(),
                    source,
                })
            }
        }
    }
    Ok(points.len())
}

/// The mount point (fifth field, octal escapes decoded) of one `mountinfo` line.
fn mount_point(line: &str) -> Option<PathBuf> {
    let field = line.split(' ').nth(4)?;
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match octal {
            Some(digits) => {
                out.push(
                    digits
                        .iter()
                        .fold(0u8, |acc, d| acc.wrapping_mul(8).wrapping_add(d - b'0')),
                );
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    Some(PathBuf::from(
        <std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(out),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_mount_points_are_unescaped() {
        let line = r"36 35 98:0 /mnt1 /state/roots/a\040b/proc rw,noatime master:1 - proc proc rw";
        assert_eq!(
            mount_point(line).unwrap(),
            Path::new("/state/roots/a b/proc")
        );
        assert_eq!(mount_point("too short"), None);
    }

    #[test]
    fn an_absent_state_directory_has_no_residue() {
        let tmp = tempfile::tempdir().unwrap();
        let residue = scan(&tmp.path().join("never-created")).unwrap();
        assert!(residue.is_empty(), "{residue:?}");
    }

    #[test]
    fn root_entries_are_listed() {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir_all(tmp.path().join("roots/abc")).unwrap();
        fs::write(tmp.path().join("roots/abc.labels.json"), "{}").unwrap();
        let residue = scan(tmp.path()).unwrap();
        assert_eq!(
            residue.roots,
            vec![
                tmp.path().join("roots/abc"),
                tmp.path().join("roots/abc.labels.json")
            ]
        );
        assert!(residue.processes.is_empty());
    }
}
