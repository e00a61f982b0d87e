//! Images for every lane, in one place: the fixture images the Docker lanes run and the VM lane
//! boots, the references a conformance run uses, and the VM lane's initramfs archives.
//!
//! `fixtures/` keeps the trees and the manifest; this crate turns them into images:
//! - [`docker`]: build or find a fixture's image on a Docker engine (`FROM scratch`, tagged
//!   `openshell-fixture/<name>:<hash>`), export the images as a `docker save` tarball, load one.
//! - [`refs`]: the image reference of every fixture for a run (content hashes over the binaries
//!   beside the gateway, or a vendor's override file).
//! - [`root`]: an image's root (exported from a created container) and its run configuration.
//! - [`initramfs`]: newc archives: an image's root packed once per image id into a cache
//!   folder, and small archives built from data (the VM driver's init, modules, credential).
//!
//! Users: the conformance runner (`openshell-conformance images`, the run's references and
//! image builds) and the VM driver (roots and archives). It depends on `openshell-fixtures` and
//! never on a reference crate.

pub mod docker;
pub mod initramfs;
pub mod refs;
pub mod root;
