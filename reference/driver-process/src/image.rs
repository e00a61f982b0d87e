//! From a request to what runs: the fixture behind an image reference, the supervisor's argv and
//! its environment.

use std::collections::BTreeMap;

use openshell_fixtures::{content_hash, parse_image_ref, Catalog, Fixture, Inputs};

/// The supervisor's path inside every root.
pub const SUPERVISOR: &str = "/usr/local/bin/openshell-supervisor";
/// The `PATH` every sandbox starts with (the image env or the request may override it).
pub const DEFAULT_PATH: &str = "/usr/local/bin:/bin";

/// Errors of this module; each becomes `DriverError::ImageNotFound`.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// Not an `openshell-fixture/<name>:<hash>` reference: nothing else exists here.
    #[error("the process driver only runs fixture images (openshell-fixture/<name>:<hash>)")]
    Foreign,
    /// No fixture of that name in this gateway's catalog.
    #[error("no fixture named {0:?} in this gateway's fixture catalog")]
    Unknown(String),
    /// The fixture exists but its content differs from what the reference names.
    #[error("requested hash {requested}, but fixture {name:?} here has hash {actual} (rebuilt binaries or fixture files?)")]
    HashMismatch {
        name: String,
        requested: String,
        actual: String,
    },
    /// The fixture's files or the input binaries could not be read.
    #[error("cannot hash fixture {name:?}: {message}")]
    Unreadable { name: String, message: String },
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, ImageError>;

/// The fixture `reference` names, after checking its content hash against this gateway's inputs.
pub fn resolve<'c>(catalog: &'c Catalog, inputs: &Inputs, reference: &str) -> Result<&'c Fixture> {
    let (name, requested) = parse_image_ref(reference).map_err(|_| ImageError::Foreign)?;
    let fixture = catalog
        .get(name)
        .map_err(|_| ImageError::Unknown(name.to_string()))?;
    let actual = content_hash(catalog, fixture, inputs).map_err(|e| ImageError::Unreadable {
        name: name.to_string(),
        message: e.to_string(),
    })?;
    if actual != requested {
        return Err(ImageError::HashMismatch {
            name: name.to_string(),
            requested: requested.to_string(),
            actual,
        });
    }
    Ok(fixture)
}

/// The sandbox's argv, as Docker builds it: the image's entrypoint (the supervisor unless the
/// fixture names another), then the request's command or else the image's.
pub fn argv(
    entrypoint: &[String],
    fixture_command: &[String],
    request_command: &[String],
) -> Vec<String> {
    let command = if request_command.is_empty() {
        fixture_command
    } else {
        request_command
    };
    entrypoint.iter().chain(command.iter()).cloned().collect()
}

/// The supervisor's complete environment: `PATH`, then the image's env, then the request's.
/// Nothing of the gateway's own environment is inherited.
pub fn environment(
    fixture_env: &BTreeMap<String, String>,
    request_env: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::from([("PATH".to_string(), DEFAULT_PATH.to_string())]);
    env.extend(fixture_env.iter().map(|(k, v)| (k.clone(), v.clone())));
    env.extend(request_env.iter().map(|(k, v)| (k.clone(), v.clone())));
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn request_command_replaces_the_image_command() {
        let entry = strings(&[SUPERVISOR]);
        let image = strings(&["/bin/sleep", "9"]);
        assert_eq!(
            argv(&entry, &image, &[]),
            strings(&[SUPERVISOR, "/bin/sleep", "9"])
        );
        assert_eq!(
            argv(&entry, &image, &strings(&["/bin/true"])),
            strings(&[SUPERVISOR, "/bin/true"])
        );
        let rogue = strings(&["/usr/local/bin/openshell-probe", "rogue"]);
        assert_eq!(
            argv(&rogue, &[], &[]),
            rogue,
            "a fixture's own entrypoint replaces the supervisor"
        );
    }

    #[test]
    fn request_env_overrides_image_env_which_overrides_the_default_path() {
        let image = BTreeMap::from([
            ("A".to_string(), "image".to_string()),
            ("PATH".to_string(), "/x".to_string()),
        ]);
        let request = BTreeMap::from([
            ("A".to_string(), "request".to_string()),
            ("B".to_string(), "b".to_string()),
        ]);
        let env = environment(&image, &request);
        assert_eq!(env.len(), 3);
        assert_eq!(env["A"], "request");
        assert_eq!(env["B"], "b");
        assert_eq!(env["PATH"], "/x");
        assert_eq!(
            environment(&BTreeMap::new(), &BTreeMap::new())["PATH"],
            DEFAULT_PATH
        );
    }

    #[test]
    fn foreign_references_are_not_found() {
        let catalog = Catalog::load_default().unwrap();
        let inputs = Inputs {
            supervisor: "/nonexistent".into(),
            busybox: "/nonexistent".into(),
            probe: "/nonexistent".into(),
            extra_tree: None,
        };
        assert!(matches!(
            resolve(&catalog, &inputs, "busybox:latest"),
            Err(ImageError::Foreign)
        ));
        assert!(matches!(
            resolve(
                &catalog,
                &inputs,
                "openshell-fixture/no-such-fixture:0123456789ab"
            ),
            Err(ImageError::Unknown(_))
        ));
    }
}
