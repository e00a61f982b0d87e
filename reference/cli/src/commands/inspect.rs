//! `sandbox get`, `sandbox list` and `sandbox delete`.

use crate::args::{DeleteArgs, GetArgs, ListArgs, OutputFormat};
use crate::commands::Result;
use crate::gateway::Gateway;
use crate::hygiene::escape_controls;
use crate::output;
use crate::render::{json, list_text, sandbox_text, SandboxView};

/// `sandbox get NAME`: phase, exit code and every condition, as text or JSON.
pub async fn get(gateway: &mut Gateway, args: &GetArgs) -> Result<()> {
    let sandbox = gateway.get(&args.name).await?;
    let view = SandboxView::from(&sandbox);
    output::stdout(&match args.output {
        OutputFormat::Text => sandbox_text(&view),
        OutputFormat::Json => json(&view),
    });
    Ok(())
}

/// `sandbox list`: a table, or a JSON array of the `get` objects.
pub async fn list(gateway: &mut Gateway, args: &ListArgs) -> Result<()> {
    let sandboxes = gateway.list(args.selector.as_deref()).await?;
    let views: Vec<SandboxView> = sandboxes.iter().map(SandboxView::from).collect();
    output::stdout(&match args.output {
        OutputFormat::Text => list_text(&views),
        OutputFormat::Json => json(&views),
    });
    Ok(())
}

/// `sandbox delete NAME`.
pub async fn delete(gateway: &mut Gateway, args: &DeleteArgs) -> Result<()> {
    gateway.delete(&args.name).await?;
    output::stdout(&format!(
        "deleted sandbox {}\n",
        escape_controls(&args.name)
    ));
    Ok(())
}
