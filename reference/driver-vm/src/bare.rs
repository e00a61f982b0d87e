//! The bare boot: the same QEMU, kernel and (optionally) an image's cached root archive as a
//! sandbox, with the init printing [`guest::BARE_MARKER`] and powering off at once, no network
//! and no report port. It is the baseline a sandbox's boot is compared with (the end point is the
//! marker), and, without a root, the accelerator probe ([`crate::accel`]).

use std::path::Path;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::accel::Accel;
use crate::boot::{Boot, QemuVm};
use crate::{guest, launch};

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum BareError {
    /// QEMU could not be started.
    #[error(transparent)]
    Launch(#[from] launch::LaunchError),
    /// The initrd could not be written.
    #[error("writing the bare boot's initrd in {dir}: {source}")]
    Io {
        dir: String,
        #[source]
        source: std::io::Error,
    },
    /// No marker within the limit (QEMU was killed).
    #[error(
        "no bare boot marker within {limit:?} under {accel}; the console's last lines: {tail}"
    )]
    NoMarker {
        accel: Accel,
        limit: Duration,
        tail: String,
    },
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, BareError>;

/// How a bare boot went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct BareBoot {
    /// The accelerator it ran under.
    pub accel: Accel,
    /// From starting QEMU to the marker on the console.
    pub to_marker: Duration,
    /// From starting QEMU to QEMU's exit.
    pub to_exit: Duration,
}

/// Boots `root` (a cached root archive; `None`: only the driver's own archive) to the marker
/// under `accel`, within `limit`; `dir` holds the initrd meanwhile.
pub async fn run(
    boot: &Boot,
    accel: Accel,
    root: Option<&Path>,
    dir: &Path,
    limit: Duration,
) -> Result<BareBoot> {
    let io = |source| BareError::Io {
        dir: dir.display().to_string(),
        source,
    };
    let work = tempfile::Builder::new()
        .prefix("bare-boot-")
        .tempdir_in(dir)
        .map_err(io)?;
    let initrd = work.path().join("initrd");
    crate::state::write_initrd(&initrd, root, &boot.archive, &[]).map_err(io)?;
    let vm = QemuVm {
        name: "openshell-bare-boot".into(),
        accel,
        initrd: &initrd,
        report: None,
        gateway_port: None,
    };
    let started = Instant::now();
    let mut child = launch::spawn(&boot.qemu, boot.qemu_args(&vm), work.path()).await?;
    let stdout = child.stdout.take();
    let mut tail = Vec::new();
    let marker = tokio::time::timeout(limit, async {
        let Some(stdout) = stdout else { return false };
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if line.trim_end_matches('\r') == guest::BARE_MARKER {
                return true;
            }
            tail.push(line);
        }
        false
    })
    .await;
    let to_marker = started.elapsed();
    if !matches!(marker, Ok(true)) {
        let _ = child.kill().await;
        let last: Vec<String> = tail.iter().rev().take(5).rev().cloned().collect();
        return Err(BareError::NoMarker {
            accel,
            limit,
            tail: last.join(" | "),
        });
    }
    let left = limit.saturating_sub(started.elapsed());
    if tokio::time::timeout(left, child.wait()).await.is_err() {
        let _ = child.kill().await;
    }
    Ok(BareBoot {
        accel,
        to_marker,
        to_exit: started.elapsed(),
    })
}
