//! Step 3 of the startup: the workload identity, resolved from the image's own `/etc/passwd`
//! and `/etc/group` (read as files: a static binary has no NSS, and the image is the contract).

use std::path::{Path, PathBuf};

/// Errors of the identity step (stage IDENTITY).
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The account database cannot be read.
    #[error("cannot read {path} ({source}): the image must provide {what} in {path}")]
    Read {
        path: PathBuf,
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The user does not exist.
    #[error(
        "user `{0}` (process.run_as_user) not found: the image must provide it in /etc/passwd"
    )]
    NoUser(String),
    /// The group does not exist.
    #[error(
        "group `{0}` (process.run_as_group) not found: the image must provide it in /etc/group"
    )]
    NoGroup(String),
    /// The policy selects root.
    #[error("{0} resolves to id 0: the workload must not run as root")]
    Root(String),
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, IdentityError>;

/// Who the boot hook and the workload run as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// User name.
    pub user: String,
    /// uid.
    pub uid: u32,
    /// gid (the policy's group).
    pub gid: u32,
    /// Supplementary groups: the primary gid plus every group listing the user as a member.
    pub groups: Vec<u32>,
    /// Home directory from passwd (for `HOME`).
    pub home: String,
}

/// Resolves `user`/`group` (names, or numeric ids present in the files) under `root`'s `etc/`.
pub fn resolve(root: &Path, user: &str, group: &str) -> Result<Identity> {
    let passwd_path = root.join("etc/passwd");
    let group_path = root.join("etc/group");
    let passwd = read(&passwd_path, format!("the user `{user}`"))?;
    let groups = read(&group_path, format!("the group `{group}`"))?;

    let entry = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 7)
        .find(|f| f[0] == user || (is_numeric(user) && f[2] == user))
        .ok_or_else(|| IdentityError::NoUser(user.into()))?;
    let uid: u32 = entry[2]
        .parse()
        .map_err(|_| IdentityError::NoUser(user.into()))?;
    let name = entry[0].to_string();

    let group_entries: Vec<Vec<&str>> = groups
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 4)
        .collect();
    let gid: u32 = group_entries
        .iter()
        .find(|f| f[0] == group || (is_numeric(group) && f[2] == group))
        .and_then(|f| f[2].parse().ok())
        .ok_or_else(|| IdentityError::NoGroup(group.into()))?;
    if uid == 0 {
        return Err(IdentityError::Root(format!("user `{user}`")));
    }
    if gid == 0 {
        return Err(IdentityError::Root(format!("group `{group}`")));
    }
    let mut supplementary = vec![gid];
    for f in &group_entries {
        if f[3].split(',').any(|m| m == name) {
            if let Ok(g) = f[2].parse::<u32>() {
                if g != 0 && !supplementary.contains(&g) {
                    supplementary.push(g);
                }
            }
        }
    }
    Ok(Identity {
        user: name,
        uid,
        gid,
        groups: supplementary,
        home: entry[5].to_string(),
    })
}

fn is_numeric(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn read(path: &Path, what: String) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| IdentityError::Read {
        path: path.into(),
        what,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(passwd: &str, group: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/passwd"), passwd).unwrap();
        std::fs::write(dir.path().join("etc/group"), group).unwrap();
        dir
    }

    const PASSWD: &str =
        "root:x:0:0:root:/root:/bin/sh\nsandbox:x:1000:1000:sandbox:/sandbox:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nsandbox:x:1000:\ntools:x:1500:other,sandbox\n";

    #[test]
    fn sandbox_user_resolves_with_supplementary_groups() {
        let r = root(PASSWD, GROUP);
        let id = resolve(r.path(), "sandbox", "sandbox").unwrap();
        assert_eq!(
            (id.uid, id.gid, id.groups, id.home.as_str()),
            (1000, 1000, vec![1000, 1500], "/sandbox")
        );
        assert_eq!(resolve(r.path(), "1000", "1000").unwrap().user, "sandbox");
    }

    #[test]
    fn missing_user_names_the_user_and_the_image_contract() {
        let r = root("root:x:0:0:root:/root:/bin/sh\n", GROUP);
        let e = resolve(r.path(), "sandbox", "sandbox")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "user `sandbox` (process.run_as_user) not found: the image must provide it in /etc/passwd");
    }

    #[test]
    fn missing_group_names_the_group() {
        let r = root(PASSWD, "root:x:0:\n");
        assert!(resolve(r.path(), "sandbox", "sandbox")
            .unwrap_err()
            .to_string()
            .contains("group `sandbox`"));
    }

    #[test]
    fn root_is_refused() {
        let r = root(PASSWD, GROUP);
        assert!(matches!(
            resolve(r.path(), "root", "sandbox"),
            Err(IdentityError::Root(_))
        ));
    }

    #[test]
    fn missing_passwd_file_says_what_the_image_must_provide() {
        let dir = tempfile::tempdir().unwrap();
        let e = resolve(dir.path(), "sandbox", "sandbox")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("etc/passwd") && e.contains("the user `sandbox`"),
            "{e}"
        );
    }
}
