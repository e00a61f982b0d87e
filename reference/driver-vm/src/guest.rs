//! The contract between the driver and its guest init (`openshell-vm-init`): where the files are,
//! what the launch description holds, the guest network, and the lines the init writes.

use std::collections::BTreeMap;

/// The init, PID 1 of the guest (`rdinit=`).
pub const INIT_PATH: &str = "/.openshell/init";
/// The kernel modules the init loads, `<name>.ko` each.
pub const MODULES_DIR: &str = "/.openshell/modules";
/// The launch description (JSON [`Launch`]), read and deleted by the init.
pub const LAUNCH_PATH: &str = "/.openshell/launch.json";
/// The sandbox credential (the token alone), read into the environment and deleted by the init.
pub const CREDENTIAL_PATH: &str = "/.openshell/credential";
/// The serial port the init reports the main process's end on (the second ISA serial port).
pub const REPORT_PORT: &str = "/dev/ttyS1";
/// The kernel command-line word that makes the init do the bare boot (marker, power off).
pub const BARE_WORD: &str = "openshell.bare";
/// The console line of a bare boot.
pub const BARE_MARKER: &str = "openshell-vm-init: bare boot marker";
/// The console line the init prints just before it starts the main process.
pub const LAUNCH_MARKER: &str = "openshell-vm-init: starting the main process";

/// The modules the guest loads, in order (Debian's cloud kernel builds these as modules), with
/// their paths below `lib/modules/<version>/`. `virtio-rng` is last and optional (the kernel's
/// own RNG does not wait for it; it feeds the guest's entropy from the host).
pub const MODULES: &[(&str, &str)] = &[
    ("virtio_ring", "kernel/drivers/virtio/virtio_ring.ko"),
    ("virtio", "kernel/drivers/virtio/virtio.ko"),
    ("virtio_mmio", "kernel/drivers/virtio/virtio_mmio.ko"),
    ("failover", "kernel/net/core/failover.ko"),
    ("net_failover", "kernel/drivers/net/net_failover.ko"),
    ("virtio_net", "kernel/drivers/net/virtio_net.ko"),
    ("virtio-rng", "kernel/drivers/char/hw_random/virtio-rng.ko"),
];
/// Modules whose absence the init tolerates.
pub const OPTIONAL_MODULES: &[&str] = &["virtio-rng"];

/// The guest's address on QEMU's user-mode network (`10.0.2.0/24`).
pub const GUEST_ADDR: [u8; 4] = [10, 0, 2, 15];
/// Its netmask.
pub const GUEST_NETMASK: [u8; 4] = [255, 255, 255, 0];
/// The address the gateway is forwarded to inside the guest (`guestfwd`), the only one reachable.
pub const GATEWAY_ALIAS: &str = "10.0.2.100";

/// The line prefix of the main process's exit code on [`REPORT_PORT`]: `openshell-exit <code>`.
pub const EXIT_PREFIX: &str = "openshell-exit ";
/// The line prefix of an init failure on [`REPORT_PORT`]: `openshell-init-error <message>`.
pub const ERROR_PREFIX: &str = "openshell-init-error ";

/// What the init starts.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Launch {
    /// The main process (the image's entrypoint and command); `argv[0]` is looked up in `PATH`
    /// when it has no `/`.
    pub argv: Vec<String>,
    /// Its environment, without the credential.
    pub env: BTreeMap<String, String>,
    /// Its working directory (`/` when empty).
    pub working_dir: String,
}

/// What the init reported on [`REPORT_PORT`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// The main process ended with this code (signals as 128 + n).
    Exited(i32),
    /// The init could not start the main process.
    InitFailed(String),
}

/// Reads the report port's contents (the last report wins; `\r` of the tty's line discipline
/// is ignored).
pub fn parse_report(text: &str) -> Option<Report> {
    text.lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter_map(|line| {
            if let Some(code) = line.strip_prefix(EXIT_PREFIX) {
                code.trim().parse().ok().map(Report::Exited)
            } else {
                line.strip_prefix(ERROR_PREFIX)
                    .map(|m| Report::InitFailed(m.to_string()))
            }
        })
        .next_back()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_are_read_from_the_port_text() {
        assert_eq!(
            parse_report("openshell-exit 5\r\n"),
            Some(Report::Exited(5))
        );
        assert_eq!(
            parse_report("noise\nopenshell-init-error no launch file\n"),
            Some(Report::InitFailed("no launch file".into()))
        );
        assert_eq!(parse_report(""), None);
        assert_eq!(parse_report("openshell-exit x\n"), None);
    }
}
