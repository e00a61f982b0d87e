//! An image's root and configuration, read from the local Docker engine.
//!
//! The VM lane runs exactly the Docker lanes' images: the filesystem comes from exporting a
//! created (never started) container of the image, and the entrypoint, command, environment and
//! working directory from the image's config, so a vendor's image runs unchanged and a missing
//! image means what it means on Docker ([`RootError::NotFound`]).

use std::path::{Path, PathBuf};

use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{CreateContainerOptions, RemoveContainerOptions};
use bollard::Docker;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

/// The label on the short-lived containers an export creates (never started, removed at once).
pub const EXPORT_LABEL: &str = "openshell.export";

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum RootError {
    /// The engine has no image with this reference.
    #[error("no image {reference} on the docker engine: {detail}")]
    NotFound { reference: String, detail: String },
    /// The engine could not be reached or refused a request.
    #[error("docker engine: {action}: {source}")]
    Engine {
        action: String,
        #[source]
        source: bollard::errors::Error,
    },
    /// A local file could not be written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, RootError>;

/// What an image runs, from its config (Docker's semantics).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImageConfig {
    /// The image id (`sha256:…`): the same id is the same root.
    pub id: String,
    /// `ENTRYPOINT`.
    pub entrypoint: Vec<String>,
    /// `CMD`.
    pub cmd: Vec<String>,
    /// `ENV`, as `KEY=VALUE`.
    pub env: Vec<String>,
    /// `WORKDIR` (empty: `/`).
    pub working_dir: String,
}

impl ImageConfig {
    /// The main process as Docker would start it: the entrypoint, then `command` when it is not
    /// empty, else the image's `CMD`.
    pub fn argv(&self, command: &[String]) -> Vec<String> {
        let tail = if command.is_empty() {
            &self.cmd
        } else {
            command
        };
        self.entrypoint.iter().chain(tail).cloned().collect()
    }
}

fn engine(action: impl Into<String>) -> impl FnOnce(bollard::errors::Error) -> RootError {
    let action = action.into();
    move |source| RootError::Engine { action, source }
}

fn not_found(reference: &str, error: &bollard::errors::Error) -> Option<RootError> {
    match error {
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            message,
        } => Some(RootError::NotFound {
            reference: reference.to_string(),
            detail: message.clone(),
        }),
        _ => None,
    }
}

/// The image's id and run configuration.
pub async fn inspect(docker: &Docker, reference: &str) -> Result<ImageConfig> {
    let image = match docker.inspect_image(reference).await {
        Ok(image) => image,
        Err(e) => {
            return Err(not_found(reference, &e)
                .unwrap_or_else(|| engine(format!("inspect image {reference}"))(e)))
        }
    };
    let config = image.config.unwrap_or_default();
    Ok(ImageConfig {
        id: image.id.unwrap_or_default(),
        entrypoint: config.entrypoint.unwrap_or_default(),
        cmd: config.cmd.unwrap_or_default(),
        env: config.env.unwrap_or_default(),
        working_dir: config.working_dir.unwrap_or_default(),
    })
}

/// Writes the image's filesystem to `dest` as a tar (`docker export` of a created container).
pub async fn export(docker: &Docker, reference: &str, dest: &Path) -> Result<()> {
    let name = format!("openshell-export-{}", uuid::Uuid::new_v4().simple());
    let body = ContainerCreateBody {
        image: Some(reference.to_string()),
        // Never started: any command will do, and images without one can be created too.
        entrypoint: Some(vec!["/openshell-export-never-runs".to_string()]),
        labels: Some([(EXPORT_LABEL.to_string(), "1".to_string())].into()),
        network_disabled: Some(true),
        host_config: Some(HostConfig {
            network_mode: Some("none".to_string()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let options = CreateContainerOptions {
        name: Some(name.clone()),
        ..Default::default()
    };
    if let Err(e) = docker.create_container(Some(options), body).await {
        return Err(not_found(reference, &e)
            .unwrap_or_else(|| engine(format!("create container from {reference}"))(e)));
    }
    let written = write_export(docker, &name, dest).await;
    let removed = docker
        .remove_container(
            &name,
            Some(RemoveContainerOptions {
                force: true,
                ..Default::default()
            }),
        )
        .await
        .map_err(engine(format!("remove container {name}")));
    written.and(removed)
}

async fn write_export(docker: &Docker, container: &str, dest: &Path) -> Result<()> {
    let io = |source| RootError::Io {
        path: dest.to_path_buf(),
        source,
    };
    let mut file = tokio::fs::File::create(dest).await.map_err(io)?;
    let mut chunks = docker.export_container(container);
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(engine(format!("export container {container}")))?;
        file.write_all(&chunk).await.map_err(io)?;
    }
    file.flush().await.map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_is_the_entrypoint_then_the_command_or_else_cmd() {
        let config = ImageConfig {
            entrypoint: vec!["/sup".into()],
            cmd: vec!["sleep".into(), "1".into()],
            ..Default::default()
        };
        assert_eq!(config.argv(&[]), ["/sup", "sleep", "1"]);
        assert_eq!(config.argv(&["true".into()]), ["/sup", "true"]);
    }
}
