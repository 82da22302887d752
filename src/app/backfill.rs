//! `memshift backfill`: the command around [`crate::backfill::run`], with its progress
//! display: a bar on a terminal, a structured log line every few seconds otherwise.

use crate::backfill::{self, Options, Progress, Summary};
use crate::config::{AgentConfig, Config};
use crate::legacy::Position;
use crate::translate::Origin;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The command line's choices.
#[derive(Clone, Debug)]
pub struct Args {
    pub agent: String,
    pub from: PathBuf,
    pub dry_run: bool,
    pub restart: bool,
    pub match_window: Duration,
    pub window: usize,
    pub timeout: Duration,
    pub give_up: Duration,
    pub max_attempts: u32,
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
            window: args.window,
            timeout: args.timeout,
            max_attempts: args.max_attempts,
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
