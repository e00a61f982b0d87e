//! `openshell-vm-init`: PID 1 of a VM driver guest.
//!
//! The kernel unpacks the initramfs (the image's root, then the driver's files, then the
//! sandbox's launch description and credential) and runs this program (`rdinit=`). It prepares
//! the guest, starts the image's entrypoint as its only child, reaps orphans while that runs, and
//! carries the child's exit code out of the VM on the second serial port before powering off.
//! Its own messages go to the console, prefixed `openshell-vm-init: `. The order of the steps is
//! the checklist in [`main`]. A failure before the main process starts is reported as
//! `openshell-init-error <message>` instead of an exit code.

mod sys;

use std::io::Write;
use std::os::unix::process::CommandExt;

use openshell_driver_vm::guest::{self, Launch};

fn say(message: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "openshell-vm-init: {message}");
}

/// Writes one line to the report port and waits until it has left the guest.
fn report(line: &str) {
    match std::fs::OpenOptions::new()
        .write(true)
        .open(guest::REPORT_PORT)
    {
        Ok(mut port) => {
            let _ = port.write_all(format!("{line}\n").as_bytes());
            sys::drain(&port);
        }
        Err(e) => say(&format!("cannot open {}: {e}", guest::REPORT_PORT)),
    }
}

fn fail(message: &str) -> ! {
    say(message);
    report(&format!("{}{message}", guest::ERROR_PREFIX));
    sys::power_off()
}

fn main() {
    if std::process::id() != 1 {
        eprintln!("openshell-vm-init: only runs as PID 1 of a VM driver guest");
        std::process::exit(2);
    }
    // 1. The kernel's filesystems: /proc (the supervisor and the workload read it), /sys (the
    //    network devices appear there) and devtmpfs on /dev (the serial ports, null, urandom).
    let nosuid = libc::MS_NOSUID | libc::MS_NOEXEC | libc::MS_NODEV;
    for (fstype, target, flags) in [
        (c"proc", "/proc", nosuid),
        (c"sysfs", "/sys", nosuid),
        (c"devtmpfs", "/dev", libc::MS_NOSUID | libc::MS_NOEXEC),
    ] {
        if let Err(e) = sys::mount(fstype, target, flags) {
            fail(&format!("mounting {target}: {e}"));
        }
    }
    // 2. The bare boot (the baseline a benchmark times): the marker, then power off.
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    if cmdline.split_whitespace().any(|w| w == guest::BARE_WORD) {
        println!("{}", guest::BARE_MARKER);
        let _ = std::io::stdout().flush();
        sys::power_off();
    }
    // 3. Modules, in dependency order: virtio-mmio transport, then the network device.
    load_modules();
    // 4. The network: lo, and eth0 on QEMU's user-mode network, where only the gateway's alias
    //    answers (QEMU runs it with `restrict=on`).
    if let Err(e) = sys::interface_up("lo", None) {
        fail(&format!("bringing up lo: {e}"));
    }
    wait_for_interface("eth0");
    if let Err(e) = sys::interface_up("eth0", Some((guest::GUEST_ADDR, guest::GUEST_NETMASK))) {
        fail(&format!("configuring eth0: {e}"));
    }
    // 5. What to run, and the credential: read, then deleted before anything else runs, so the
    //    workload never finds them.
    let launch = read_launch();
    // 6. The main process, our only child: its output is the console.
    println!("{}", guest::LAUNCH_MARKER);
    let _ = std::io::stdout().flush();
    let child = start(&launch);
    // 7. Reap everything (orphans come to PID 1) until the main process has ended.
    let code = loop {
        match sys::wait_any() {
            Ok(Some((pid, code))) if pid == child => break code,
            Ok(Some(_)) => {}
            Ok(None) => fail("the main process vanished"),
            Err(e) => fail(&format!("waiting for the main process: {e}")),
        }
    };
    // 8. Nothing outlives it; then its code leaves the VM, and the VM powers off.
    sys::kill_all();
    while let Ok(Some(_)) = sys::wait_any() {}
    report(&format!("{}{code}", guest::EXIT_PREFIX));
    sys::power_off()
}

fn load_modules() {
    for (name, _) in guest::MODULES {
        let path = format!("{}/{name}.ko", guest::MODULES_DIR);
        let loaded = std::fs::File::open(&path).and_then(|file| sys::load_module(&file));
        match loaded {
            Ok(()) => {}
            Err(e) if guest::OPTIONAL_MODULES.contains(name) => {
                say(&format!("optional module {name} not loaded: {e}"))
            }
            Err(e) => fail(&format!("loading module {path}: {e}")),
        }
    }
}

/// Waits (bounded) for the interface to appear: the driver's probe usually runs within the
/// module load, but a device may bind later.
fn wait_for_interface(name: &str) {
    let path = format!("/sys/class/net/{name}");
    for _ in 0..500 {
        if std::path::Path::new(&path).exists() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    fail(&format!(
        "no network interface {name} after loading virtio_net"
    ));
}

fn read_launch() -> Launch {
    let text = std::fs::read_to_string(guest::LAUNCH_PATH)
        .unwrap_or_else(|e| fail(&format!("reading {}: {e}", guest::LAUNCH_PATH)));
    let token = std::fs::read_to_string(guest::CREDENTIAL_PATH)
        .unwrap_or_else(|e| fail(&format!("reading {}: {e}", guest::CREDENTIAL_PATH)));
    for path in [guest::LAUNCH_PATH, guest::CREDENTIAL_PATH] {
        if let Err(e) = std::fs::remove_file(path) {
            fail(&format!("deleting {path}: {e}"));
        }
    }
    let mut launch: Launch = serde_json::from_str(&text)
        .unwrap_or_else(|e| fail(&format!("parsing {}: {e}", guest::LAUNCH_PATH)));
    if launch.argv.is_empty() {
        fail("the image has neither an entrypoint nor a command");
    }
    launch.env.insert(
        openshell_proto::env::SANDBOX_TOKEN.to_string(),
        token.trim_end_matches('\n').to_string(),
    );
    launch
}

fn start(launch: &Launch) -> i32 {
    let dir = if launch.working_dir.is_empty() {
        "/"
    } else {
        launch.working_dir.as_str()
    };
    let mut command = std::process::Command::new(&launch.argv[0]);
    command
        .args(&launch.argv[1..])
        .env_clear()
        .envs(&launch.env)
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .process_group(0);
    match command.spawn() {
        Ok(child) => child.id() as i32,
        // As a shell would: the message, and 127 (not found) or 126 (not executable).
        Err(e) => {
            say(&format!("cannot start {:?}: {e}", launch.argv[0]));
            let code = if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            report(&format!("{}{code}", guest::EXIT_PREFIX));
            sys::power_off()
        }
    }
}
