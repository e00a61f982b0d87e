//! `hook-record` and `hook-check`: the boot hook's identity and timing, checked from inside
//! (OSC-BOOT-001), so the verdict never rests on a marker file alone.
//!
//! - `hook-record PATH [--linger-ms N]` is the boot hook (`/etc/openshell/boot.sh` execs it): it
//!   records what it runs with ([`Creds`]), lingers N ms (default 300, so a main process started
//!   concurrently would start measurably before the hook ends), then writes the record with its
//!   finishing time to `PATH.tmp` and renames it to `PATH` (the record exists only once the hook
//!   has finished).
//! - `hook-check PATH [--hold SECS]` is the main process: at its very start it reads the record,
//!   compares it with its own credentials, checks the hook finished before it started and did not
//!   run privileged, then exits with the verdict:
//!
//! | exit | meaning |
//! |---|---|
//! | 0 | every check holds (after `--hold` seconds, default 4, so the sandbox is `Ready` first) |
//! | 20 | no record: the hook did not run, or had not finished when the main process started |
//! | 21 | the hook ran with other credentials than the main process (uid, gid, groups, capabilities, `no_new_privs`, network namespace, seccomp filters) |
//! | 22 | the main process started before the hook finished |
//! | 23 | the hook ran as root or with capabilities |
//! | 2 | usage |

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::creds::Creds;

const FINISHED: &str = "finished_unix_ns";

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

fn say(line: &str) {
    use std::io::Write;
    let _ = std::io::stderr().write_all(format!("openshell-probe: {line}\n").as_bytes());
}

/// Parses `PATH [--FLAG N]`: the path and the flag's number (or `default`).
fn parse(args: &[String], flag: &str, default: u64) -> Result<(String, u64), String> {
    let mut path = None;
    let mut value = default;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if arg == flag {
            value = it
                .next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("{flag} needs a number"))?;
        } else if path.is_none() && !arg.starts_with("--") {
            path = Some(arg.clone());
        } else {
            return Err(format!("unexpected argument {arg:?}"));
        }
    }
    Ok((path.ok_or("a record path is required")?, value))
}

/// `hook-record`; returns the exit status.
pub fn record(args: &[String]) -> u8 {
    let (path, linger_ms) = match parse(args, "--linger-ms", 300) {
        Ok(p) => p,
        Err(e) => {
            say(&format!("hook-record: {e}"));
            return 2;
        }
    };
    let creds = Creds::own();
    std::thread::sleep(Duration::from_millis(linger_ms));
    let text = format!("{}{FINISHED}={}\n", creds.to_record(), now_ns());
    let tmp = format!("{path}.tmp");
    if let Err(e) = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, &path)) {
        say(&format!("hook-record: writing {path}: {e}"));
        return 1;
    }
    say(&format!("hook-record: recorded {path}"));
    0
}

/// The verdict of `hook-check` on a record: 0, or the code of the first failed check.
pub fn verdict(record: Option<&str>, own: &Creds, started_ns: u128) -> (u8, String) {
    let Some(text) = record else {
        return (
            20,
            "no hook record: the hook did not run, or had not finished when the main process started".into(),
        );
    };
    let hook = Creds::from_record(text);
    let diff = own.differences(&hook);
    if !diff.is_empty() {
        return (
            21,
            format!(
                "the hook ran with other credentials than the main process: {}",
                diff.join("; ")
            ),
        );
    }
    let finished: u128 = hook
        .fields
        .get(FINISHED)
        .and_then(|v| v.parse().ok())
        .unwrap_or(u128::MAX);
    if started_ns < finished {
        return (
            22,
            format!(
                "the main process started {:.1} ms before the hook finished",
                (finished.saturating_sub(started_ns)) as f64 / 1e6
            ),
        );
    }
    let privileged = hook
        .fields
        .get("uid")
        .is_some_and(|u| u.split('/').any(|id| id == "0"))
        || hook
            .fields
            .get("caps")
            .is_some_and(|c| c.split(' ').any(|set| !set.ends_with("=0x0")));
    if privileged {
        return (
            23,
            format!(
                "the hook ran privileged: uid {}, {}",
                hook.fields.get("uid").map_or("?", String::as_str),
                hook.fields.get("caps").map_or("?", String::as_str)
            ),
        );
    }
    (
        0,
        format!(
            "the hook finished {:.1} ms before the main process started, with the same credentials ({})",
            (started_ns - finished) as f64 / 1e6,
            hook.fields.get("uid").map_or("?", String::as_str)
        ),
    )
}

/// `hook-check`; returns the exit status.
pub fn check(args: &[String]) -> u8 {
    let started_ns = now_ns();
    let (path, hold) = match parse(args, "--hold", 4) {
        Ok(p) => p,
        Err(e) => {
            say(&format!("hook-check: {e}"));
            return 2;
        }
    };
    let record = std::fs::read_to_string(&path).ok();
    let (code, detail) = verdict(record.as_deref(), &Creds::own(), started_ns);
    if code != 0 {
        say(&format!("hook-check FAIL (exit {code}): {detail}"));
        return code;
    }
    say(&format!("hook-check ok: {detail}; holding {hold} s"));
    std::thread::sleep(Duration::from_secs(hold));
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unprivileged() -> Creds {
        let mut c = Creds::own();
        c.fields.insert("uid".into(), "1000/1000".into());
        c.fields.insert(
            "caps".into(),
            "eff=0x0 prm=0x0 inh=0x0 bnd=0x0 amb=0x0".into(),
        );
        c
    }

    fn record_of(c: &Creds, finished: u128) -> String {
        format!("{}{FINISHED}={finished}\n", c.to_record())
    }

    #[test]
    fn a_finished_unprivileged_hook_with_the_same_credentials_passes() {
        let own = unprivileged();
        let (code, detail) = verdict(Some(&record_of(&own, 100)), &own, 200);
        assert_eq!(code, 0, "{detail}");
    }

    #[test]
    fn each_broken_rule_has_its_own_exit_code() {
        let own = unprivileged();
        assert_eq!(verdict(None, &own, 200).0, 20);
        let mut root = own.clone();
        root.fields.insert("uid".into(), "0/0".into());
        assert_eq!(verdict(Some(&record_of(&root, 100)), &own, 200).0, 21);
        assert_eq!(verdict(Some(&record_of(&own, 300)), &own, 200).0, 22);
        let mut capable = own.clone();
        capable.fields.insert(
            "caps".into(),
            "eff=0x0 prm=0x0 inh=0x0 bnd=0x1ff amb=0x0".into(),
        );
        // Same credentials on both sides, but privileged: 23.
        assert_eq!(
            verdict(Some(&record_of(&capable, 100)), &capable, 200).0,
            23
        );
    }
}
