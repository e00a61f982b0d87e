//! What makes two benchmark results comparable: the commit, the build profile, the kernel, the
//! Docker, runsc and QEMU versions, the VM accelerator, the CPU count. Each fact is what the
//! command printed, or "unknown" with no guess.

use serde::{Deserialize, Serialize};

/// The facts of the machine and build a result was measured on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facts {
    /// `git rev-parse HEAD` of the source tree (or `OPENSHELL_COMMIT`).
    pub commit: String,
    /// `debug` or `release`.
    pub profile: String,
    /// `/proc/sys/kernel/osrelease`.
    pub kernel: String,
    /// The Docker engine's version.
    pub docker: String,
    /// `runsc --version`, first line.
    pub runsc: String,
    /// `qemu-system-x86_64 --version`, first line.
    pub qemu: String,
    /// The VM lane's accelerator (from its bare boot), when the vm lane ran.
    pub accelerator: String,
    /// CPUs available to the process.
    pub cpus: usize,
}

fn first_line(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

impl Facts {
    /// Reads the facts of this machine and build.
    pub async fn read() -> Facts {
        let source = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
        let commit = std::env::var("OPENSHELL_COMMIT")
            .unwrap_or_else(|_| first_line("git", &["-C", source, "rev-parse", "HEAD"]));
        let docker = match openshell_images::docker::connect(None) {
            Ok(d) => d
                .version()
                .await
                .ok()
                .and_then(|v| v.version)
                .unwrap_or_else(|| "unreachable".into()),
            Err(_) => "unreachable".into(),
        };
        Facts {
            commit,
            profile: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            }
            .into(),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "unknown".into()),
            docker,
            runsc: first_line("runsc", &["--version"]),
            qemu: first_line("qemu-system-x86_64", &["--version"]),
            accelerator: "n/a".into(),
            cpus: std::thread::available_parallelism().map_or(0, usize::from),
        }
    }
}
