//! `openshell-supervisor [COMMAND ARGS…]`: the sandbox entrypoint. The main process is
//! `OPENSHELL_MAIN_PROCESS_SPEC` when set, else the arguments. See the library's `startup`.

use openshell_supervisor::config::Config;
use openshell_supervisor::startup;

fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("OPENSHELL_SUPERVISOR_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    // The first line, with its timestamp: a benchmark measures startup from it to the line
    // "main process started" (issue: supervisor start to spawn).
    tracing::info!(pid = std::process::id(), "supervisor started");
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cfg = match Config::from_lookup(|k| std::env::var(k).ok(), &args) {
        Ok(cfg) => cfg,
        Err(e) => {
            // Nobody to report to without id, endpoint and token: stderr only.
            startup::say(&format!("config: {e}"));
            std::process::exit(startup::EXIT_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            startup::say(&format!("cannot start the async runtime: {e}"));
            std::process::exit(startup::EXIT_STARTUP_FAILED);
        }
    };
    let code = runtime.block_on(startup::run(cfg));
    std::process::exit(code);
}
