//! `keel`: the command-line interface of the Keel service mesh.

mod cli;
mod cmd;
mod exit;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = match cli::Cli::try_parse() {
        Ok(a) => a,
        Err(e) => {
            // --help and --version are not errors; wrong usage exits 64 like istioctl.
            let code = if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    // The long-running commands host the control plane, whose NACKs and failed pushes are
    // logged: warnings and errors to stderr (KEEL_LOG=info for connects and certificates).
    if matches!(
        args.command,
        cli::Command::ControlPlane(_) | cli::Command::Up(_) | cli::Command::Demo(_)
    ) {
        let filter = tracing_subscriber::EnvFilter::try_from_env("KEEL_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_target(false)
            .try_init();
    }
    let code = match args.command {
        cli::Command::Validate(a) => cmd::validate::run(&a),
        cli::Command::Analyze(a) => cmd::analyze::run(&a),
        cli::Command::Version(a) => cmd::version::run(&a),
        cli::Command::ControlPlane(a) => cmd::control_plane::run(&a),
        cli::Command::Apply(a) => cmd::apply::run_apply(&a),
        cli::Command::Delete(a) => cmd::apply::run_delete(&a),
        cli::Command::Get(a) => cmd::get::run(&a),
        cli::Command::ProxyStatus(a) => cmd::proxy_status::run(&a),
        cli::Command::ProxyConfig(a) => cmd::proxy_config::run(&a),
        cli::Command::Logs(a) => cmd::up::pods::run_logs(&a),
        cli::Command::Exec(a) => cmd::up::pods::run_exec(&a),
        cli::Command::Demo(a) => cmd::demo::run(&a),
        cli::Command::Up(a) => cmd::up::run(&a),
        cli::Command::Down(a) => cmd::up::run_down(&a),
    };
    ExitCode::from(code)
}
