//! The `memshift` command line.

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use memshift::config::{self, Config, EmbeddingProvider};
use memshift::store::{Store, VectorIndex};
use std::path::PathBuf;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

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
    /// Run the Memory Orchestrator (ZMQ, PostgreSQL + pgvector).
    Orchestrator,
    /// Apply the orchestrator's database migrations and create the embedding index.
    Migrate,
    /// Validate the configuration and print what would run.
    CheckConfig,
    /// Inspect and operate the outboxes of mirrored writes.
    Outbox {
        #[command(subcommand)]
        command: OutboxCommand,
    },
    /// Import a legacy agent's own store into the orchestrator (idempotent, resumable).
    /// Exit 0: every record imported or already there; 2: finished, but some records were
    /// not imported (see the summary); 1: stopped early or failed (run it again to resume).
    Backfill {
        /// The agent, as named in the configuration's [[agents]].
        #[arg(long)]
        agent: String,
        /// The agent's store: its file, or the agent's working directory.
        #[arg(long)]
        from: PathBuf,
        /// Read and translate everything, send nothing.
        #[arg(long)]
        dry_run: bool,
        /// Forget what earlier runs finished and send every group again.
        #[arg(long)]
        restart: bool,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
        /// How far apart the mirror's and the backfill's copies of one record may be
        /// (the agent's clock against the proxy's).
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        match_window: std::time::Duration,
        /// Requests in flight to the orchestrator.
        #[arg(long, default_value_t = 32)]
        window: usize,
        /// An answer not received by then is tried again.
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
        /// Stop when the orchestrator has not answered at all for this long.
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        give_up: std::time::Duration,
        /// Tries of one write before it counts as failed.
        #[arg(long, default_value_t = 8)]
        max_attempts: u32,
    },
    /// Compare a legacy agent's store with the orchestrator, entity by entity, and write a
    /// report (Markdown and JSON). Exit 0: no inconsistencies (legacy drift aside); 2: some
    /// (after --repair: some remain); 1: failed.
    Reconcile {
        /// The agent, as named in the configuration's [[agents]].
        #[arg(long)]
        agent: String,
        /// The agent's store: its file, or the agent's working directory.
        #[arg(long)]
        from: PathBuf,
        /// Make the orchestrator match legacy (refused once the orchestrator takes writes
        /// first), then compare again to verify.
        #[arg(long)]
        repair: bool,
        /// Where the report files go (default: <[mirror] data_dir>/reports).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Print the report as JSON instead of the summary.
        #[arg(long)]
        json: bool,
        /// How far apart a legacy time and the orchestrator's may be for one record.
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        match_window: std::time::Duration,
        /// Differences of each class listed in the Markdown report.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// The daily reconciliation report: consistency per agent and action (and over time),
    /// the worst mismatch patterns, outbox health, rollbacks and the last reconcile runs,
    /// as Markdown and HTML. Exit 0: every source read; 2: written without a source (see
    /// the report); 1: failed.
    Report {
        /// The period the report covers, up to now.
        #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
        since: std::time::Duration,
        /// The period's end, RFC 3339 (default: now).
        #[arg(long)]
        until: Option<chrono::DateTime<chrono::Utc>>,
        /// The Prometheus that scrapes the proxies (its base URL).
        #[arg(long, env = "MEMSHIFT_PROMETHEUS")]
        prometheus: Option<String>,
        /// Where the report files go (default: <[mirror] data_dir>/reports).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Print the report as JSON too.
        #[arg(long)]
        json: bool,
        /// Mismatch patterns listed at most.
        #[arg(long, default_value_t = 10)]
        top: usize,
    },
    /// The rollout's flags file.
    Flags {
        #[command(subcommand)]
        command: FlagsCommand,
    },
}

#[derive(Subcommand)]
enum FlagsCommand {
    /// Validate a flags file and say what a running proxy's gates would decide for it.
    /// Exit 0: valid and every gate open; 2: a gate would refuse it; 64: invalid; 1: no
    /// proxy answered.
    Check {
        /// The file to check (default: [rollout] flags).
        #[arg(long)]
        flags: Option<PathBuf>,
        /// The proxy's HTTP address (default: http://<[metrics] listen>).
        #[arg(long)]
        proxy: Option<String>,
    },
}

#[derive(Subcommand)]
enum OutboxCommand {
    /// Pending operations, dead letters with their reasons, and dropped writes, per agent.
    Status {
        /// Only this agent.
        #[arg(long)]
        agent: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Dead letters and dropped keys listed per agent at most.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Put dead letters back in the queue, in their original place (after fixing the cause).
    RetryDead {
        /// Only this agent.
        #[arg(long)]
        agent: Option<String>,
        /// Only these entries (needs --agent); all dead letters otherwise.
        #[arg(long = "id")]
        ids: Vec<i64>,
    },
    /// Wait until everything pending is delivered or dead-lettered: the gate before moving
    /// reads over. Delivers by itself when no proxy is delivering. Exit 0: drained; 2:
    /// drained but dead letters remain; 1: timed out or failed.
    Drain {
        /// Only this agent.
        #[arg(long)]
        agent: Option<String>,
        /// Give up after this long.
        #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
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
        Command::CheckConfig => match flags_file(&config) {
            Ok(flags) => {
                print!("{}{flags}", describe(&cli.config, &config));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("memshift: {e:#}");
                ExitCode::from(EXIT_USAGE)
            }
        },

        Command::Proxy if config.agents.is_empty() => {
            eprintln!(
                "memshift: the proxy needs at least one [[agents]] table in {}",
                cli.config.display()
            );
            ExitCode::from(EXIT_USAGE)
        }
        Command::Proxy => match flags_file(&config) {
            Err(e) => {
                eprintln!("memshift: {e:#}");
                ExitCode::from(EXIT_USAGE)
            }
            Ok(_) => run(config, |config, shutdown| {
                Box::pin(memshift::app::run_proxy(config, shutdown))
            }),
        },
        Command::Orchestrator => run(config, |config, shutdown| {
            Box::pin(memshift::app::run_orchestrator(config, shutdown))
        }),
        Command::Migrate => run(config, |config, _| Box::pin(migrate(config))),
        Command::Flags {
            command: FlagsCommand::Check { flags, proxy },
        } => check_flags(&config, flags.as_deref(), proxy.as_deref()),
        Command::Backfill {
            agent,
            from,
            dry_run,
            restart,
            json,
            match_window,
            window,
            timeout,
            give_up,
            max_attempts,
        } => {
            let args = memshift::app::backfill::Args {
                agent,
                from,
                dry_run,
                restart,
                match_window,
                window: window.max(1),
                timeout,
                give_up,
                max_attempts: max_attempts.max(1),
            };
            one_shot(&config, |config| backfill(config, &args, json))
        }
        Command::Reconcile {
            agent,
            from,
            repair,
            out,
            json,
            match_window,
            limit,
        } => {
            let args = memshift::app::reconcile::Args {
                agent,
                from,
                repair,
                out,
                match_window,
                limit,
            };
            one_shot(&config, |config| reconcile(config, &args, json))
        }
        Command::Report {
            since,
            until,
            prometheus,
            out,
            json,
            top,
        } => {
            let args = memshift::app::report::Args {
                since,
                until,
                prometheus,
                out,
                top,
            };
            one_shot(&config, |config| report(config, &args, json))
        }
        Command::Outbox { command } => one_shot(&config, |config| outbox(config, command)),
    }
}

/// A command that runs once and exits: logging set up, a failure printed (exit 1).
fn one_shot(
    config: &Config,
    command: impl FnOnce(&Config) -> anyhow::Result<ExitCode>,
) -> ExitCode {
    memshift::telemetry::init(&config.log);
    command(config).unwrap_or_else(|e| {
        eprintln!("memshift: {e:#}");
        ExitCode::FAILURE
    })
}

fn backfill(
    config: &Config,
    args: &memshift::app::backfill::Args,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let summary = memshift::app::backfill::run(config, args)?;
    if json {
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

fn report(
    config: &Config,
    args: &memshift::app::report::Args,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let written = block_on(memshift::app::report::run(config, args))?;
    let r = &written.report;
    if json {
        println!("{}", serde_json::to_string_pretty(r)?);
    } else {
        for missing in &r.unavailable {
            eprintln!("memshift: unavailable: {missing}");
        }
        println!(
            "report: {} and {}",
            written.markdown.display(),
            written.html.display()
        );
    }
    Ok(if r.is_complete() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

fn reconcile(
    config: &Config,
    args: &memshift::app::reconcile::Args,
    json: bool,
) -> anyhow::Result<ExitCode> {
    use memshift::reconcile::Class;
    let done = block_on(memshift::app::reconcile::run(config, args))?;
    let r = &done.report;
    if json {
        println!("{}", serde_json::to_string_pretty(r)?);
    } else {
        if let Some(before) = &done.before_repair {
            println!(
                "found {} inconsistencies; repair: {} operations sent, {} failed",
                before.inconsistencies(),
                r.repaired,
                r.repair_failed
            );
        }
        println!(
            "{}: {} inconsistencies, {} legacy drift ({} legacy / {} orchestrator entities compared)",
            r.agent,
            r.inconsistencies(),
            r.count(Class::LegacyDrift),
            r.legacy_entities,
            r.orchestrator_entities
        );
        for class in Class::ALL {
            println!("  {:<24} {}", class.as_str(), r.count(class));
        }
        println!(
            "report: {} and {}",
            done.markdown.display(),
            done.json.display()
        );
    }
    Ok(if r.inconsistencies() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

fn outbox(config: &Config, command: OutboxCommand) -> anyhow::Result<ExitCode> {
    use memshift::app::outbox::{self, Drained};
    match command {
        OutboxCommand::Status { agent, json, limit } => {
            let statuses = outbox::status(config, agent.as_deref(), limit)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&statuses)?);
            } else {
                print!("{}", outbox::render_status(&statuses));
            }
        }
        OutboxCommand::RetryDead { agent, ids } => {
            for (agent, n) in outbox::retry_dead(config, agent.as_deref(), &ids)? {
                println!("{agent}: {n} dead letter(s) re-queued");
            }
        }
        OutboxCommand::Drain { agent, timeout } => {
            let drained = outbox::drain(config, agent.as_deref(), timeout, |agent, pending| {
                eprintln!("{agent}: {pending} pending");
            })?;
            return Ok(match drained {
                Drained::Clean => {
                    println!("drained: nothing pending, no dead letters");
                    ExitCode::SUCCESS
                }
                Drained::WithDeadLetters(n) => {
                    println!("drained, but {n} dead letter(s) wait: see memshift outbox status");
                    ExitCode::from(2)
                }
                Drained::TimedOut => {
                    println!("timed out with operations still pending");
                    ExitCode::FAILURE
                }
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}

type Process = std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>>>>;

/// Runs one process on a multi-threaded runtime, with SIGTERM/SIGINT wired to its
/// shutdown token; exit 0 on a clean stop, 1 on failure.
fn run(config: Config, process: impl FnOnce(Config, CancellationToken) -> Process) -> ExitCode {
    memshift::telemetry::init(&config.log);
    let Some(runtime) = runtime(tokio::runtime::Builder::new_multi_thread()) else {
        return ExitCode::FAILURE;
    };
    let result = runtime.block_on(async {
        let shutdown = memshift::shutdown::on_signals()?;
        process(config, shutdown).await
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

async fn migrate(config: Config) -> anyhow::Result<()> {
    let url = config.database.resolve_url().map_err(anyhow::Error::msg)?;
    let vectors = VectorIndex::new(&config.embedding.model, config.embedding.dimension);
    let store = Store::connect_lazy(url.expose(), &config.database, vectors)?;
    store
        .migrate()
        .await
        .with_context(|| format!("migrating {url}"))?;
    let queued = store.queue_missing_embeddings().await?;
    println!(
        "migrations applied to {url}; embedding index for {} ({} dimensions) ready; {queued} entries queued for an embedding",
        config.embedding.model, config.embedding.dimension
    );
    store.close().await;
    Ok(())
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
    let m = &config.mirror;
    let _ = writeln!(
        out,
        "mirror: to {}, outboxes in {}, timeout {:?}, max_in_flight {}, queue {}, max_pending {}, max_attempts {}, max_age {:?}, backoff {:?}..{:?}, durability {:?}, nice {}",
        m.orchestrator,
        m.data_dir.display(),
        m.timeout,
        m.max_in_flight,
        m.queue,
        m.max_pending,
        m.max_attempts,
        m.max_age,
        m.backoff_base,
        m.backoff_max,
        m.durability,
        m.nice
    );
    let (o, d, e) = (&config.orchestrator, &config.database, &config.embedding);
    let database = match d.resolve_url() {
        Ok(url) => url.to_string(),
        Err(why) => why,
    };
    let _ = writeln!(
        out,
        "orchestrator: {} (metrics http://{}/metrics), max_concurrent {}, max_queued {}, deadline {:?}, max_request_bytes {}, access_log {}, migrate_on_start {}",
        o.listen,
        o.metrics_listen,
        o.max_concurrent,
        o.max_queued,
        o.request_deadline,
        o.max_request_bytes,
        o.access_log,
        o.migrate_on_start
    );
    let _ = writeln!(
        out,
        "database: {database}, max_connections {}, acquire_timeout {:?}, statement_timeout {:?}",
        d.max_connections, d.acquire_timeout, d.statement_timeout
    );
    let provider = match &e.provider {
        EmbeddingProvider::Local => "local (built in, lexical)".to_owned(),
        EmbeddingProvider::OpenAi { url, api_key_env } => format!(
            "openai-compatible {url}/v1/embeddings, key from {}",
            api_key_env.as_deref().unwrap_or("(none)")
        ),
    };
    let _ = writeln!(
        out,
        "embedding: {provider}, model {}, dimension {}, batch {}",
        e.model, e.dimension, e.batch_size
    );
    out
}

/// The flags file, validated, described for `check-config`; empty without one.
fn flags_file(config: &Config) -> anyhow::Result<String> {
    use std::fmt::Write;
    let r = &config.rollout;
    let Some(path) = &r.flags else {
        return Ok("flags: no flags file ([rollout] flags): every agent stays off\n".to_owned());
    };
    let file = memshift::rollout::load_file(path)?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "flags: {} (poll {:?}, panic file {}), rollback {}",
        path.display(),
        r.poll_interval,
        r.panic_path()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        file.rollback
    );
    for a in &config.agents {
        let f = file.agent(&a.name);
        let _ = writeln!(
            out,
            "  {}: stage {}, mirror {}, shadow {}, read {}{}",
            a.name,
            f.stage,
            f.mirror_percent,
            f.shadow_percent,
            f.read_percent,
            if f.rollback { ", rolled back" } else { "" }
        );
    }
    let auto = &r.auto;
    let _ = writeln!(
        out,
        "rollout: gates {:?} (min comparisons {}, outbox age {:?}); auto-rollback {} (window {:?}..{:?}, min samples {}, inconsistency {}, latency {:?}, errors {}, confidence {}, hold {})",
        r.gates,
        r.gate_min_comparisons,
        r.gate_max_outbox_age,
        if auto.enabled { "on" } else { "off" },
        auto.window,
        auto.max_window,
        auto.min_samples,
        auto.max_inconsistency,
        auto.max_added_latency,
        auto.max_error_rate,
        auto.confidence,
        auto.hold
    );
    Ok(out)
}

fn check_flags(config: &Config, flags: Option<&std::path::Path>, proxy: Option<&str>) -> ExitCode {
    use memshift::app::flags::{self, Verdict};
    let Some(runtime) = runtime(tokio::runtime::Builder::new_current_thread()) else {
        return ExitCode::FAILURE;
    };
    match runtime.block_on(flags::check(config, flags, proxy)) {
        Ok(Verdict::Open(text)) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Ok(Verdict::Closed(text)) => {
            print!("{text}");
            ExitCode::from(2)
        }
        Err(e) if e.downcast_ref::<memshift::config::ConfigErrors>().is_some() => {
            eprintln!("memshift: {e:#}");
            ExitCode::from(EXIT_USAGE)
        }
        Err(e) => {
            eprintln!("memshift: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a one-shot command's future on a multi-threaded runtime.
fn block_on<T>(future: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(future)
}

/// An async runtime from `builder`, or `None` (reported) when it cannot start.
fn runtime(mut builder: tokio::runtime::Builder) -> Option<tokio::runtime::Runtime> {
    match builder.enable_all().build() {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("memshift: starting the async runtime: {e}");
            None
        }
    }
}
