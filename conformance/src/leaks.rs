//! Finding backend resources by label, for the cleanup cases and the leak audit.
//!
//! The suite puts `openshell.run-id=<run>` on every sandbox it creates, and drivers copy it (and
//! `openshell.sandbox-id`) to every backend resource. This module finds those resources itself:
//! - Docker: containers (running or not) by label filter, through the engine API (bollard).
//! - Kubernetes: Pods and Secrets of the lane's namespace by label selector ([`crate::k3s::audit`]).
//! - process driver: processes whose `/proc/<pid>/root` lies in a sandbox root
//!   (`…/roots/<sandbox-id>`), and, when the suite started the gateway and so knows its state
//!   directory, the roots and `<id>.labels.json` files left under `<state-dir>/roots/`.
//! - VM driver: QEMU processes whose command line holds `-name openshell-<sandbox-id>`, and every
//!   process (QEMU, the relays it spawns per guest connection) whose working directory is a
//!   state folder `…/vms/<sandbox-id>` (labels in its `labels.json`); with a known state
//!   directory, the folders left under `<state-dir>/vms/`.
//!
//! It only ever reads; it never touches resources (other runs' least of all).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use openshell_proto::labels;

/// A backend resource.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Resource {
    /// `container`, `process`, `root`, `vm` (a QEMU process), `state` (a VM state folder),
    /// `pod` or `secret`.
    pub kind: String,
    /// Container name/id, `pid <n> (root <path>)`, or a path.
    pub name: String,
    /// Its labels, where the backend has them.
    pub labels: BTreeMap<String, String>,
    /// When it was created (Unix seconds), where the backend says.
    #[serde(skip)]
    pub created: Option<i64>,
}

impl std::fmt::Display for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.kind, self.name)?;
        if let Some(id) = self.labels.get(labels::SANDBOX_ID) {
            write!(f, " ({}={id})", labels::SANDBOX_ID)?;
        }
        Ok(())
    }
}

/// The label keys a backend puts on its resources. The contract's are `openshell.sandbox-id`
/// and `openshell.run-id` (OSC-CLEAN-003); a vendor whose backend uses others (upstream labels
/// containers `openshell.ai/sandbox-id` and copies no request label) names them, so the audit
/// looks where the resources are instead of passing blind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelKeys {
    /// The key whose value is the sandbox id.
    pub sandbox: String,
    /// The key whose value is the run id, if the backend copies it.
    pub run: Option<String>,
}

impl Default for LabelKeys {
    fn default() -> LabelKeys {
        LabelKeys {
            sandbox: labels::SANDBOX_ID.to_string(),
            run: Some(labels::RUN_ID.to_string()),
        }
    }
}

impl LabelKeys {
    /// What the audit looks for, for messages.
    pub fn describe(&self, sandbox_id: &str) -> String {
        format!("containers labelled {}={sandbox_id}", self.sandbox)
    }
}

/// Where a lane's backend resources live.
#[derive(Debug, Clone)]
pub enum Backend {
    /// Process driver; the gateway's state directory when known.
    Process {
        /// `<state-dir>` of a gateway the suite started.
        state_dir: Option<PathBuf>,
    },
    /// A Docker engine.
    Docker {
        /// The engine.
        docker: bollard::Docker,
        /// Its label keys.
        keys: LabelKeys,
        /// When the run started (Unix seconds): without a run label, every container carrying
        /// the sandbox key that was created since then counts as the run's (run on an engine no
        /// one else creates sandboxes on meanwhile), so a container left by a refused create,
        /// whose sandbox id the suite never learned, is still found.
        run_started: i64,
    },
    /// A Kubernetes namespace (Pods and Secrets by label, through the API).
    Kube(crate::k3s::audit::KubeAudit),
    /// VM driver; the gateway's state directory when known.
    Vm {
        /// `<state-dir>` of a gateway the suite started.
        state_dir: Option<PathBuf>,
    },
}

impl Backend {
    /// Every resource of sandbox `id`.
    pub async fn of_sandbox(&self, id: &str) -> Result<Vec<Resource>, String> {
        match self {
            Backend::Process { state_dir } => {
                Ok(process_resources(state_dir.as_deref(), |sid, _| sid == id))
            }
            Backend::Docker { docker, keys, .. } => {
                docker_containers(docker, &format!("{}={id}", keys.sandbox)).await
            }
            Backend::Kube(kube) => kube.of_sandbox(id).await,
            Backend::Vm { state_dir } => Ok(vm_resources(state_dir.as_deref(), |sid, _| sid == id)),
        }
    }

    /// What the audit looks for of sandbox `id`, for messages.
    pub fn looks_for(&self, id: &str) -> String {
        match self {
            Backend::Process { .. } => format!("processes and roots of sandbox {id}"),
            Backend::Docker { keys, .. } => keys.describe(id),
            Backend::Kube(_) => format!(
                "Pods or Secrets labelled {}={id}",
                openshell_proto::labels::SANDBOX_ID
            ),
            Backend::Vm { .. } => {
                format!("QEMU processes named openshell-{id}, processes and state in its folder")
            }
        }
    }

    /// Every resource labelled with run `run_id` (or, for processes without labels, belonging to
    /// one of `sandbox_ids`).
    pub async fn of_run(
        &self,
        run_id: &str,
        sandbox_ids: &[String],
    ) -> Result<Vec<Resource>, String> {
        match self {
            Backend::Process { state_dir } => {
                Ok(process_resources(state_dir.as_deref(), |sid, labels| {
                    sandbox_ids.iter().any(|s| s == sid)
                        || labels.get(labels::RUN_ID).is_some_and(|r| r == run_id)
                }))
            }
            Backend::Docker {
                docker,
                keys,
                run_started,
            } => {
                // By the run label where the backend copies it, and by every sandbox id the run
                // created either way (a backend without the run label is still audited).
                let mut found = match &keys.run {
                    Some(key) => docker_containers(docker, &format!("{key}={run_id}")).await?,
                    None => docker_containers(docker, &keys.sandbox)
                        .await?
                        .into_iter()
                        .filter(|r| r.created.is_some_and(|c| c >= *run_started))
                        .collect(),
                };
                for id in sandbox_ids {
                    for r in docker_containers(docker, &format!("{}={id}", keys.sandbox)).await? {
                        if !found.contains(&r) {
                            found.push(r);
                        }
                    }
                }
                Ok(found)
            }
            Backend::Kube(kube) => kube.of_run(run_id).await,
            Backend::Vm { state_dir } => Ok(vm_resources(state_dir.as_deref(), |sid, labels| {
                sandbox_ids.iter().any(|s| s == sid)
                    || labels.get(labels::RUN_ID).is_some_and(|r| r == run_id)
            })),
        }
    }
}

async fn docker_containers(docker: &bollard::Docker, label: &str) -> Result<Vec<Resource>, String> {
    use bollard::query_parameters::ListContainersOptionsBuilder;
    let filters = std::collections::HashMap::from([("label", vec![label])]);
    let options = ListContainersOptionsBuilder::new()
        .all(true)
        .filters(&filters)
        .build();
    let list = docker
        .list_containers(Some(options))
        .await
        .map_err(|e| format!("listing containers labelled {label}: {e}"))?;
    Ok(list
        .into_iter()
        .map(|c| Resource {
            kind: "container".into(),
            name: format!(
                "{} [{}]",
                c.names
                    .unwrap_or_default()
                    .join(",")
                    .trim_start_matches('/'),
                c.state.map(|s| s.to_string()).unwrap_or_default()
            ),
            labels: c.labels.unwrap_or_default().into_iter().collect(),
            created: c.created,
        })
        .collect())
}

/// Reads `<root>.labels.json` beside a sandbox root.
pub fn root_labels(root: &Path) -> BTreeMap<String, String> {
    let mut path = root.as_os_str().to_owned();
    path.push(".labels.json");
    std::fs::read_to_string(PathBuf::from(path))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// The sandbox id of a path inside `…/roots/<id>`, if it is one.
pub fn sandbox_of_root(path: &str) -> Option<(PathBuf, String)> {
    let path = path.trim_end_matches(" (deleted)");
    let (head, rest) = path.rsplit_once("/roots/")?;
    let id = rest.split('/').next()?.trim_end_matches(".labels.json");
    (!id.is_empty()).then(|| (PathBuf::from(format!("{head}/roots/{id}")), id.to_string()))
}

fn process_resources(
    state_dir: Option<&Path>,
    wanted: impl Fn(&str, &BTreeMap<String, String>) -> bool,
) -> Vec<Resource> {
    let mut out = Vec::new();
    let own_roots = state_dir.map(|d| d.join("roots"));
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name
                .to_str()
                .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
            else {
                continue;
            };
            let Ok(root) = std::fs::read_link(entry.path().join("root")) else {
                continue;
            };
            let root = root.to_string_lossy().into_owned();
            let Some((root_dir, id)) = sandbox_of_root(&root) else {
                continue;
            };
            let labels = root_labels(&root_dir);
            if wanted(&id, &labels) {
                out.push(Resource {
                    kind: "process".into(),
                    name: format!("pid {pid} (root {root})"),
                    labels,
                    created: None,
                });
            }
        }
    }
    if let Some(roots) = own_roots {
        if let Ok(entries) = std::fs::read_dir(&roots) {
            for entry in entries.flatten() {
                let path = entry.path();
                let Some((root_dir, id)) = sandbox_of_root(&path.to_string_lossy()) else {
                    continue;
                };
                let labels = root_labels(&root_dir);
                if wanted(&id, &labels) {
                    out.push(Resource {
                        kind: "root".into(),
                        name: path.display().to_string(),
                        labels,
                        created: None,
                    });
                }
            }
        }
    }
    out
}

/// The sandbox id of a VM state folder path `…/vms/<id>[/…]`, if it is one.
pub fn sandbox_of_vm_folder(path: &str) -> Option<(PathBuf, String)> {
    let path = path.trim_end_matches(" (deleted)");
    let (head, rest) = path.rsplit_once("/vms/")?;
    let id = rest.split('/').next()?;
    (!id.is_empty()).then(|| (PathBuf::from(format!("{head}/vms/{id}")), id.to_string()))
}

/// The sandbox id a QEMU command line names with `-name openshell-<id>`.
pub fn sandbox_of_qemu_cmdline(cmdline: &[u8]) -> Option<String> {
    let mut args = cmdline.split(|&b| b == 0).map(String::from_utf8_lossy);
    while let Some(arg) = args.next() {
        if arg == "-name" {
            let name = args.next()?;
            let name = name.split(',').next().unwrap_or_default();
            let name = name.strip_prefix("guest=").unwrap_or(name);
            return name
                .strip_prefix("openshell-")
                .filter(|id| !id.is_empty())
                .map(str::to_string);
        }
    }
    None
}

fn folder_labels(folder: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(folder.join("labels.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

fn vm_resources(
    state_dir: Option<&Path>,
    wanted: impl Fn(&str, &BTreeMap<String, String>) -> bool,
) -> Vec<Resource> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name
                .to_str()
                .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
            else {
                continue;
            };
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let named = sandbox_of_qemu_cmdline(&cmdline);
            let cwd = std::fs::read_link(entry.path().join("cwd"))
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default();
            let folder = sandbox_of_vm_folder(&cwd);
            let Some(id) = named
                .clone()
                .or_else(|| folder.as_ref().map(|f| f.1.clone()))
            else {
                continue;
            };
            // Read through /proc: the link names the folder even when another mount namespace
            // (or a deleted folder) would make the path itself unreadable.
            let labels = folder_labels(&entry.path().join("cwd"));
            if wanted(&id, &labels) {
                let program =
                    String::from_utf8_lossy(cmdline.split(|&b| b == 0).next().unwrap_or_default())
                        .into_owned();
                out.push(Resource {
                    kind: if named.is_some() { "vm" } else { "process" }.into(),
                    name: format!("pid {pid} {program} (cwd {cwd})"),
                    labels,
                    created: None,
                });
            }
        }
    }
    if let Some(vms) = state_dir.map(|d| d.join("vms")) {
        if let Ok(entries) = std::fs::read_dir(&vms) {
            for entry in entries.flatten() {
                let path = entry.path();
                let id = entry.file_name().to_string_lossy().into_owned();
                let labels = folder_labels(&path);
                if wanted(&id, &labels) {
                    out.push(Resource {
                        kind: "state".into(),
                        name: path.display().to_string(),
                        labels,
                        created: None,
                    });
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_sandbox_ids_are_read_from_qemu_names_and_state_folders() {
        let cmdline = b"/usr/bin/qemu-system-x86_64\0-name\0openshell-sb-1\0-accel\0tcg\0";
        assert_eq!(sandbox_of_qemu_cmdline(cmdline), Some("sb-1".into()));
        assert_eq!(sandbox_of_qemu_cmdline(b"qemu\0-name\0guest=other\0"), None);
        assert_eq!(sandbox_of_qemu_cmdline(b"/bin/sleep\x001\0"), None);
        assert_eq!(
            sandbox_of_vm_folder("/tmp/g/state/vms/sb-1 (deleted)"),
            Some((PathBuf::from("/tmp/g/state/vms/sb-1"), "sb-1".into()))
        );
        assert_eq!(sandbox_of_vm_folder("/tmp/g/state"), None);
    }

    #[test]
    fn leftover_vm_state_folders_are_found_with_their_labels() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("vms/sb1");
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(
            folder.join("labels.json"),
            r#"{"openshell.run-id":"run-x","openshell.sandbox-id":"sb1"}"#,
        )
        .unwrap();
        let found = vm_resources(Some(dir.path()), |_, l| {
            l.get(labels::RUN_ID).is_some_and(|r| r == "run-x")
        });
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].kind, "state");
        assert_eq!(found[0].labels[labels::SANDBOX_ID], "sb1");
    }

    #[test]
    fn sandbox_ids_are_read_from_root_paths() {
        assert_eq!(
            sandbox_of_root("/tmp/s/state/roots/abc (deleted)"),
            Some((PathBuf::from("/tmp/s/state/roots/abc"), "abc".into()))
        );
        assert_eq!(
            sandbox_of_root("/tmp/s/state/roots/abc.labels.json")
                .unwrap()
                .1,
            "abc"
        );
        assert_eq!(sandbox_of_root("/"), None);
    }

    #[test]
    fn leftover_roots_under_a_known_state_dir_are_found_with_their_labels() {
        let dir = tempfile::tempdir().unwrap();
        let roots = dir.path().join("roots");
        std::fs::create_dir_all(roots.join("sb1")).unwrap();
        std::fs::write(
            roots.join("sb1.labels.json"),
            r#"{"openshell.run-id":"run-x","openshell.sandbox-id":"sb1"}"#,
        )
        .unwrap();
        std::fs::create_dir_all(roots.join("sb2")).unwrap();
        let found = process_resources(Some(dir.path()), |_, l| {
            l.get(labels::RUN_ID).is_some_and(|r| r == "run-x")
        });
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found.iter().all(|r| r.name.contains("sb1")), "{found:?}");
        let other = process_resources(Some(dir.path()), |_, l| {
            l.get(labels::RUN_ID).is_some_and(|r| r == "run-y")
        });
        assert!(
            other.is_empty(),
            "another run's resources are never reported: {other:?}"
        );
    }
}
