//! The lanes a run can target, and what each needs on this machine.
//!
//! A lane is a compute driver plus, for Docker, a runtime: `process`, `docker` (runc),
//! `docker-runsc` (gVisor), `vm` and `k3s`. A missing prerequisite makes a lane's cases
//! *skipped* with the reason, unless the lane is required (`--require-lanes`,
//! `OPENSHELL_REQUIRE_LANES`), in which case the run cannot start.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// Not a lane name.
    #[error("unknown driver {0:?} (expected process, docker, docker-runsc, vm or k3s)")]
    Unknown(String),
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, DriverError>;

/// A lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Driver {
    /// The process driver: chroot + namespaces, no container engine.
    Process,
    /// The Docker driver with runc.
    Docker,
    /// The Docker driver with gVisor (`runsc --network=host`).
    DockerRunsc,
    /// The VM driver: a QEMU microVM per sandbox, booted from the Docker lanes' images.
    Vm,
    /// The Kubernetes driver on a booted k3s, or on the cluster of `--kubeconfig`.
    K3s,
}

impl Driver {
    /// Every lane, in report order.
    pub const ALL: [Driver; 5] = [
        Driver::Process,
        Driver::Docker,
        Driver::DockerRunsc,
        Driver::Vm,
        Driver::K3s,
    ];
    /// The lanes this build can run.
    pub const AVAILABLE: [Driver; 5] = [
        Driver::Process,
        Driver::Docker,
        Driver::DockerRunsc,
        Driver::Vm,
        Driver::K3s,
    ];

    /// The lane's name.
    pub fn name(self) -> &'static str {
        match self {
            Driver::Process => "process",
            Driver::Docker => "docker",
            Driver::DockerRunsc => "docker-runsc",
            Driver::Vm => "vm",
            Driver::K3s => "k3s",
        }
    }

    /// Whether this build can run the lane at all.
    pub fn available(self) -> bool {
        Driver::AVAILABLE.contains(&self)
    }

    /// The gateway's `--driver` value.
    pub fn gateway_driver(self) -> &'static str {
        match self {
            Driver::Process => "process",
            Driver::Docker | Driver::DockerRunsc => "docker",
            Driver::Vm => "vm",
            Driver::K3s => "k8s",
        }
    }

    /// The `SandboxTemplate.runtime_class_name` the lane asks for: only what the lane needs
    /// (`runsc` for gVisor); "" leaves the driver's default (runc on the docker lane), since an
    /// implementation may refuse any platform setting it does not need.
    pub fn runtime_class(self) -> &'static str {
        match self {
            Driver::DockerRunsc => "runsc",
            _ => "",
        }
    }

    /// The default per-case timeout: generous upper bounds, far above the expected time.
    pub fn default_case_timeout(self) -> Duration {
        Duration::from_secs(match self {
            Driver::Process => 60,
            Driver::Docker => 90,
            Driver::DockerRunsc => 120,
            Driver::Vm | Driver::K3s => 300,
        })
    }

    /// The per-case timeout: `OPENSHELL_CONFORMANCE_TIMEOUT_<LANE>` (seconds, lane upper-cased
    /// with `_` for `-`) or the default.
    pub fn case_timeout(self) -> Duration {
        let var = format!(
            "OPENSHELL_CONFORMANCE_TIMEOUT_{}",
            self.name().to_uppercase().replace('-', "_")
        );
        std::env::var(var)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_secs)
            .unwrap_or_else(|| self.default_case_timeout())
    }
}

impl fmt::Display for Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Driver {
    type Err = DriverError;

    fn from_str(s: &str) -> Result<Driver> {
        Driver::ALL
            .into_iter()
            .find(|d| d.name() == s)
            .ok_or_else(|| DriverError::Unknown(s.to_string()))
    }
}

/// Parses a comma list of lanes (`process,docker,docker-runsc`); empty items are ignored.
pub fn parse_lanes(list: &str) -> Result<Vec<Driver>> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(Driver::from_str)
        .collect()
}

/// The lanes `OPENSHELL_REQUIRE_LANES` lists (unknown names are reported as an error).
pub fn required_lanes_from_env() -> Result<Vec<Driver>> {
    parse_lanes(&std::env::var("OPENSHELL_REQUIRE_LANES").unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lane_names_round_trip() {
        for d in Driver::ALL {
            assert_eq!(d.name().parse::<Driver>().unwrap(), d);
        }
    }

    #[test]
    fn lane_lists_parse_and_reject_unknown_names() {
        assert_eq!(
            parse_lanes("process, docker-runsc,").unwrap(),
            vec![Driver::Process, Driver::DockerRunsc]
        );
        assert!(parse_lanes("process,lxc")
            .unwrap_err()
            .to_string()
            .contains("lxc"));
    }

    #[test]
    fn every_lane_is_available() {
        assert!(Driver::Process.available() && Driver::DockerRunsc.available());
        assert!(Driver::Vm.available());
        assert!(Driver::K3s.available() && Driver::K3s.gateway_driver() == "k8s");
    }
}
