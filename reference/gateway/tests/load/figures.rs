//! What the load run measures and the process limits it needs: latency summaries, peak memory,
//! the descriptor limit.

use std::time::Duration;

use serde_json::{json, Value};

/// Nearest-rank percentiles of a set of latencies.
#[derive(Debug, Clone, Copy)]
pub struct Latencies {
    pub count: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Latencies {
    /// Summarises `samples`; `None` when there are none.
    pub fn of(mut samples: Vec<Duration>) -> Option<Latencies> {
        if samples.is_empty() {
            return None;
        }
        samples.sort();
        let rank = |p: f64| samples[((p * samples.len() as f64).ceil() as usize).max(1) - 1];
        Some(Latencies {
            count: samples.len(),
            p50: rank(0.50),
            p99: rank(0.99),
            max: samples[samples.len() - 1],
        })
    }

    pub fn json(&self) -> Value {
        json!({
            "count": self.count,
            "p50_ms": ms(self.p50),
            "p99_ms": ms(self.p99),
            "max_ms": ms(self.max),
        })
    }
}

/// Milliseconds with three decimals, for the JSON line.
pub fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// A `Vm*` figure of /proc/self/status, in KiB.
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

/// Resident memory now, KiB.
pub fn rss_kib() -> u64 {
    status_kib("VmRSS")
}

/// Peak resident memory since the process started or since [`reset_peak_rss`], KiB.
pub fn peak_rss_kib() -> u64 {
    status_kib("VmHWM")
}

/// Starts a new peak-memory window, so a scenario's peak is its own and not an earlier one's.
/// Returns false where the kernel does not support it (the peak then counts from process start).
pub fn reset_peak_rss() -> bool {
    // "5" resets the peak resident set size (proc(5), /proc/pid/clear_refs, Linux 4.0+).
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// CPU time this process has used so far (user + system, all threads).
pub fn cpu_time() -> Duration {
    // SAFETY: an all-zero rusage is a valid value for getrusage to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage for getrusage to fill.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    assert_eq!(rc, 0, "getrusage: {}", std::io::Error::last_os_error());
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Makes sure this process may hold `needed` descriptors: raises the soft limit to the hard one
/// if it is lower, and fails with the fix when even the hard limit is too low.
///
/// Client and server live in one process here, so every connection costs two descriptors.
pub fn ensure_fd_limit(needed: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable rlimit for getrlimit to fill.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    assert_eq!(rc, 0, "getrlimit: {}", std::io::Error::last_os_error());
    if limit.rlim_cur >= needed {
        return;
    }
    assert!(
        limit.rlim_max >= needed,
        "the load run needs {needed} file descriptors but the hard limit is {}; raise it \
         (ulimit -Hn, or LimitNOFILE for a service) or run at a smaller size",
        limit.rlim_max
    );
    limit.rlim_cur = limit.rlim_max;
    // SAFETY: `limit` is a valid rlimit; raising the soft limit up to the hard one is allowed.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    assert_eq!(rc, 0, "setrlimit: {}", std::io::Error::last_os_error());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let samples = (1..=100).map(Duration::from_millis).collect();
        let l = Latencies::of(samples).unwrap();
        assert_eq!(
            (l.p50, l.p99, l.max),
            (
                Duration::from_millis(50),
                Duration::from_millis(99),
                Duration::from_millis(100)
            )
        );
        let one = Latencies::of(vec![Duration::from_millis(7)]).unwrap();
        assert_eq!((one.p50, one.p99), (one.max, one.max));
        assert!(Latencies::of(vec![]).is_none());
    }

    #[test]
    fn memory_figures_are_read_from_proc() {
        assert!(rss_kib() > 0);
        assert!(peak_rss_kib() >= rss_kib());
    }
}
