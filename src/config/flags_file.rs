//! The flags file: each agent's stage and percentages, and the rollback switch. Hot: every
//! proxy naming it in `[rollout] flags` reloads it when it changes.
//!
//! ```toml
//! rollback = false                 # true: every agent's reads back to legacy
//!
//! [agents.session_memory]
//! stage = "live"                   # off, dualwrite, shadow, live, rampdown, complete
//! mirror_percent = 100
//! shadow_percent = 100
//! read_percent = 25
//! rollback = false                 # this agent only
//! ```
//!
//! Read like the configuration: every mistake at once, each with its key path. There are
//! no environment overrides: the file is the one source of truth every proxy shares. An
//! agent the file does not mention is `off`; a table for an agent this proxy does not
//! front is validated and otherwise ignored (one file can serve every sidecar).

use super::ConfigErrors;
use super::reader::{Errors, Table};
use crate::flags::{AgentFlags, Percent, Stage};
use figment::Figment;
use figment::providers::{Format, Toml};
use figment::value::Value;
use std::collections::BTreeMap;

/// A validated flags file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FlagsFile {
    /// Every agent rolled back.
    pub rollback: bool,
    /// By agent name; each agent's own `rollback` is in its [`AgentFlags`].
    pub agents: BTreeMap<String, AgentFlags>,
}

impl FlagsFile {
    /// The flags the file gives `agent` (`off` when it does not mention it), with the
    /// file-wide switch folded in.
    pub fn agent(&self, agent: &str) -> AgentFlags {
        let mut flags = self.agents.get(agent).copied().unwrap_or_default();
        flags.rollback |= self.rollback;
        flags
    }
}

/// Parses the text of a flags file; `origin` names it in errors.
///
/// # Errors
/// Every mistake at once: TOML syntax, unknown keys, bad stages or percentages.
pub fn parse_flags(text: &str, origin: &str) -> Result<FlagsFile, ConfigErrors> {
    let figment = Figment::new().merge(Toml::string(text));
    let root_value = super::merged_tree(&figment, origin)?;
    let mut errors = Errors::new(&figment, origin.to_owned());
    let mut root = Table::new("", Some(&root_value), &mut errors);
    let rollback = root.get("rollback", &mut errors).unwrap_or(false);
    let mut agents = BTreeMap::new();
    match root.value("agents") {
        None => {}
        Some(Value::Dict(_, dict)) => {
            for (name, value) in dict {
                if let Some(flags) = read_agent(name, value, &mut errors) {
                    agents.insert(name.clone(), flags);
                }
            }
        }
        Some(other) => errors.push("agents", Some(other), "expected [agents.<name>] tables"),
    }
    root.finish(&mut errors);
    if errors.list.is_empty() {
        Ok(FlagsFile { rollback, agents })
    } else {
        Err(ConfigErrors(errors.list))
    }
}

fn read_agent(name: &str, value: &Value, errors: &mut Errors) -> Option<AgentFlags> {
    let path = format!("agents.{name}");
    if !matches!(value, Value::Dict(..)) {
        errors.push(&path, Some(value), "expected a table of flags");
        return None;
    }
    let mut t = Table::new(path, Some(value), errors);
    let d = AgentFlags::default();
    let flags = AgentFlags {
        stage: t.parse("stage", d.stage, errors, Stage::parse),
        mirror_percent: t.parse("mirror_percent", d.mirror_percent, errors, Percent::parse),
        shadow_percent: t.parse("shadow_percent", d.shadow_percent, errors, Percent::parse),
        read_percent: t.parse("read_percent", d.read_percent, errors, Percent::parse),
        rollback: t.get("rollback", errors).unwrap_or(false),
    };
    t.finish(errors);
    Some(flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_file_reads_into_flags() {
        let text = r#"
rollback = false
[agents.session_memory]
stage = "live"
read_percent = 12.5
shadow_percent = 50
[agents.jarvis_memory]
stage = "dualwrite"
mirror_percent = 10
rollback = true
"#;
        let file = parse_flags(text, "flags.toml").expect("valid");
        let session = file.agent("session_memory");
        assert_eq!(session.stage, Stage::Live);
        assert_eq!(session.read_percent, Percent::parse("12.5").unwrap());
        assert_eq!(session.shadow_percent, Percent::parse("50").unwrap());
        assert_eq!(session.mirror_percent, Percent::ALL);
        assert!(!session.rollback);
        assert!(file.agent("jarvis_memory").rollback);
        assert_eq!(file.agent("unmentioned"), AgentFlags::default());
    }

    #[test]
    fn the_file_wide_switch_rolls_every_agent_back() {
        let file = parse_flags(
            "rollback = true\n[agents.a]\nstage = \"live\"\n",
            "flags.toml",
        )
        .expect("valid");
        assert!(file.agent("a").rollback);
        assert!(file.agent("b").rollback);
    }

    #[test]
    fn every_mistake_is_reported_at_once_with_its_path() {
        let text = r#"
rolback = true
[agents.a]
stage = "liv"
read_percent = 101
colour = "red"
[agents.b]
stage = 3
"#;
        let errors = parse_flags(text, "flags.toml").unwrap_err().0;
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        for expected in [
            "rolback",
            "agents.a.stage",
            "agents.a.read_percent",
            "agents.a.colour",
            "agents.b.stage",
        ] {
            assert!(paths.contains(&expected), "{expected} not in {paths:?}");
        }
        assert!(errors.iter().all(|e| e.origin == "flags.toml"));
    }

    #[test]
    fn the_shipped_flags_file_is_valid_and_everything_off() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/flags.toml");
        let text = std::fs::read_to_string(path).expect("config/flags.toml");
        let file = parse_flags(&text, path).expect("valid");
        assert!(!file.rollback);
        assert_eq!(file.agents.len(), 3);
        assert!(file.agents.values().all(|f| *f == AgentFlags::default()));
    }

    #[test]
    fn broken_toml_is_an_error_not_a_default() {
        assert!(parse_flags("[agents.a\nstage = ", "f").is_err());
        assert!(parse_flags("agents = 3", "f").is_err());
        assert_eq!(parse_flags("", "f").unwrap(), FlagsFile::default());
    }
}
