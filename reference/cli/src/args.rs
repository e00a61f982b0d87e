//! The command line, as clap derive types, and the `K=V` parser behind `--env` and `--label`.
//!
//! Bad arguments are clap errors, so they print a one-line usage error and exit with 2.

use clap::{Args, Parser, Subcommand, ValueEnum};

/// The gateway the CLI talks to when neither `--gateway` nor `OPENSHELL_GATEWAY` says otherwise.
pub const DEFAULT_GATEWAY: &str = "http://127.0.0.1:7443";
/// Seconds `sandbox create` waits for Ready or Error by default.
pub const DEFAULT_PROVISION_TIMEOUT_SECS: u64 = 300;

/// Errors of a `K=V` argument.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyValueError {
    /// No `=` at all.
    #[error("expected KEY=VALUE, got `{0}`")]
    MissingEquals(String),
    /// `=VALUE`.
    #[error("empty key in `{0}`")]
    EmptyKey(String),
    /// A NUL byte, which no environment or label can hold.
    #[error("NUL byte in `{0}`")]
    Nul(String),
}

/// A `KEY=VALUE` pair from `--env` or `--label`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// Everything before the first `=`.
    pub key: String,
    /// Everything after the first `=` (may be empty, may hold more `=`).
    pub value: String,
}

/// Parses `KEY=VALUE`: the key is non-empty and split at the first `=`.
pub fn parse_key_value(arg: &str) -> Result<KeyValue, KeyValueError> {
    if arg.contains('\0') {
        return Err(KeyValueError::Nul(arg.escape_default().to_string()));
    }
    let (key, value) = arg
        .split_once('=')
        .ok_or_else(|| KeyValueError::MissingEquals(arg.to_string()))?;
    if key.is_empty() {
        return Err(KeyValueError::EmptyKey(arg.to_string()));
    }
    Ok(KeyValue {
        key: key.to_string(),
        value: value.to_string(),
    })
}

/// `openshell`: manage sandboxes on an OpenShell gateway.
#[derive(Debug, Parser)]
#[command(name = "openshell", version, about)]
pub struct Cli {
    /// The gateway's gRPC endpoint.
    #[arg(long, global = true, env = "OPENSHELL_GATEWAY", default_value = DEFAULT_GATEWAY)]
    pub gateway: String,
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, inspect, list and delete sandboxes.
    #[command(subcommand)]
    Sandbox(SandboxCommand),
}

/// `openshell sandbox …`.
#[derive(Debug, Subcommand)]
pub enum SandboxCommand {
    /// Create a sandbox and wait until it is Ready (exit 0) or in Error (exit 1).
    Create(CreateArgs),
    /// Show one sandbox: phase, exit code and every condition.
    Get(GetArgs),
    /// List sandboxes.
    List(ListArgs),
    /// Delete a sandbox.
    Delete(DeleteArgs),
}

/// Container runtime for drivers that have a choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Runtime {
    /// The default OCI runtime.
    Runc,
    /// gVisor.
    Runsc,
}

impl Runtime {
    /// The value of `SandboxTemplate.runtime_class_name`.
    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Runc => "runc",
            Runtime::Runsc => "runsc",
        }
    }
}

/// Output format of `get` and `list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum OutputFormat {
    /// Human-readable text.
    #[default]
    Text,
    /// One stable JSON document.
    Json,
}

/// `openshell sandbox create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Image reference, e.g. `openshell-fixture/good:0123456789ab`.
    #[arg(long = "from", value_name = "IMAGE")]
    pub image: String,
    /// Sandbox name (a DNS-1123 label); generated as `sb-<8 hex>` when absent.
    #[arg(long)]
    pub name: Option<String>,
    /// Environment of the sandbox, `KEY=VALUE`; repeatable.
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub env: Vec<KeyValue>,
    /// Runtime for container drivers.
    #[arg(long, value_enum)]
    pub runtime: Option<Runtime>,
    /// Label on the sandbox, `KEY=VALUE`; repeatable.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub labels: Vec<KeyValue>,
    /// Seconds to wait for Ready or Error.
    #[arg(
        long,
        value_name = "SECS",
        env = "OPENSHELL_PROVISION_TIMEOUT",
        default_value_t = DEFAULT_PROVISION_TIMEOUT_SECS,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub timeout: u64,
    /// The main process; the image's default command when empty.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// `openshell sandbox get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// Sandbox name.
    pub name: String,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub output: OutputFormat,
}

/// `openshell sandbox list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub output: OutputFormat,
    /// Only sandboxes with these labels, `k=v[,k=v…]`.
    #[arg(long, short = 'l')]
    pub selector: Option<String>,
}

/// `openshell sandbox delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Sandbox name.
    pub name: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("openshell").chain(args.iter().copied()))
    }

    fn create(args: &[&str]) -> CreateArgs {
        match parse(args).expect("parses").command {
            Command::Sandbox(SandboxCommand::Create(c)) => c,
            other => panic!("not create: {other:?}"),
        }
    }

    #[test]
    fn key_value_splits_at_the_first_equals() {
        assert_eq!(
            parse_key_value("A=b=c"),
            Ok(KeyValue {
                key: "A".into(),
                value: "b=c".into()
            })
        );
        assert_eq!(
            parse_key_value("A="),
            Ok(KeyValue {
                key: "A".into(),
                value: "".into()
            })
        );
    }

    #[test]
    fn key_value_without_equals_or_key_is_rejected() {
        assert_eq!(
            parse_key_value("A"),
            Err(KeyValueError::MissingEquals("A".into()))
        );
        assert_eq!(
            parse_key_value("=v"),
            Err(KeyValueError::EmptyKey("=v".into()))
        );
        assert!(matches!(
            parse_key_value("A=\0"),
            Err(KeyValueError::Nul(_))
        ));
    }

    #[test]
    fn create_collects_env_labels_runtime_and_the_command_after_double_dash() {
        let c = create(&[
            "sandbox",
            "create",
            "--from",
            "img",
            "--name",
            "box",
            "--env",
            "A=1",
            "--env",
            "B=x=y",
            "--runtime",
            "runsc",
            "--label",
            "team=a",
            "--timeout",
            "7",
            "--",
            "sh",
            "-c",
            "echo hi",
        ]);
        assert_eq!(c.image, "img");
        assert_eq!(c.name.as_deref(), Some("box"));
        assert_eq!(c.env.len(), 2);
        assert_eq!(
            c.env[1],
            KeyValue {
                key: "B".into(),
                value: "x=y".into()
            }
        );
        assert_eq!(c.runtime, Some(Runtime::Runsc));
        assert_eq!(c.labels[0].key, "team");
        assert_eq!(c.timeout, 7);
        assert_eq!(c.command, ["sh", "-c", "echo hi"]);
    }

    #[test]
    fn create_defaults_have_no_name_and_a_300_second_timeout() {
        let c = create(&["sandbox", "create", "--from", "img"]);
        assert_eq!(c.name, None);
        assert!(c.command.is_empty());
        assert!(c.runtime.is_none());
        if std::env::var_os("OPENSHELL_PROVISION_TIMEOUT").is_none() {
            assert_eq!(c.timeout, DEFAULT_PROVISION_TIMEOUT_SECS);
        }
    }

    #[test]
    fn env_without_equals_is_a_usage_error() {
        let err = parse(&["sandbox", "create", "--from", "img", "--env", "NOPE"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ValueValidation);
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("expected KEY=VALUE"), "{err}");
    }

    #[test]
    fn unknown_runtime_and_zero_timeout_are_usage_errors() {
        assert!(parse(&["sandbox", "create", "--from", "i", "--runtime", "kata"]).is_err());
        assert!(parse(&["sandbox", "create", "--from", "i", "--timeout", "0"]).is_err());
    }

    #[test]
    fn create_without_image_is_a_usage_error() {
        let err = parse(&["sandbox", "create"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::MissingRequiredArgument);
    }

    #[test]
    fn gateway_flag_is_global_and_output_defaults_to_text() {
        let cli = parse(&["sandbox", "get", "box", "--gateway", "http://127.0.0.1:1"]).unwrap();
        assert_eq!(cli.gateway, "http://127.0.0.1:1");
        match cli.command {
            Command::Sandbox(SandboxCommand::Get(g)) => {
                assert_eq!(g.name, "box");
                assert_eq!(g.output, OutputFormat::Text);
            }
            other => panic!("not get: {other:?}"),
        }
    }

    #[test]
    fn list_takes_json_output_and_a_selector() {
        let cli = parse(&["sandbox", "list", "--output", "json", "--selector", "a=b"]).unwrap();
        match cli.command {
            Command::Sandbox(SandboxCommand::List(l)) => {
                assert_eq!(l.output, OutputFormat::Json);
                assert_eq!(l.selector.as_deref(), Some("a=b"));
            }
            other => panic!("not list: {other:?}"),
        }
    }
}
