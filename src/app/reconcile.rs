//! `memshift reconcile`: compares, repairs if asked (then compares again to verify), writes
//! the report files and records the run for `memshift report`.

use crate::backfill::{self, Finished, Outcome, Sender};
use crate::config::Config;
use crate::reconcile::{self, Options, Report};
use crate::store::{Store, VectorIndex};
use crate::translate::Origin;
use anyhow::{Context as _, bail};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Compare a legacy agent's store with the orchestrator, entity by entity, and write a
/// report (Markdown and JSON). Exit 0: no inconsistencies (legacy drift aside); 2: some
/// (after --repair: some remain); 1: failed.
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
    /// Make the orchestrator match legacy (refused once the orchestrator takes writes
    /// first), then compare again to verify.
    #[arg(long)]
    pub repair: bool,
    /// Where the report files go (default: <[mirror] data_dir>/reports).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print the report as JSON instead of the summary.
    #[arg(long)]
    pub json: bool,
    /// How far apart a legacy time and the orchestrator's may be for one record.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub match_window: Duration,
    /// Differences of each class listed in the Markdown report.
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
}

/// `memshift reconcile`: runs it and prints the summary (or the report as JSON).
///
/// # Errors
/// As [`run`].
pub fn execute(config: &Config, args: &Args) -> anyhow::Result<ExitCode> {
    use crate::reconcile::Class;
    let done = super::block_on(run(config, args))?;
    let r = &done.report;
    if args.json {
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
            println!("  {:<24} {}", class.as_label(), r.count(class));
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

/// What a run produced.
pub struct Reconciled {
    /// The final comparison (after repair and verification, with `--repair`).
    pub report: Report,
    /// The first comparison, when a repair followed it.
    pub before_repair: Option<Report>,
    pub markdown: PathBuf,
    pub json: PathBuf,
}

/// Runs a reconciliation.
///
/// # Errors
/// An unknown agent, a repair in a stage where the orchestrator is the source of truth, an
/// unreadable store, a database or file failure.
pub async fn run(config: &Config, args: &Args) -> anyhow::Result<Reconciled> {
    let agent = super::backfill::agent(config, &args.agent)?;
    if args.repair {
        refuse_repair_past_live(config, &agent.name)?;
    }
    let url = config.database.resolve_url().map_err(anyhow::Error::msg)?;
    let vectors = VectorIndex::new(&config.embedding.model, config.embedding.dimension);
    let store = Store::connect_lazy(url.expose(), &config.database, vectors)?;
    let options = Options {
        agent: agent.name.clone(),
        profile: agent.profile,
        from: args.from.clone(),
        match_window: args.match_window,
    };
    let mut report = reconcile::run(&options, &store).await?;
    let mut before_repair = None;
    if args.repair && !report.repairs.is_empty() {
        let batches = std::mem::take(&mut report.repairs);
        let settings = backfill::Settings {
            agent: agent.name.clone(),
            endpoint: config.mirror.orchestrator.as_str().to_owned(),
            window: 32,
            timeout: config.mirror.timeout,
            max_attempts: 8,
            give_up: Duration::from_secs(60),
            origin: Origin::Backfill {
                match_window: args.match_window,
            },
        };
        let (sent, failed) = tokio::task::spawn_blocking(move || send(settings, batches))
            .await
            .context("the repair sender panicked")??;
        let mut verified = reconcile::run(&options, &store).await?;
        verified.repaired = sent;
        verified.repair_failed = failed;
        report.repaired = sent;
        report.repair_failed = failed;
        before_repair = Some(std::mem::replace(&mut report, verified));
    }
    for run in before_repair.iter().chain([&report]) {
        reconcile::record(&store, run).await?;
    }
    store.close().await;

    let dir = args
        .out
        .clone()
        .unwrap_or_else(|| config.mirror.data_dir.join("reports"));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let stem = format!(
        "reconcile-{}-{}",
        report.agent,
        reconcile::stamp(report.started_at)
    );
    let markdown = dir.join(format!("{stem}.md"));
    let json = dir.join(format!("{stem}.json"));
    let mut text = String::new();
    if let Some(before) = &before_repair {
        text.push_str(&before.markdown(args.limit));
        text.push_str("\n---\n\n## After the repair\n\n");
    }
    text.push_str(&report.markdown(args.limit));
    std::fs::write(&markdown, text).with_context(|| format!("writing {}", markdown.display()))?;
    let body = serde_json::json!({"before_repair": before_repair, "report": report});
    std::fs::write(&json, serde_json::to_string_pretty(&body)?)
        .with_context(|| format!("writing {}", json.display()))?;
    Ok(Reconciled {
        report,
        before_repair,
        markdown,
        json,
    })
}

/// Legacy is the source of truth until the orchestrator takes writes first; from then on a
/// repair toward legacy's state would undo writes legacy has not replayed yet.
fn refuse_repair_past_live(config: &Config, agent: &str) -> anyhow::Result<()> {
    let Some(path) = &config.rollout.flags else {
        return Ok(());
    };
    let flags = crate::rollout::load_file(path)?.agent(agent);
    if flags.stage.writes_first_to_orchestrator() {
        bail!(
            "{agent} is in stage {}: the orchestrator takes writes first, so legacy is not the \
             source of truth and --repair would undo writes; reconcile without --repair",
            flags.stage
        );
    }
    Ok(())
}

/// Sends the repairs; returns how many operations succeeded and how many did not.
fn send(settings: backfill::Settings, batches: Vec<backfill::Batch>) -> anyhow::Result<(u64, u64)> {
    let mut sender = Sender::new(settings)?;
    let (mut sent, mut failed) = (0, 0);
    let mut pending = batches.into_iter();
    loop {
        while sender.has_room() {
            match pending.next() {
                Some(batch) => sender.admit(batch),
                None => break,
            }
        }
        if sender.is_idle() && pending.len() == 0 {
            break;
        }
        sender.turn(Duration::from_millis(50))?;
        for Finished { outcomes, .. } in sender.take_finished() {
            for o in outcomes {
                match o {
                    Outcome::Rejected(_) | Outcome::Failed(_) => failed += 1,
                    _ => sent += 1,
                }
            }
        }
    }
    Ok((sent, failed))
}
