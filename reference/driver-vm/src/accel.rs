//! The accelerator: KVM where it works, else TCG (software emulation), and which one ran.
//!
//! `auto` probes KVM once with a short bounded bare boot (the driver's own archive, the marker
//! within [`PROBE_LIMIT`]) and caches the verdict in `<cache>/accel.json`, keyed by the QEMU
//! binary, the kernel and `/dev/kvm`, so the many gateway starts of a test run do not each pay
//! for a probe. (On the machines this was written on, `/dev/kvm` exists but a KVM guest hangs in
//! early boot: the probe's timeout is what `auto` learns there.)

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use crate::bare;
use crate::boot::Boot;

/// How long the KVM probe may take to reach the marker (a working KVM needs well under 1 s).
pub const PROBE_LIMIT: Duration = Duration::from_secs(8);
/// The verdict file in the cache folder.
pub const VERDICT_FILE: &str = "accel.json";

/// An accelerator QEMU runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// Hardware virtualisation.
    Kvm,
    /// QEMU's software emulation.
    Tcg,
}

impl Accel {
    /// QEMU's `-accel` name.
    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The `--vm-accel` choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// KVM if the (cached) probe says it works, else TCG.
    Auto,
    /// This one, unprobed.
    Fixed(Accel),
}

impl FromStr for Choice {
    type Err = String;

    fn from_str(s: &str) -> Result<Choice, String> {
        match s {
            "auto" => Ok(Choice::Auto),
            "kvm" => Ok(Choice::Fixed(Accel::Kvm)),
            "tcg" => Ok(Choice::Fixed(Accel::Tcg)),
            other => Err(format!("unknown accelerator {other:?} (auto, kvm or tcg)")),
        }
    }
}

/// The accelerator chosen, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Verdict {
    /// What the probe was about (QEMU, kernel, `/dev/kvm`); a different key probes again.
    pub key: String,
    /// The accelerator.
    pub accel: Accel,
    /// Why (`kvm reached the marker in 0.4 s`, `no /dev/kvm`, `kvm: no bare boot marker…`).
    pub why: String,
}

fn key_of(boot: &Boot) -> String {
    let stamp = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| {
                use std::os::unix::fs::MetadataExt;
                format!("{}:{}:{}", p.display(), m.len(), m.mtime())
            })
            .unwrap_or_else(|_| format!("{}:absent", p.display()))
    };
    format!(
        "qemu={} kernel={} kvm={}",
        stamp(&boot.qemu),
        stamp(&boot.config.kernel),
        stamp(Path::new("/dev/kvm"))
    )
}

/// Resolves `choice`; for `auto` from the verdict cached in `cache_dir`, or by probing (and
/// caching the verdict, when the folder is writable).
pub async fn resolve(choice: Choice, boot: &Boot, cache_dir: &Path) -> Verdict {
    let key = key_of(boot);
    if let Choice::Fixed(accel) = choice {
        return Verdict {
            key,
            accel,
            why: "chosen with --vm-accel".into(),
        };
    }
    let file = cache_dir.join(VERDICT_FILE);
    if let Some(cached) = std::fs::read_to_string(&file)
        .ok()
        .and_then(|t| serde_json::from_str::<Verdict>(&t).ok())
        .filter(|v| v.key == key)
    {
        return Verdict {
            why: format!("{} (cached in {})", cached.why, file.display()),
            ..cached
        };
    }
    let verdict = probe(boot, key, cache_dir).await;
    if let Ok(json) = serde_json::to_string_pretty(&verdict) {
        let tmp = file.with_extension("json.tmp");
        if std::fs::write(&tmp, json).is_ok() {
            let _ = std::fs::rename(&tmp, &file);
        }
    }
    verdict
}

async fn probe(boot: &Boot, key: String, cache_dir: &Path) -> Verdict {
    let usable = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm");
    if let Err(e) = usable {
        return Verdict {
            key,
            accel: Accel::Tcg,
            why: format!("/dev/kvm is not usable ({e})"),
        };
    }
    let dir = if cache_dir.is_dir() {
        cache_dir.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    match bare::run(boot, Accel::Kvm, None, &dir, PROBE_LIMIT).await {
        Ok(run) => Verdict {
            key,
            accel: Accel::Kvm,
            why: format!("a KVM bare boot reached its marker in {:?}", run.to_marker),
        },
        Err(e) => Verdict {
            key,
            accel: Accel::Tcg,
            why: format!("the KVM probe failed: {e}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_cached_verdict_for_the_same_qemu_and_kernel_is_used_without_a_probe() {
        let tmp = tempfile::tempdir().unwrap();
        for f in ["qemu", "vmlinuz"] {
            std::fs::write(tmp.path().join(f), f).unwrap();
        }
        let boot = Boot {
            config: crate::boot::BootConfig {
                qemu: tmp.path().join("qemu"),
                kernel: tmp.path().join("vmlinuz"),
                modules: tmp.path().into(),
                init: tmp.path().into(),
                busybox: tmp.path().into(),
                memory_mib: 256,
            },
            qemu: tmp.path().join("qemu"),
            archive: Default::default(),
            tsc_khz: None,
        };
        let cached = Verdict {
            key: key_of(&boot),
            accel: Accel::Kvm,
            why: "probed earlier".into(),
        };
        std::fs::write(
            tmp.path().join(VERDICT_FILE),
            serde_json::to_string(&cached).unwrap(),
        )
        .unwrap();
        let verdict = resolve(Choice::Auto, &boot, tmp.path()).await;
        assert_eq!(verdict.accel, Accel::Kvm);
        assert!(verdict.why.contains("cached in"), "{}", verdict.why);
        let fixed = resolve(Choice::Fixed(Accel::Tcg), &boot, tmp.path()).await;
        assert_eq!(fixed.accel, Accel::Tcg);
    }

    #[test]
    fn choices_parse() {
        assert_eq!("auto".parse::<Choice>(), Ok(Choice::Auto));
        assert_eq!("tcg".parse::<Choice>(), Ok(Choice::Fixed(Accel::Tcg)));
        assert!("hvf".parse::<Choice>().unwrap_err().contains("hvf"));
    }
}
