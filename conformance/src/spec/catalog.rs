//! The case catalog: every case with its id, the requirements it covers, its level, the lanes it
//! applies to, and its body. Fixture cases come from `fixtures/manifest.toml` (one per fixture,
//! `fixture-<name>`); the others are named in [`crate::cases::named`].

use futures::future::BoxFuture;
use openshell_fixtures::{Catalog, Fixture};

use crate::check::CaseResult;
use crate::features::Feature;
use crate::harness::Harness;
use crate::spec::requirements::Level;
use crate::spec::Req;
use crate::Driver;

/// A named case's body.
pub type CaseFn = fn(Harness) -> BoxFuture<'static, CaseResult>;

/// What a case runs.
#[derive(Clone)]
pub enum Body {
    /// Create the fixture with nothing else set and assert its manifest outcome.
    Fixture(Box<Fixture>),
    /// A named case.
    Fn(CaseFn),
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Body::Fixture(fx) => write!(f, "Fixture({})", fx.name),
            Body::Fn(_) => f.write_str("Fn"),
        }
    }
}

/// One case.
#[derive(Debug, Clone)]
pub struct Case {
    /// Stable id, e.g. `fixture-stale-policy` or `error-never-overwritten`.
    pub id: String,
    /// The requirements it covers; the first is the one a failure names unless the body says.
    pub requirements: Vec<Req>,
    /// `extended` if any requirement is, else `core`.
    pub level: Level,
    /// The lanes it applies to.
    pub drivers: Vec<Driver>,
    /// The features it needs (none for a core case).
    pub features: Vec<Feature>,
    /// One line for `list`.
    pub summary: String,
    /// What it runs.
    pub body: Body,
}

impl Case {
    /// Whether the case applies to `driver`.
    pub fn applies_to(&self, driver: Driver) -> bool {
        self.drivers.contains(&driver)
    }
}

/// The lanes of every fixture case (gVisor runs them best-effort, see [`fixture_env`]).
const FIXTURE_LANES: &[Driver] = &[
    Driver::Process,
    Driver::Docker,
    Driver::DockerRunsc,
    Driver::Vm,
    Driver::K3s,
];

/// The requirements a fixture's outcome shows, beside `OSC-API-009` (every fixture's). A fixture
/// case that fails names all of them (and OSC-API-009): the outcome is one observation of each.
pub fn fixture_requirements(name: &str) -> &'static [Req] {
    match name {
        "good" => &[Req::READY_001, Req::BOOT_005],
        "stale-policy" | "malformed-policy" => &[Req::ERR_001],
        "missing-user" => &[Req::ERR_002],
        "boot-ok" => &[Req::BOOT_001],
        "boot-fail" => &[Req::BOOT_002],
        "boot-noexec" => &[Req::BOOT_003],
        "boot-hang" => &[Req::BOOT_004],
        "main-exits" => &[Req::READY_002],
        "workload-probe" => &[Req::SEC_005],
        "no-session" => &[Req::READY_003],
        "rogue-session" => &[Req::READY_004],
        "rogue-hygiene" => &[Req::HYG_001],
        "rogue-credentials" => &[Req::SEC_001],
        _ => &[],
    }
}

/// The features a fixture's case needs: the rogue probes must be the image's entrypoint, the
/// hanging hook needs the hook timeout. (The core fixtures `no-session` and `rogue-session` need
/// the entrypoint too, but a core rule cannot be declared away.)
pub fn fixture_features(name: &str) -> &'static [Feature] {
    match name {
        "rogue-hygiene" | "rogue-credentials" => &[Feature::ImageEntrypoint],
        "boot-hang" => &[Feature::BootHookTimeout],
        _ => &[],
    }
}

/// The lanes of a fixture's case: every lane, except that the workload probe's namespace checks
/// cannot hold under gVisor's best-effort mode.
pub fn fixture_lanes(name: &str) -> Vec<Driver> {
    FIXTURE_LANES
        .iter()
        .copied()
        .filter(|d| !(name == "workload-probe" && *d == Driver::DockerRunsc))
        .collect()
}

/// Environment a lane adds to fixture cases: under gVisor every fixture runs with
/// `OPENSHELL_BEST_EFFORT_FAILURES=1`, since `unshare(CLONE_NEWNET)` fails there by design
/// (strict mode on gVisor is the case `runsc-strict-netns-is-fatal`).
pub fn fixture_env(driver: Driver) -> Vec<(String, String)> {
    match driver {
        Driver::DockerRunsc => vec![(
            openshell_proto::env::BEST_EFFORT_FAILURES.to_string(),
            "1".to_string(),
        )],
        _ => Vec::new(),
    }
}

fn level_of(ids: &[Req]) -> Level {
    ids.iter().map(|r| r.level()).max().unwrap_or(Level::Core)
}

/// Every case: one per fixture of `fixtures`, then the named cases.
pub fn all(fixtures: &Catalog) -> Vec<Case> {
    let mut cases = Vec::new();
    for fixture in fixtures.fixtures() {
        let mut reqs: Vec<Req> = fixture_requirements(&fixture.name).to_vec();
        reqs.push(Req::API_009);
        cases.push(Case {
            id: format!("fixture-{}", fixture.name),
            level: level_of(&reqs),
            requirements: reqs,
            drivers: fixture_lanes(&fixture.name),
            features: fixture_features(&fixture.name).to_vec(),
            summary: format!("{}: {}", fixture.name, fixture.description),
            body: Body::Fixture(Box::new(fixture.clone())),
        });
    }
    for named in crate::cases::named() {
        let reqs: Vec<Req> = named.requirements.to_vec();
        cases.push(Case {
            id: named.id.to_string(),
            level: level_of(&reqs),
            requirements: reqs,
            drivers: named.drivers.to_vec(),
            features: named.features.to_vec(),
            summary: named.summary.to_string(),
            body: Body::Fn(named.body),
        });
    }
    cases
}

/// Whether `id` matches a `--filter` pattern: a substring, a glob with `*`, or `=<id>` exactly; a
/// comma list matches any of its items; `level:core` / `level:extended` and requirement ids match too.
pub fn matches(case: &Case, pattern: &str) -> bool {
    pattern
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .any(|p| {
            if let Some(exact) = p.strip_prefix('=') {
                return case.id == exact;
            }
            if let Some(level) = p.strip_prefix("level:") {
                return case.level.name() == level;
            }
            if case.requirements.iter().any(|r| r.id() == p) {
                return true;
            }
            glob(p, &case.id)
        })
}

fn glob(pattern: &str, text: &str) -> bool {
    if !pattern.contains('*') {
        return text.contains(pattern);
    }
    let parts: Vec<&str> = pattern.split('*').collect();
    let mut rest = text;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(part) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fixture_gives_a_case_citing_the_manifest_requirement() {
        let fixtures = Catalog::load_default().unwrap();
        let cases = all(&fixtures);
        for fixture in fixtures.fixtures() {
            let case = cases
                .iter()
                .find(|c| c.id == format!("fixture-{}", fixture.name))
                .unwrap();
            assert!(case.requirements.contains(&Req::API_009));
        }
    }

    #[test]
    fn filters_match_substrings_globs_levels_and_requirements() {
        let fixtures = Catalog::load_default().unwrap();
        let cases = all(&fixtures);
        let stale = cases
            .iter()
            .find(|c| c.id == "fixture-stale-policy")
            .unwrap();
        assert!(matches(stale, "stale"));
        assert!(matches(stale, "fixture-*-policy"));
        assert!(!matches(stale, "boot-*"));
        assert!(matches(stale, "OSC-ERR-001"));
        assert!(matches(stale, "level:core"));
        assert!(matches(stale, "nothing,stale"));
        assert!(matches(stale, "=fixture-stale-policy"));
        assert!(!matches(stale, "=fixture-stale"));
    }

    #[test]
    fn no_core_case_needs_a_feature() {
        for case in all(&Catalog::load_default().unwrap()) {
            assert!(
                case.level == Level::Extended || case.features.is_empty(),
                "core case {} needs {:?}: a seed's rule cannot be declared away",
                case.id,
                case.features
            );
        }
    }

    #[test]
    fn case_ids_are_unique() {
        let cases = all(&Catalog::load_default().unwrap());
        let mut ids: Vec<&str> = cases.iter().map(|c| c.id.as_str()).collect();
        ids.sort_unstable();
        let before = ids.len();
        ids.dedup();
        assert_eq!(before, ids.len());
    }
}
