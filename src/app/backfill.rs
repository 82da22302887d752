//! `memshift backfill`: the command around [`crate::backfill::run`], with its progress
//! display: a bar on a terminal, a structured log line every few seconds otherwise.

use crate::backfill::{self, Options, Progress, Summary};
use crate::config::{AgentConfig, Config};
use crate::legacy::Position;
use crate::translate::Origin;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Import a legacy agent's own store into the orchestrator (idempotent, resumable).
/// Exit 0: every record imported or already there; 2: finished, but some records were
/// not imported (see the summary); 1: stopped early or failed (run it again to resume).
// The doc comments are the command line's help text: `[[agents]]` is TOML, not a link.
#[allow(rustdoc::broken_intra_doc_links)]
#[derive(Clone, Debug, clap::Args)]
pub struct Args {
    /// The agent, as named in the configuration's [[agents]].
    #[arg(long)]
    pub agent: String,
    /// The agent's store: its file, or the agent's working directory.
    #[arg(long)]
    pub from: PathBuf,
    /// Read and translate everything, send nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Forget what earlier runs finished and send every group again.
    #[arg(long)]
    pub restart: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// How far apart the mirror's and the backfill's copies of one record may be
    /// (the agent's clock against the proxy's).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub match_window: Duration,
    /// Requests in flight to the orchestrator.
    #[arg(long, default_value_t = 32)]
    pub window: usize,
    /// An answer not received by then is tried again.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Stop when the orchestrator has not answered at all for this long.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub give_up: Duration,
    /// Tries of one write before it counts as failed.
    #[arg(long, default_value_t = 8)]
    pub max_attempts: u32,
}

/// `memshift backfill`: runs it and prints the summary.
///
/// # Errors
/// As [`run`].
pub fn execute(config: &Config, args: &Args) -> anyhow::Result<ExitCode> {
    let summary = run(config, args)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{}", summary.render());
    }
    Ok(if summary.is_interrupted() {
        ExitCode::FAILURE
    } else if summary.is_complete() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

/// The agent named `name` in the configuration.
///
/// # Errors
/// No such agent.
pub fn agent<'c>(config: &'c Config, name: &str) -> anyhow::Result<&'c AgentConfig> {
    config
        .agents
        .iter()
        .find(|a| a.name == name)
        .ok_or_else(|| {
            let known: Vec<&str> = config.agents.iter().map(|a| a.name.as_str()).collect();
            anyhow::anyhow!(
                "no agent named {name:?} in the configuration (configured: {})",
                known.join(", ")
            )
        })
}

/// Runs the backfill the arguments describe.
///
/// # Errors
/// An unknown agent, an unreadable store, an unwritable checkpoint.
pub fn run(config: &Config, args: &Args) -> anyhow::Result<Summary> {
    let agent = agent(config, &args.agent)?;
    let options = Options {
        agent: agent.name.clone(),
        profile: agent.profile,
        from: args.from.clone(),
        data_dir: config.mirror.data_dir.clone(),
        restart: args.restart,
        sender: (!args.dry_run).then(|| backfill::Settings {
            agent: agent.name.clone(),
            endpoint: config.mirror.orchestrator.as_str().to_owned(),
            window: args.window.max(1),
            timeout: args.timeout,
            max_attempts: args.max_attempts.max(1),
            give_up: args.give_up,
            origin: Origin::Backfill {
                match_window: args.match_window,
            },
        }),
    };
    let mut progress: Box<dyn Progress> = if std::io::stderr().is_terminal() {
        Box::new(Bar::new())
    } else {
        Box::new(LogLines::new(&agent.name))
    };
    backfill::run(&options, progress.as_mut())
}

/// A progress bar over the store (bytes of a JSON file, rows of a SQLite file).
struct Bar(ProgressBar);

impl Bar {
    fn new() -> Bar {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {percent:>3}% eta {eta} {msg}",
            )
            .expect("a valid template"),
        );
        Bar(bar)
    }
}

impl Progress for Bar {
    fn update(&mut self, position: Position, summary: &Summary) {
        self.0.set_length(position.total);
        self.0.set_position(position.done);
        self.0.set_message(format!(
            "{} groups, {} imported",
            summary.groups,
            summary.imported.values().sum::<u64>()
        ));
    }

    fn finish(&mut self) {
        self.0.finish_and_clear();
    }
}

/// A log event every few seconds (JSON with `[log] format = "json"`).
struct LogLines {
    agent: String,
    last: Instant,
}

const LOG_EVERY: Duration = Duration::from_secs(5);

impl LogLines {
    fn new(agent: &str) -> LogLines {
        LogLines {
            agent: agent.to_owned(),
            last: Instant::now(),
        }
    }
}

impl Progress for LogLines {
    fn update(&mut self, position: Position, summary: &Summary) {
        if self.last.elapsed() < LOG_EVERY {
            return;
        }
        self.last = Instant::now();
        let percent = if position.total == 0 {
            100.0
        } else {
            position.done as f64 * 100.0 / position.total as f64
        };
        tracing::info!(
            agent = %self.agent,
            percent = format!("{percent:.1}"),
            groups = summary.groups,
            imported = summary.imported.values().sum::<u64>(),
            already_mirrored = summary.already_mirrored.values().sum::<u64>(),
            already_imported = summary.already_imported.values().sum::<u64>(),
            "backfill progress"
        );
    }
}
