//! The fixture image references a conformance run uses: `openshell-fixture/<name>:<content-hash>`, the hash
//! computed by `openshell_fixtures::content_hash` over the fixture tree and the binaries every
//! root gets (supervisor, busybox, probe). The gateway's driver computes the same hash (process
//! driver) or finds the image by that tag (Docker driver), so the suite and the gateway must use
//! the same binaries: by default the siblings of the gateway binary and `/bin/busybox`
//! (`OPENSHELL_SUPERVISOR_BIN`, `OPENSHELL_PROBE_BIN`, `OPENSHELL_BUSYBOX` override them).
//!
//! A vendor whose images were built elsewhere names them in a TOML file (`<fixture> = "<ref>"`)
//! given as `OPENSHELL_FIXTURE_IMAGES`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use openshell_fixtures::{content_hash, image_ref, Catalog, Inputs};

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum ImagesError {
    /// The override file could not be read or parsed.
    #[error("OPENSHELL_FIXTURE_IMAGES {path}: {message}")]
    Overrides { path: PathBuf, message: String },
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, ImagesError>;

/// The references of a run, or why there are none.
#[derive(Debug, Clone)]
pub struct Images {
    refs: BTreeMap<String, String>,
    unavailable: Option<String>,
}

/// The default inputs: the gateway binary's siblings and `/bin/busybox`, each overridable.
pub fn default_inputs(gateway_bin: &Path) -> Inputs {
    let dir = gateway_bin
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let beside = Inputs::beside(&dir);
    let pick =
        |var: &str, default: PathBuf| std::env::var_os(var).map(PathBuf::from).unwrap_or(default);
    Inputs {
        supervisor: pick("OPENSHELL_SUPERVISOR_BIN", beside.supervisor),
        busybox: pick("OPENSHELL_BUSYBOX", beside.busybox),
        probe: pick("OPENSHELL_PROBE_BIN", beside.probe),
        extra_tree: std::env::var_os("OPENSHELL_EXTRA_TREE").map(PathBuf::from),
    }
}

impl Images {
    /// Computes every fixture's reference from `inputs`, then applies `OPENSHELL_FIXTURE_IMAGES`.
    pub fn compute(catalog: &Catalog, inputs: &Inputs) -> Result<Images> {
        let mut images = Images {
            refs: BTreeMap::new(),
            unavailable: None,
        };
        let missing: Vec<String> = [&inputs.supervisor, &inputs.busybox, &inputs.probe]
            .into_iter()
            .filter(|p| !p.exists())
            .map(|p| p.display().to_string())
            .collect();
        if missing.is_empty() {
            for fixture in catalog.fixtures() {
                match content_hash(catalog, fixture, inputs) {
                    Ok(hash) => {
                        images
                            .refs
                            .insert(fixture.name.clone(), image_ref(&fixture.name, &hash));
                    }
                    Err(e) => {
                        images.unavailable = Some(format!("hashing fixture {}: {e}", fixture.name))
                    }
                }
            }
        } else {
            images.unavailable = Some(format!(
                "fixture inputs missing: {} (build them: cargo build -p openshell-supervisor -p openshell-probe; \
                 apt-get install busybox-static)",
                missing.join(", ")
            ));
        }
        if let Some(path) = std::env::var_os("OPENSHELL_FIXTURE_IMAGES") {
            images.apply_overrides(Path::new(&path))?;
        }
        Ok(images)
    }

    /// Explicit references (tests, vendors).
    pub fn from_map(refs: BTreeMap<String, String>) -> Images {
        Images {
            refs,
            unavailable: None,
        }
    }

    fn apply_overrides(&mut self, path: &Path) -> Result<()> {
        let bad = |message: String| ImagesError::Overrides {
            path: path.to_path_buf(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let map: BTreeMap<String, String> =
            toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
        self.refs.extend(map);
        if !self.refs.is_empty() {
            self.unavailable = None;
        }
        Ok(())
    }

    /// The reference of `fixture`, or why there is none.
    pub fn get(&self, fixture: &str) -> std::result::Result<&str, String> {
        match self.refs.get(fixture) {
            Some(r) => Ok(r),
            None => Err(self
                .unavailable
                .clone()
                .unwrap_or_else(|| format!("no image reference for fixture {fixture:?}"))),
        }
    }

    /// The fixture whose image `reference` is.
    pub fn fixture_of(&self, reference: &str) -> Option<&str> {
        self.refs
            .iter()
            .find(|(_, r)| r.as_str() == reference)
            .map(|(name, _)| name.as_str())
    }

    /// Every reference, by fixture name.
    pub fn all(&self) -> &BTreeMap<String, String> {
        &self.refs
    }

    /// Why no reference exists, if so.
    pub fn unavailable(&self) -> Option<&str> {
        self.unavailable.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_inputs_make_images_unavailable_with_the_paths() {
        let catalog = Catalog::load_default().unwrap();
        let inputs = Inputs {
            supervisor: "/nonexistent/sup".into(),
            busybox: "/nonexistent/bb".into(),
            probe: "/nonexistent/probe".into(),
            extra_tree: None,
        };
        let images = Images::compute(&catalog, &inputs).unwrap();
        let why = images.get("good").unwrap_err();
        assert!(
            why.contains("/nonexistent/sup") && why.contains("/nonexistent/probe"),
            "{why}"
        );
    }
}
