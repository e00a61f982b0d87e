//! What every VM boots with: QEMU, the kernel, the driver's own archive (init, modules, a
//! console device), and the QEMU command line.
//!
//! The machine is `-M microvm` with one vCPU, no firmware and no default devices: the first ISA
//! serial port is the console (QEMU's stdout), the second carries the init's report to a file, a
//! virtio-rng feeds the guest's entropy, and a virtio-net on QEMU's user-mode network with
//! `restrict=on` reaches nothing but the gateway (one `guestfwd` whose command connects each guest
//! connection to the host's `127.0.0.1:PORT`).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use openshell_images::initramfs::{self, Entry, Kind};

use crate::accel::Accel;
use crate::guest;

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// A file every VM needs is missing.
    #[error("the VM driver's {role} {path} is not usable: {detail} (bash ci/setup-vm.sh installs QEMU and the kernel)")]
    Missing {
        role: &'static str,
        path: PathBuf,
        detail: String,
    },
    /// The driver's archive could not be built.
    #[error("building the guest init archive: {0}")]
    Archive(#[source] std::io::Error),
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, BootError>;

/// Where the boot files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootConfig {
    /// `qemu-system-x86_64` (a path, or a name looked up in `PATH`).
    pub qemu: PathBuf,
    /// The kernel image (`<cache>/vmlinuz`).
    pub kernel: PathBuf,
    /// The kernel's modules folder (`<cache>/modules`, i.e. `lib/modules/<version>`).
    pub modules: PathBuf,
    /// The static guest init (`openshell-vm-init`).
    pub init: PathBuf,
    /// A static busybox on the host: its `nc` relays each guest connection to the gateway.
    pub busybox: PathBuf,
    /// Guest memory in MiB.
    pub memory_mib: u32,
}

/// The checked boot files and the driver's archive, built once.
#[derive(Debug, Clone)]
pub struct Boot {
    /// The configuration it was made from.
    pub config: BootConfig,
    /// `qemu` resolved to a path.
    pub qemu: PathBuf,
    /// The driver's archive: init, modules, `/dev/console`.
    pub archive: std::sync::Arc<Vec<u8>>,
    /// The host's TSC frequency in kHz, handed to the guest under TCG (see [`Boot::cmdline`]).
    pub tsc_khz: Option<u64>,
}

fn missing(role: &'static str, path: &Path, detail: impl ToString) -> BootError {
    BootError::Missing {
        role,
        path: path.to_path_buf(),
        detail: detail.to_string(),
    }
}

fn read(role: &'static str, path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| missing(role, path, e))
}

/// `name` if it is a path, else its first match in `PATH`.
pub fn find_program(name: &Path) -> Option<PathBuf> {
    if name.components().count() > 1 {
        return name.is_file().then(|| name.to_path_buf());
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The host's TSC frequency: the first `cpu MHz` of `/proc/cpuinfo` when the CPU says its TSC is
/// constant.
pub fn host_tsc_khz(cpuinfo: &str) -> Option<u64> {
    if !cpuinfo.contains("constant_tsc") {
        return None;
    }
    let mhz: f64 = cpuinfo
        .lines()
        .find(|l| l.starts_with("cpu MHz"))?
        .split(':')
        .nth(1)?
        .trim()
        .parse()
        .ok()?;
    (mhz > 0.0).then_some((mhz * 1000.0) as u64)
}

impl Boot {
    /// Checks every file and builds the driver's archive.
    pub fn load(config: BootConfig) -> Result<Boot> {
        let qemu =
            find_program(&config.qemu).ok_or_else(|| missing("QEMU", &config.qemu, "not found"))?;
        std::fs::metadata(&config.kernel).map_err(|e| missing("kernel", &config.kernel, e))?;
        std::fs::metadata(&config.busybox).map_err(|e| missing("busybox", &config.busybox, e))?;
        let mut entries = vec![
            Entry::new("dev", 0o755, Kind::Dir),
            Entry::new(
                "dev/console",
                0o600,
                Kind::CharDevice { major: 5, minor: 1 },
            ),
            Entry::new(".openshell", 0o700, Kind::Dir),
            Entry::new(
                guest::INIT_PATH,
                0o700,
                Kind::File(read("init", &config.init)?),
            ),
            Entry::new(guest::MODULES_DIR, 0o700, Kind::Dir),
        ];
        for (name, rel) in guest::MODULES {
            let path = config.modules.join(rel);
            if !path.is_file() && guest::OPTIONAL_MODULES.contains(name) {
                continue;
            }
            let module = read("kernel module", &path)?;
            let dest = format!("{}/{name}.ko", guest::MODULES_DIR);
            entries.push(Entry::new(&dest, 0o600, Kind::File(module)));
        }
        let archive = initramfs::archive(&entries).map_err(BootError::Archive)?;
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        Ok(Boot {
            config,
            qemu,
            archive: std::sync::Arc::new(archive),
            tsc_khz: host_tsc_khz(&cpuinfo),
        })
    }

    /// The kernel command line. Under TCG the kernel's fast TSC calibration against the PIT
    /// depends on host timing and fails on a loaded host; its fallback then hangs for good (seen
    /// here: "tsc: Marking TSC unstable due to could not calculate TSC khz", then nothing). So the
    /// guest is told the frequency (`tsc_early_khz`; TCG's TSC is the host's) and to trust it.
    /// Nothing secret ever goes here: the workload can read `/proc/cmdline`.
    pub fn cmdline(&self, accel: Accel, bare: bool) -> String {
        let mut words = vec![
            "console=ttyS0".to_string(),
            "panic=-1".into(),
            "quiet".into(),
            "pci=off".into(),
            "no_timer_check".into(),
            format!("rdinit={}", guest::INIT_PATH),
        ];
        if let (Accel::Tcg, Some(khz)) = (accel, self.tsc_khz) {
            words.push(format!("tsc_early_khz={khz}"));
            words.push("tsc=reliable".into());
        }
        if bare {
            words.push(guest::BARE_WORD.into());
        }
        words.join(" ")
    }

    /// QEMU's arguments for one VM.
    pub fn qemu_args(&self, vm: &QemuVm<'_>) -> Vec<OsString> {
        let bare = vm.gateway_port.is_none() && vm.report.is_none();
        let mut args = Args::default();
        args.add(&["-name", &vm.name, "-accel", vm.accel.name()]);
        args.add(&["-M", "microvm", "-smp", "1"]);
        args.add(&["-m", &self.config.memory_mib.to_string()]);
        args.add(&[
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
        ]);
        args.add(&["-kernel"]);
        args.0.push(self.config.kernel.clone().into());
        args.add(&["-initrd"]);
        args.0.push(vm.initrd.into());
        args.add(&["-append", &self.cmdline(vm.accel, bare), "-serial", "stdio"]);
        if let Some(report) = vm.report {
            let mut chardev = OsString::from("file,id=report,path=");
            chardev.push(report);
            args.add(&["-chardev"]);
            args.0.push(chardev);
            args.add(&["-device", "isa-serial,chardev=report,iobase=0x2f8,irq=3"]);
        }
        args.add(&[
            "-object",
            "rng-random,id=rng0,filename=/dev/urandom",
            "-device",
            "virtio-rng-device,rng=rng0",
        ]);
        if let Some(port) = vm.gateway_port {
            let relay = format!("{} nc 127.0.0.1 {port}", self.config.busybox.display());
            let netdev = format!(
                "user,id=n0,restrict=on,guestfwd=tcp:{}:{port}-cmd:{relay}",
                guest::GATEWAY_ALIAS
            );
            args.add(&["-netdev", &netdev, "-device", "virtio-net-device,netdev=n0"]);
        }
        args.0
    }
}

#[derive(Default)]
struct Args(Vec<OsString>);

impl Args {
    fn add(&mut self, items: &[&str]) {
        self.0.extend(items.iter().map(OsString::from));
    }
}

/// One VM's part of the command line.
#[derive(Debug, Clone)]
pub struct QemuVm<'a> {
    /// `-name` (`openshell-<sandbox id>`).
    pub name: String,
    /// The accelerator.
    pub accel: Accel,
    /// The concatenated initrd.
    pub initrd: &'a Path,
    /// The file the report port writes to (`None`: no report port).
    pub report: Option<&'a Path>,
    /// The gateway's port on the host's 127.0.0.1 (`None`: no network device at all).
    pub gateway_port: Option<u16>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boot() -> Boot {
        Boot {
            config: BootConfig {
                qemu: "qemu-system-x86_64".into(),
                kernel: "/cache/vmlinuz".into(),
                modules: "/cache/modules".into(),
                init: "/bin/init".into(),
                busybox: "/bin/busybox".into(),
                memory_mib: 256,
            },
            qemu: "/usr/bin/qemu-system-x86_64".into(),
            archive: Default::default(),
            tsc_khz: Some(2_445_416),
        }
    }

    fn joined(args: &[OsString]) -> String {
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn the_only_network_path_is_a_restricted_forward_to_the_hosts_loopback() {
        let vm = QemuVm {
            name: "openshell-sb1".into(),
            accel: Accel::Tcg,
            initrd: Path::new("/s/initrd"),
            report: Some(Path::new("/s/report")),
            gateway_port: Some(7443),
        };
        let text = joined(&boot().qemu_args(&vm));
        assert!(text.contains(
            "-netdev user,id=n0,restrict=on,guestfwd=tcp:10.0.2.100:7443-cmd:/bin/busybox nc 127.0.0.1 7443"
        ), "{text}");
        assert!(
            text.contains("-name openshell-sb1 -accel tcg -M microvm -smp 1 -m 256"),
            "{text}"
        );
        assert!(
            text.contains("-chardev file,id=report,path=/s/report"),
            "{text}"
        );
        assert!(text.contains("virtio-rng-device"), "{text}");
        assert!(!text.contains(guest::BARE_WORD), "{text}");
    }

    #[test]
    fn tcg_guests_are_told_the_tsc_frequency_and_kvm_guests_are_not() {
        let b = boot();
        assert!(b
            .cmdline(Accel::Tcg, false)
            .contains("tsc_early_khz=2445416"));
        assert!(!b.cmdline(Accel::Kvm, false).contains("tsc_early_khz"));
        assert!(b.cmdline(Accel::Tcg, true).ends_with(guest::BARE_WORD));
    }

    #[test]
    fn the_tsc_frequency_comes_from_a_constant_tsc_cpuinfo() {
        let info = "cpu MHz\t\t: 2445.406\nflags\t: fpu constant_tsc nonstop_tsc\n";
        assert_eq!(host_tsc_khz(info), Some(2_445_406));
        assert_eq!(host_tsc_khz("cpu MHz : 2445.406\nflags : fpu\n"), None);
    }
}
