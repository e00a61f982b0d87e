//! What a process runs with, read from inside it: ids, groups, capability sets, `no_new_privs`,
//! network namespace and the number of seccomp filters. The boot-hook record and its check
//! ([`crate::hook`]) compare two of these; the workload checks read single fields.

use std::collections::BTreeMap;

use crate::sys;

/// A process's credentials and confinement, as `key=value` fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Creds {
    /// Every field, by name (`uid`, `gid`, `groups`, `caps`, `no_new_privs`, `netns` (the
    /// namespace's interfaces), `netns_link`, `seccomp_filters`).
    pub fields: BTreeMap<String, String>,
}

/// The fields a hook and its workload must agree on (OSC-BOOT-001).
pub const SHARED: &[&str] = &[
    "uid",
    "gid",
    "groups",
    "caps",
    "no_new_privs",
    "netns",
    "seccomp_filters",
];

impl Creds {
    /// This process's.
    pub fn own() -> Creds {
        let mut fields = BTreeMap::new();
        let (ruid, euid, rgid, egid) = sys::ids();
        fields.insert("uid".into(), format!("{ruid}/{euid}"));
        fields.insert("gid".into(), format!("{rgid}/{egid}"));
        let groups = match sys::groups() {
            Ok(mut g) => {
                g.sort_unstable();
                g.dedup();
                g.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
            }
            Err(e) => format!("error {}", sys::errno_name(e)),
        };
        fields.insert("groups".into(), groups);
        let caps = match (sys::capabilities(), sys::bounding_set(), sys::ambient_set()) {
            (Ok((e, p, i)), Ok(b), Ok(a)) => {
                format!("eff={e:#x} prm={p:#x} inh={i:#x} bnd={b:#x} amb={a:#x}")
            }
            _ => "unreadable".into(),
        };
        fields.insert("caps".into(), caps);
        fields.insert(
            "no_new_privs".into(),
            sys::no_new_privs()
                .map(|b| b.to_string())
                .unwrap_or_else(|e| format!("error {}", sys::errno_name(e))),
        );
        // The namespace by what is in it: gVisor shows different `/proc/self/ns/net` inodes to
        // two processes of one namespace, but the interfaces are the namespace's (the host's or
        // the supervisor's have more than the workload namespace's lone `lo`).
        fields.insert("netns".into(), interfaces());
        fields.insert(
            "netns_link".into(),
            std::fs::read_link("/proc/self/ns/net")
                .map(|p| p.display().to_string())
                .unwrap_or_else(|e| format!("unreadable: {e}")),
        );
        fields.insert(
            "seccomp_filters".into(),
            seccomp_filters("self").map_or_else(|e| format!("unknown: {e}"), |n| n.to_string()),
        );
        Creds { fields }
    }

    /// The record format: one `key=value` line per field.
    pub fn to_record(&self) -> String {
        self.fields
            .iter()
            .map(|(k, v)| format!("{k}={v}\n"))
            .collect()
    }

    /// Parses [`Creds::to_record`]'s format (unknown lines kept as fields too).
    pub fn from_record(text: &str) -> Creds {
        let fields = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Creds { fields }
    }

    /// The shared fields where `self` and `other` differ, as `key: ours vs theirs`.
    pub fn differences(&self, other: &Creds) -> Vec<String> {
        SHARED
            .iter()
            .filter_map(|k| {
                let (a, b) = (self.fields.get(*k), other.fields.get(*k));
                (a != b).then(|| {
                    format!(
                        "{k}: {} vs {}",
                        a.map_or("(absent)", String::as_str),
                        b.map_or("(absent)", String::as_str)
                    )
                })
            })
            .collect()
    }
}

/// The interface names of this process's network namespace (`/proc/self/net/dev`), sorted.
fn interfaces() -> String {
    match std::fs::read_to_string("/proc/self/net/dev") {
        Ok(text) => {
            let mut names: Vec<&str> = text
                .lines()
                .skip(2)
                .filter_map(|l| l.split(':').next())
                .map(str::trim)
                .collect();
            names.sort_unstable();
            format!("interfaces {}", names.join(","))
        }
        Err(e) => format!("unreadable: {e}"),
    }
}

/// `Seccomp_filters` of `/proc/<pid>/status` (`self` or a pid): how many filters the process
/// runs under. Absent on kernels before 5.9 and under gVisor: an error, never a guess.
pub fn seccomp_filters(pid: &str) -> Result<u32, String> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("Seccomp_filters:"))
        .ok_or_else(|| format!("{path} has no Seccomp_filters line"))?
        .trim()
        .parse()
        .map_err(|e| format!("{path}: Seccomp_filters: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_and_differences_name_the_field() {
        let own = Creds::own();
        let back = Creds::from_record(&own.to_record());
        assert_eq!(back, own);
        let mut other = own.clone();
        other.fields.insert("uid".into(), "4242/4242".into());
        let diff = own.differences(&other);
        assert_eq!(diff.len(), 1, "{diff:?}");
        assert!(diff[0].starts_with("uid: "), "{diff:?}");
    }

    #[test]
    fn this_kernel_reports_seccomp_filters() {
        // The CI kernels are newer than 5.9, which added the line.
        assert!(
            seccomp_filters("self").is_ok(),
            "{:?}",
            seccomp_filters("self")
        );
    }
}
