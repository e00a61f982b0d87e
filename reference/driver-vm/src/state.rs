//! A sandbox's state folder on the host, `<state-dir>/vms/<sandbox-id>/`:
//!
//! | file | what |
//! |---|---|
//! | `labels.json` | the request's labels (`openshell.sandbox-id`, `openshell.run-id`) |
//! | `initrd` | mode 0600: the image's root archive, the driver's archive and the sandbox's (launch description and credential), concatenated |
//! | `report` | what the init wrote on its report port |
//!
//! QEMU runs with the folder as its working directory. Cleanup removes the whole folder.

use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use openshell_images::initramfs::{self, Entry, Kind};

use crate::guest::{self, Launch};

/// The folder holding every sandbox's state folder.
pub fn vms_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("vms")
}

/// One sandbox's state folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folder {
    /// `<state-dir>/vms/<sandbox-id>`.
    pub dir: PathBuf,
}

impl Folder {
    /// The folder of `sandbox_id` under `vms`.
    pub fn of(vms: &Path, sandbox_id: &str) -> Folder {
        Folder {
            dir: vms.join(sandbox_id),
        }
    }

    /// `labels.json`.
    pub fn labels(&self) -> PathBuf {
        self.dir.join("labels.json")
    }

    /// `initrd`.
    pub fn initrd(&self) -> PathBuf {
        self.dir.join("initrd")
    }

    /// `report`.
    pub fn report(&self) -> PathBuf {
        self.dir.join("report")
    }

    /// Removes the folder; whether it existed.
    pub fn remove(&self) -> io::Result<bool> {
        match std::fs::remove_dir_all(&self.dir) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// The sandbox's own archive: the launch description and the credential, both 0600.
pub fn sandbox_archive(launch: &Launch, token: &str) -> io::Result<Vec<u8>> {
    let json = serde_json::to_vec(launch).map_err(io::Error::other)?;
    initramfs::archive(&[
        Entry::new(guest::LAUNCH_PATH, 0o600, Kind::File(json)),
        Entry::new(
            guest::CREDENTIAL_PATH,
            0o600,
            Kind::File(token.as_bytes().to_vec()),
        ),
    ])
}

/// Writes `path` (mode 0600, created anew) as `root` (a file, when given), then `archive`, then
/// `sandbox`: the kernel unpacks them in that order.
pub fn write_initrd(
    path: &Path,
    root: Option<&Path>,
    archive: &[u8],
    sandbox: &[u8],
) -> io::Result<()> {
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    if let Some(root) = root {
        let mut input = std::fs::File::open(root)?;
        io::copy(&mut input, &mut out)?;
    }
    out.write_all(archive)?;
    out.write_all(sandbox)?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_initrd_is_private_and_the_archives_are_concatenated_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root.cpio");
        std::fs::write(&root, b"ROOT").unwrap();
        let initrd = tmp.path().join("initrd");
        write_initrd(&initrd, Some(&root), b"INIT", b"SBX").unwrap();
        assert_eq!(std::fs::read(&initrd).unwrap(), b"ROOTINITSBX");
        let mode = std::fs::metadata(&initrd).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(
            write_initrd(&initrd, None, b"", b"").is_err(),
            "never reused"
        );
    }

    #[test]
    fn the_credential_travels_in_its_own_private_file() {
        let launch = Launch {
            argv: vec!["/sup".into()],
            ..Default::default()
        };
        let bytes = sandbox_archive(&launch, "s3cret").unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains(".openshell/credential"), "{text}");
        assert!(text.contains("s3cret"));
        assert!(!String::from_utf8_lossy(&serde_json::to_vec(&launch).unwrap()).contains("s3cret"));
    }
}
