//! The fixture image references a run uses: `openshell-fixture/<name>:<content-hash>`. They are
//! computed by the `openshell-images` crate (`openshell_images::refs`, where the details are),
//! with the binaries beside the gateway and the `OPENSHELL_*_BIN` / `OPENSHELL_FIXTURE_IMAGES`
//! overrides; this module keeps the suite's paths to them.

pub use openshell_images::refs::{default_inputs, Images, ImagesError, Result};
