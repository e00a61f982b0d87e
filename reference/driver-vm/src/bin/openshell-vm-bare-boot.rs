//! `openshell-vm-bare-boot`: the bare boot baseline, timed, as one JSON line.
//!
//! Boots the VM driver's kernel and an image's cached root archive (packed on first use, as
//! the driver does) with the init printing its marker and powering off at once, and prints
//! `{"image":…,"accel":…,"accel_why":…,"to_marker_ms":…,"to_exit_ms":…}`. The end point of the
//! baseline is the marker. Without `--image`, only the driver's own archive boots.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use openshell_driver_vm::{accel, bare, boot};

/// Time a bare boot of the VM driver's kernel and an image's root.
#[derive(Debug, Parser)]
#[command(name = "openshell-vm-bare-boot")]
struct Args {
    /// The image whose cached root archive boots (from the local Docker engine).
    #[arg(long)]
    image: Option<String>,
    /// The cache folder of ci/setup-vm.sh.
    #[arg(
        long,
        env = "OPENSHELL_VM_CACHE",
        default_value = "/var/cache/openshell/vm"
    )]
    cache_dir: PathBuf,
    /// `auto`, `kvm` or `tcg`.
    #[arg(long, default_value = "auto")]
    accel: accel::Choice,
    /// The guest init. Default: `openshell-vm-init` beside this binary.
    #[arg(long)]
    init: Option<PathBuf>,
    /// The QEMU binary.
    #[arg(long, default_value = "qemu-system-x86_64")]
    qemu: PathBuf,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 256)]
    memory_mib: u32,
    /// Seconds the boot may take.
    #[arg(long, default_value_t = 120)]
    limit_secs: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let init = match args.init {
        Some(p) => p,
        None => std::env::current_exe()?.with_file_name("openshell-vm-init"),
    };
    let boot = boot::Boot::load(boot::BootConfig {
        qemu: args.qemu,
        kernel: args.cache_dir.join("vmlinuz"),
        modules: args.cache_dir.join("modules"),
        init,
        busybox: "/bin/busybox".into(),
        memory_mib: args.memory_mib,
    })?;
    let verdict = accel::resolve(args.accel, &boot, &args.cache_dir).await;
    let root = match &args.image {
        Some(image) => {
            let docker = openshell_images::docker::connect(None)?;
            let cached = openshell_images::initramfs::cached_root(&docker, image, &args.cache_dir)
                .await
                .with_context(|| format!("packing the root of {image}"))?;
            Some(cached.path)
        }
        None => None,
    };
    let limit = Duration::from_secs(args.limit_secs);
    let run = bare::run(
        &boot,
        verdict.accel,
        root.as_deref(),
        &std::env::temp_dir(),
        limit,
    )
    .await?;
    let line = serde_json::json!({
        "image": args.image,
        "accel": run.accel,
        "accel_why": verdict.why,
        "to_marker_ms": run.to_marker.as_millis() as u64,
        "to_exit_ms": run.to_exit.as_millis() as u64,
    });
    println!("{line}");
    Ok(())
}
