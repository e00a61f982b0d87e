//! Initramfs archives for the VM lane: SVR4 `newc` cpio (the `cpio` crate), uncompressed.
//!
//! Linux unpacks every archive of a concatenation in turn, a later entry replacing an earlier
//! one of the same path, so a VM's initrd is three archives end to end: the image's root
//! ([`cached_root`], packed once per image id), the driver's own files (its init and the kernel
//! modules it loads) and a tiny per-sandbox archive (the launch description and the
//! credential). Uncompressed, because decompressing tens of MB under software emulation costs
//! more than reading them.
//!
//! A root is packed straight from the engine's export tar, with the owners and modes the tar
//! records, so packing needs no privileges and never unpacks an image onto the host. What Docker
//! adds to every container's root and is no part of the image is left out: the entries below
//! `dev/` (the guest mounts `devtmpfs` there; an empty regular `dev/console` would even swallow
//! the console) and `.dockerenv`.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bollard::Docker;
use cpio::newc::{Builder, ModeFileType};

use crate::root::{self, ImageConfig, RootError};

/// Where a cache folder keeps packed roots.
pub const CACHE_SUBDIR: &str = "initramfs";
/// How many bytes of packed roots a cache keeps: after a pack, the least recently used beyond
/// this go (every rebuilt supervisor makes new image ids, so the folder would only grow).
pub const CACHE_LIMIT_BYTES: u64 = 2 << 30;
/// Serialises packing within this process (different processes race safely: each writes a
/// temporary file and renames it into place).
static PACK_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// Reading the image from the engine failed (or it does not exist).
    #[error(transparent)]
    Root(#[from] RootError),
    /// The image's tar could not be read or the archive written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// An entry cannot go into a newc archive.
    #[error("{path}: {message}")]
    Unrepresentable { path: String, message: String },
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, ArchiveError>;

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A directory.
    Dir,
    /// A regular file with these contents.
    File(Vec<u8>),
    /// A symbolic link to this target.
    Symlink(String),
    /// A character device.
    CharDevice { major: u32, minor: u32 },
}

/// One entry of an archive built from data (not from a tar).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The path inside the guest, without a leading `/`.
    pub path: String,
    /// Permission bits (`0o755`…).
    pub mode: u32,
    /// Owner uid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
    /// What it is.
    pub kind: Kind,
}

impl Entry {
    /// A root-owned entry.
    pub fn new(path: &str, mode: u32, kind: Kind) -> Entry {
        Entry {
            path: path.trim_start_matches('/').to_string(),
            mode,
            uid: 0,
            gid: 0,
            kind,
        }
    }
}

/// Metadata of one archive member.
struct Member<'a> {
    name: &'a str,
    mode: u32,
    file_type: ModeFileType,
    uid: u32,
    gid: u32,
    rdev: (u32, u32),
}

/// A newc archive being written, counting its bytes (for the offsets of file data).
pub struct Archive<W: Write> {
    out: W,
    written: u64,
    next_ino: u32,
}

impl<W: Write> Archive<W> {
    /// An empty archive writing to `out`.
    pub fn new(out: W) -> Archive<W> {
        Archive {
            out,
            written: 0,
            next_ino: 1,
        }
    }

    /// Appends `entry`.
    pub fn add(&mut self, entry: &Entry) -> io::Result<()> {
        let (file_type, data): (ModeFileType, &[u8]) = match &entry.kind {
            Kind::Dir => (ModeFileType::Directory, &[]),
            Kind::File(bytes) => (ModeFileType::Regular, bytes),
            Kind::Symlink(target) => (ModeFileType::Symlink, target.as_bytes()),
            Kind::CharDevice { .. } => (ModeFileType::Char, &[]),
        };
        let rdev = match entry.kind {
            Kind::CharDevice { major, minor } => (major, minor),
            _ => (0, 0),
        };
        let member = Member {
            name: &entry.path,
            mode: entry.mode,
            file_type,
            uid: entry.uid,
            gid: entry.gid,
            rdev,
        };
        self.member(&member, data.len() as u64, data).map(|_| ())
    }

    /// Appends one member with `size` bytes of data from `data`; answers the data's offset.
    fn member(&mut self, m: &Member<'_>, size: u64, mut data: impl Read) -> io::Result<u64> {
        let size32 = u32::try_from(size).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, "newc members are below 4 GiB")
        })?;
        let ino = self.next_ino;
        self.next_ino += 1;
        let nlink = if matches!(m.file_type, ModeFileType::Directory) {
            2
        } else {
            1
        };
        let builder = Builder::new(m.name)
            .ino(ino)
            .mode(m.mode & 0o7777)
            .set_mode_file_type(clone_type(&m.file_type))
            .uid(m.uid)
            .gid(m.gid)
            .nlink(nlink)
            .rdev_major(m.rdev.0)
            .rdev_minor(m.rdev.1);
        let header = header_len(m.name);
        let offset = self.written + header;
        let mut writer = builder.write(&mut self.out, size32);
        let copied = io::copy(&mut data, &mut writer)?;
        if copied != size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{}: {copied} of {size} bytes", m.name),
            ));
        }
        writer.finish()?;
        self.written = offset + size + padding(header + size);
        Ok(offset)
    }

    /// Writes the trailer and answers the output.
    pub fn finish(self) -> io::Result<W> {
        cpio::newc::trailer(self.out)
    }
}

fn clone_type(t: &ModeFileType) -> ModeFileType {
    match t {
        ModeFileType::Symlink => ModeFileType::Symlink,
        ModeFileType::Fifo => ModeFileType::Fifo,
        ModeFileType::Char => ModeFileType::Char,
        ModeFileType::Block => ModeFileType::Block,
        ModeFileType::NetworkSpecial => ModeFileType::NetworkSpecial,
        ModeFileType::Socket => ModeFileType::Socket,
        ModeFileType::Directory => ModeFileType::Directory,
        ModeFileType::Regular => ModeFileType::Regular,
    }
}

/// The newc header of `name`: 110 bytes, the name and its NUL, padded to 4.
fn header_len(name: &str) -> u64 {
    let raw = 110 + name.len() as u64 + 1;
    raw + padding(raw)
}

fn padding(n: u64) -> u64 {
    (4 - n % 4) % 4
}

/// An archive of `entries` in memory.
pub fn archive(entries: &[Entry]) -> io::Result<Vec<u8>> {
    let mut archive = Archive::new(Vec::new());
    for entry in entries {
        archive.add(entry)?;
    }
    archive.finish()
}

/// Whether a path of an exported container root belongs to the image (see the module doc).
fn from_image(path: &str) -> bool {
    !(path.starts_with("dev/") || path == ".dockerenv")
}

/// Packs the tar `tar` (an exported root) into the newc archive `out`; answers the member count.
pub fn pack_tar(tar: impl Read, out: &File, out_path: &Path) -> Result<usize> {
    let io_out = |source| ArchiveError::Io {
        path: out_path.to_path_buf(),
        source,
    };
    let mut archive = Archive::new(std::io::BufWriter::new(out));
    let mut files: HashMap<String, (u64, u64)> = HashMap::new();
    let mut members = 0;
    let mut tar = tar::Archive::new(tar);
    let entries = tar.entries().map_err(|source| ArchiveError::Io {
        path: "<image tar>".into(),
        source,
    })?;
    for entry in entries {
        let mut entry = entry.map_err(|source| ArchiveError::Io {
            path: "<image tar>".into(),
            source,
        })?;
        let raw = entry.path_bytes();
        let path = String::from_utf8_lossy(&raw)
            .trim_start_matches("./")
            .trim_matches('/')
            .to_string();
        if path.is_empty() || path == "." || !from_image(&path) {
            continue;
        }
        let header = entry.header();
        let unrepresentable = |message: &str| ArchiveError::Unrepresentable {
            path: path.clone(),
            message: message.to_string(),
        };
        let mode = header.mode().map_err(|_| unrepresentable("bad mode"))?;
        let uid = header.uid().map_err(|_| unrepresentable("bad uid"))? as u32;
        let gid = header.gid().map_err(|_| unrepresentable("bad gid"))? as u32;
        let kind = header.entry_type();
        let member = |file_type, rdev| Member {
            name: &path,
            mode,
            file_type,
            uid,
            gid,
            rdev,
        };
        use tar::EntryType as T;
        match kind {
            T::Regular | T::Continuous | T::GNUSparse => {
                let size = entry.size();
                let offset = archive
                    .member(&member(ModeFileType::Regular, (0, 0)), size, &mut entry)
                    .map_err(io_out)?;
                files.insert(path.clone(), (offset, size));
            }
            T::Directory => {
                archive
                    .member(&member(ModeFileType::Directory, (0, 0)), 0, io::empty())
                    .map_err(io_out)?;
            }
            T::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| unrepresentable("symlink without a target"))?
                    .into_owned();
                archive
                    .member(
                        &member(ModeFileType::Symlink, (0, 0)),
                        target.len() as u64,
                        target.as_slice(),
                    )
                    .map_err(io_out)?;
            }
            T::Link => {
                // A hard link: a copy of the data written earlier (read back from the output).
                let target = entry
                    .link_name_bytes()
                    .map(|t| {
                        String::from_utf8_lossy(&t)
                            .trim_start_matches("./")
                            .trim_matches('/')
                            .to_string()
                    })
                    .ok_or_else(|| unrepresentable("hard link without a target"))?;
                let &(offset, size) = files
                    .get(&target)
                    .ok_or_else(|| unrepresentable("hard link to a file not seen before"))?;
                archive.out.flush().map_err(io_out)?;
                let mut data = vec![0u8; size as usize];
                out.read_exact_at(&mut data, offset).map_err(io_out)?;
                let offset = archive
                    .member(
                        &member(ModeFileType::Regular, (0, 0)),
                        size,
                        data.as_slice(),
                    )
                    .map_err(io_out)?;
                files.insert(path.clone(), (offset, size));
            }
            T::Char | T::Block | T::Fifo => {
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                let file_type = match kind {
                    T::Char => ModeFileType::Char,
                    T::Block => ModeFileType::Block,
                    _ => ModeFileType::Fifo,
                };
                archive
                    .member(&member(file_type, (major, minor)), 0, io::empty())
                    .map_err(io_out)?;
            }
            // PAX and GNU long-name headers are folded into their entries by the tar crate;
            // anything else (XHeader leftovers) carries no file.
            _ => continue,
        }
        members += 1;
    }
    let mut out_buf = archive.finish().map_err(io_out)?;
    out_buf.flush().map_err(io_out)?;
    Ok(members)
}

/// A packed image root in a cache folder.
#[derive(Debug, Clone)]
pub struct CachedRoot {
    /// `<cache>/initramfs/<image id>.cpio`.
    pub path: PathBuf,
    /// The image's configuration (what it runs).
    pub config: ImageConfig,
    /// Whether this call packed it (`false`: it was cached).
    pub packed: bool,
}

/// The image `reference`'s root as a newc archive, packed into `cache_dir` once per image id.
pub async fn cached_root(docker: &Docker, reference: &str, cache_dir: &Path) -> Result<CachedRoot> {
    let config = root::inspect(docker, reference).await?;
    let id = config.id.trim_start_matches("sha256:").to_string();
    let dir = cache_dir.join(CACHE_SUBDIR);
    let path = dir.join(format!("{id}.cpio"));
    if path.is_file() {
        touch(&path);
        return Ok(CachedRoot {
            path,
            config,
            packed: false,
        });
    }
    let _one_at_a_time = PACK_LOCK.lock().await;
    if path.is_file() {
        return Ok(CachedRoot {
            path,
            config,
            packed: false,
        });
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ArchiveError::Io { path, source }
    };
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let tar = tempfile::Builder::new()
        .prefix(".export-")
        .suffix(".tar")
        .tempfile_in(&dir)
        .map_err(io(&dir))?;
    root::export(docker, reference, tar.path()).await?;
    let tar_path = tar.path().to_path_buf();
    let final_path = path.clone();
    let packed = tokio::task::spawn_blocking(move || -> Result<()> {
        let input = File::open(&tar_path).map_err(io(&tar_path))?;
        let dir = final_path.parent().unwrap_or(Path::new("/"));
        let out = tempfile::Builder::new()
            .prefix(".pack-")
            .tempfile_in(dir)
            .map_err(io(dir))?;
        pack_tar(std::io::BufReader::new(input), out.as_file(), out.path())?;
        out.as_file().sync_all().map_err(io(out.path()))?;
        out.persist(&final_path)
            .map_err(|e| io(&final_path)(e.error))?;
        Ok(())
    })
    .await
    .map_err(|e| io(&path)(io::Error::other(e)))?;
    drop(tar);
    packed?;
    prune(&dir, CACHE_LIMIT_BYTES);
    Ok(CachedRoot {
        path,
        config,
        packed: true,
    })
}

/// Marks a cached archive as used now (the pruning order).
fn touch(path: &Path) {
    if let Ok(file) = File::options().append(true).open(path) {
        let _ = file.set_modified(std::time::SystemTime::now());
    }
}

/// Removes the least recently used `*.cpio` of `dir` beyond `limit` bytes (the newest is always
/// kept). A VM boots a copy, so removing an archive never disturbs a running sandbox.
pub fn prune(dir: &Path, limit: u64) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut archives: Vec<(std::time::SystemTime, u64, PathBuf)> = entries
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "cpio"))
        .filter_map(|e| {
            let meta = e.metadata().ok()?;
            Some((meta.modified().ok()?, meta.len(), e.path()))
        })
        .collect();
    archives.sort_by_key(|a| std::cmp::Reverse(a.0));
    let mut kept = 0u64;
    for (index, (_, len, path)) in archives.into_iter().enumerate() {
        kept += len;
        if index > 0 && kept > limit {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pruning_keeps_the_most_recently_used_archives_within_the_limit() {
        let tmp = tempfile::tempdir().unwrap();
        let now = std::time::SystemTime::now();
        for (i, name) in ["old.cpio", "mid.cpio", "new.cpio"].iter().enumerate() {
            let path = tmp.path().join(name);
            std::fs::write(&path, vec![0u8; 100]).unwrap();
            let age = std::time::Duration::from_secs(100 * (3 - i as u64));
            File::options()
                .append(true)
                .open(&path)
                .unwrap()
                .set_modified(now - age)
                .unwrap();
        }
        std::fs::write(tmp.path().join("other.tar"), b"x").unwrap();
        prune(tmp.path(), 250);
        let mut left: Vec<String> = std::fs::read_dir(tmp.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["mid.cpio", "new.cpio", "other.tar"]);
    }

    /// Reads every member back: (name, mode with type, uid, data).
    fn members(bytes: &[u8]) -> Vec<(String, u32, u32, Vec<u8>)> {
        let mut out = Vec::new();
        let mut rest = bytes;
        loop {
            let mut reader = cpio::NewcReader::new(rest).unwrap();
            if reader.entry().is_trailer() {
                break;
            }
            let (name, mode, uid) = (
                reader.entry().name().to_string(),
                reader.entry().mode(),
                reader.entry().uid(),
            );
            let mut data = Vec::new();
            reader.read_to_end(&mut data).unwrap();
            out.push((name, mode, uid, data));
            rest = reader.finish().unwrap();
        }
        out
    }

    /// A tar entry for a test: path, type, owner, data, link target.
    type TarEntry<'a> = (&'a str, tar::EntryType, u32, &'a [u8], Option<&'a str>);

    fn tar_of(entries: &[TarEntry<'_>]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, kind, uid, data, link) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(*kind);
            header.set_mode(0o755);
            header.set_uid(u64::from(*uid));
            header.set_gid(u64::from(*uid));
            header.set_mtime(0);
            header.set_size(data.len() as u64);
            match link {
                Some(target) => builder.append_link(&mut header, path, target).unwrap(),
                None => builder.append_data(&mut header, path, *data).unwrap(),
            }
        }
        builder.into_inner().unwrap()
    }

    #[test]
    fn a_root_tar_keeps_owners_links_and_hard_links_and_drops_what_docker_adds() {
        use tar::EntryType as T;
        let tar = tar_of(&[
            ("bin/", T::Directory, 0, b"", None),
            ("bin/busybox", T::Regular, 0, b"BUSYBOX", None),
            ("bin/sh", T::Symlink, 0, b"", Some("busybox")),
            ("bin/hard", T::Link, 0, b"", Some("bin/busybox")),
            ("sandbox/", T::Directory, 1000, b"", None),
            ("dev/console", T::Regular, 0, b"", None),
            (".dockerenv", T::Regular, 0, b"", None),
        ]);
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("root.cpio");
        let out = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        assert_eq!(pack_tar(tar.as_slice(), &out, &path).unwrap(), 5);
        let got = members(&std::fs::read(&path).unwrap());
        let names: Vec<&str> = got.iter().map(|m| m.0.as_str()).collect();
        assert_eq!(
            names,
            ["bin", "bin/busybox", "bin/sh", "bin/hard", "sandbox"]
        );
        assert_eq!(got[1].3, b"BUSYBOX");
        assert_eq!(got[2].1 & 0o170000, 0o120000, "a symlink");
        assert_eq!(got[2].3, b"busybox");
        assert_eq!(got[3].3, b"BUSYBOX", "a hard link becomes a copy");
        assert_eq!(got[4].2, 1000, "owners are kept");
        assert_eq!(got[4].1 & 0o170000, 0o040000, "a directory");
    }

    #[test]
    fn data_archives_hold_files_devices_and_modes() {
        let bytes = archive(&[
            Entry::new("/dev", 0o755, Kind::Dir),
            Entry::new(
                "dev/console",
                0o600,
                Kind::CharDevice { major: 5, minor: 1 },
            ),
            Entry::new("etc/secret", 0o600, Kind::File(b"t0ken".to_vec())),
        ])
        .unwrap();
        assert_eq!(
            bytes.len() % 4,
            0,
            "archives stay 4-byte aligned for concatenation"
        );
        let got = members(&bytes);
        assert_eq!(got[0].0, "dev");
        assert_eq!(got[1].1, 0o020600);
        assert_eq!(got[2].1, 0o100600);
        assert_eq!(got[2].3, b"t0ken");
    }
}
