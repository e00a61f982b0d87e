//! The pod sandbox ("pause") image of the booted k3s cluster.
//!
//! Every Pod needs a sandbox container; k3s's containerd pulls `rancher/mirrored-pause` for it,
//! which no registry here can serve. So the lane builds one `FROM scratch` from the static
//! busybox the fixtures use, loads it with the fixture images, and boots k3s with
//! `--pause-image` naming it. Its only job is to hold the Pod's namespaces until it is stopped:
//!
//! ```text
//! FROM scratch
//! COPY busybox /pause
//! ENTRYPOINT ["/pause", "sh", "-c", "trap 'exit 0' TERM INT; while :; do /pause sleep 3600 & wait $!; done"]
//! ```

use std::path::Path;

use bollard::models::BuildInfo;
use bollard::query_parameters::BuildImageOptions;
use bollard::Docker;
use futures::StreamExt;
use sha2::{Digest, Sha256};

const SCRIPT: &str = "trap 'exit 0' TERM INT; while :; do /pause sleep 3600 & wait $!; done";

fn dockerfile() -> String {
    format!(
        "FROM scratch\nCOPY busybox /pause\nENTRYPOINT [\"/pause\", \"sh\", \"-c\", {}]\n",
        serde_json::Value::String(SCRIPT.into())
    )
}

/// The image reference for this busybox (content addressed, like the fixtures).
pub fn reference(busybox: &[u8]) -> String {
    let mut hash = Sha256::new();
    hash.update(dockerfile());
    hash.update(busybox);
    let digest = hex::encode(hash.finalize());
    format!("openshell-conformance/pause:{}", &digest[..12])
}

/// The fully qualified form containerd stores a `docker save`d reference under.
pub fn qualified(reference: &str) -> String {
    format!("docker.io/{reference}")
}

/// Builds the pause image unless it exists; returns its reference.
pub async fn build(docker: &Docker, busybox: &Path) -> Result<String, String> {
    let binary = std::fs::read(busybox).map_err(|e| format!("{}: {e}", busybox.display()))?;
    let reference = reference(&binary);
    if openshell_images::docker::image_exists(docker, &reference)
        .await
        .map_err(|e| e.to_string())?
    {
        return Ok(reference);
    }
    let mut context = tar::Builder::new(Vec::new());
    for (name, mode, bytes) in [
        ("Dockerfile", 0o644, dockerfile().into_bytes()),
        ("busybox", 0o755, binary),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_mode(mode);
        header.set_size(bytes.len() as u64);
        header.set_mtime(0);
        context
            .append_data(&mut header, name, bytes.as_slice())
            .map_err(|e| format!("pause image context: {e}"))?;
    }
    let context = context
        .into_inner()
        .map_err(|e| format!("pause image context: {e}"))?;
    let options = BuildImageOptions {
        dockerfile: "Dockerfile".into(),
        t: Some(reference.clone()),
        rm: true,
        forcerm: true,
        ..Default::default()
    };
    let mut progress = docker.build_image(options, None, Some(bollard::body_full(context.into())));
    while let Some(item) = progress.next().await {
        let BuildInfo { error, .. } = item.map_err(|e| format!("build {reference}: {e}"))?;
        if let Some(message) = error {
            return Err(format!("build {reference}: {message}"));
        }
    }
    Ok(reference)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_follows_the_busybox_and_is_qualified_for_containerd() {
        let a = reference(b"one");
        assert!(a.starts_with("openshell-conformance/pause:"), "{a}");
        assert_ne!(a, reference(b"two"));
        assert_eq!(qualified("x/y:z"), "docker.io/x/y:z");
        assert!(dockerfile().contains("trap 'exit 0' TERM INT"));
    }
}
