//! The `memshift` command line: parses it, loads the configuration and dispatches to
//! [`memshift::app`], where each command does its work, prints, and picks its exit code.

use clap::{Parser, Subcommand};
use memshift::app::{self, backfill, flags, outbox, reconcile, report};
use memshift::config;
use std::path::PathBuf;
use std::process::ExitCode;

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
    /// Run the Memory Orchestrator (ZMQ, PostgreSQL + pgvector).
    Orchestrator,
    /// Apply the orchestrator's database migrations and create the embedding index.
    Migrate,
    /// Validate the configuration and print what would run.
    CheckConfig,
    /// Inspect and operate the outboxes of mirrored writes.
    Outbox {
        #[command(subcommand)]
        command: outbox::Command,
    },
    Backfill(backfill::Args),
    Reconcile(reconcile::Args),
    Report(report::Args),
    /// The rollout's flags file.
    Flags {
        #[command(subcommand)]
        command: flags::Command,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match config::load(&cli.config) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("memshift: {errors}");
            return ExitCode::from(app::EXIT_USAGE);
        }
    };
    match cli.command {
        Command::CheckConfig => app::check_config::execute(&cli.config, &config),
        Command::Proxy => app::proxy(&cli.config, config),
        Command::Orchestrator => app::serve(config, |config, shutdown| {
            Box::pin(app::run_orchestrator(config, shutdown))
        }),
        Command::Migrate => app::serve(config, |config, shutdown| {
            Box::pin(app::migrate::run(config, shutdown))
        }),
        Command::Flags { command } => flags::execute(&config, &command),
        Command::Backfill(args) => app::one_shot(&config, |c| backfill::execute(c, &args)),
        Command::Reconcile(args) => app::one_shot(&config, |c| reconcile::execute(c, &args)),
        Command::Report(args) => app::one_shot(&config, |c| report::execute(c, &args)),
        Command::Outbox { command } => app::one_shot(&config, |c| outbox::execute(c, &command)),
    }
}
