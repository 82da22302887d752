//! The `memshift` command line.

use clap::{Parser, Subcommand};
use memshift::config::{self, Config};
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit status for a bad command line or configuration (sysexits' EX_USAGE).
const EXIT_USAGE: u8 = 64;

#[derive(Parser)]
#[command(
    name = "memshift",
    version,
    about = "Moves legacy ZeroMQ memory agents onto the Memory Orchestrator, transparently."
)]
struct Cli {
    /// The configuration file.
    #[arg(
        long,
        short,
        global = true,
        env = "MEMSHIFT_CONFIG",
        default_value = "config/memshift.toml"
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the transparent proxy in front of every configured legacy agent.
    Proxy,
    /// Validate the configuration and print what would run.
    CheckConfig,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match config::load(&cli.config) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("memshift: {errors}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match cli.command {
        Command::CheckConfig => {
            print!("{}", describe(&cli.config, &config));
            ExitCode::SUCCESS
        }
        Command::Proxy => run_proxy(config),
    }
}

fn run_proxy(config: Config) -> ExitCode {
    memshift::telemetry::init(&config.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("memshift: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let shutdown = memshift::shutdown::on_signals()?;
        memshift::app::run_proxy(config, shutdown).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("memshift: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// What `check-config` prints: every agent and setting that would be used.
fn describe(path: &std::path::Path, config: &Config) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let p = &config.proxy;
    let _ = writeln!(out, "configuration {} is valid", path.display());
    let _ = writeln!(out, "metrics: http://{}/metrics", config.metrics.listen);
    let _ = writeln!(
        out,
        "log: level {:?}, format {:?}",
        config.log.level, config.log.format
    );
    let _ = writeln!(
        out,
        "proxy: shutdown_grace {:?}, max_in_flight {}, linger {:?}, heartbeat {:?}/{:?}",
        p.shutdown_grace, p.max_in_flight, p.linger, p.heartbeat_interval, p.heartbeat_timeout
    );
    for a in &config.agents {
        let _ = writeln!(
            out,
            "agent {} ({}): {} -> {}, legacy_timeout {:?}, guard multipart={} non_json={}",
            a.name,
            a.profile.name(),
            a.listen,
            a.legacy,
            a.legacy_timeout,
            a.guard.multipart,
            a.guard.non_json
        );
    }
    out
}
