//! The command line: configuration errors are all reported, with exit status 64.

use crate::common;

use common::*;
use std::process::Command;

fn memshift(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_memshift"))
        .args(args)
        .env_remove("MEMSHIFT_CONFIG")
        .output()
        .expect("run memshift")
}

fn write_config(text: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::TempDir::new().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, text).unwrap();
    let path = path.to_str().unwrap().to_owned();
    (dir, path)
}

const THREE_MISTAKES: &str = r#"
[proxy]
shutdown_grace = "a while"

[[agents]]
name = "jarvis"
profile = "jarvis_v2"
listen = "tcp://0.0.0.0:5598"
legacy = "tcp://127.0.0.1:15598"
colour = "blue"
"#;

#[test]
fn three_mistakes_are_three_errors_and_exit_64() {
    let (_dir, path) = write_config(THREE_MISTAKES);
    for command in ["check-config", "proxy"] {
        let out = memshift(&[command, "--config", &path]);
        assert_eq!(out.status.code(), Some(64), "{command}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(stderr.contains("3 errors in the configuration"), "{stderr}");
        for (key, what) in [
            ("proxy.shutdown_grace", "invalid duration"),
            ("agents[0].profile", "unknown profile \"jarvis_v2\""),
            ("agents[0].colour", "unknown key"),
        ] {
            let line = stderr
                .lines()
                .find(|l| l.contains(key))
                .unwrap_or_else(|| panic!("{key} in {stderr}"));
            assert!(
                line.contains(&path),
                "each error says where it came from: {line}"
            );
            assert!(line.contains(what), "{line}");
        }
    }
}

/// `check-config` of the shipped example with one environment override.
fn check_example_with_env(var: &str, value: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_memshift"))
        .args(["check-config", "--config"])
        .arg(repo().join("config/memshift.toml"))
        .env(var, value)
        .output()
        .expect("run memshift")
}

#[test]
fn environment_overrides_are_applied_and_named_in_errors() {
    let out = check_example_with_env("MEMSHIFT_PROXY__MAX_IN_FLIGHT", "64");
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("max_in_flight 64"));

    let out = check_example_with_env("MEMSHIFT_METRICS__LISTEN", "everywhere");
    assert_eq!(out.status.code(), Some(64));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("environment variable MEMSHIFT_METRICS__LISTEN")
    );
}

/// The example deployment's proxy configurations, with the environment deploy/compose.yml
/// gives them (the flags file at its mounted path is deploy/flags/flags.toml here).
#[test]
fn the_example_deployment_configs_are_valid() {
    for agent in ["session_memory", "contextual_memory", "jarvis_memory"] {
        let out = Command::new(env!("CARGO_BIN_EXE_memshift"))
            .args(["check-config", "--config"])
            .arg(repo().join(format!("deploy/proxy-{agent}.toml")))
            .env(
                "MEMSHIFT_ROLLOUT__FLAGS",
                repo().join("deploy/flags/flags.toml"),
            )
            .output()
            .expect("run memshift");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{agent}: {out:?}");
        assert!(
            stdout.contains(&format!("agent {agent} ({agent})")),
            "{stdout}"
        );
    }
}

#[test]
fn the_shipped_example_config_is_valid_and_described() {
    let example = repo().join("config/memshift.toml");
    let out = memshift(&["check-config", "--config", example.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    for agent in ["session_memory", "contextual_memory", "jarvis_memory"] {
        assert!(
            stdout.contains(&format!("agent {agent} ({agent})")),
            "{stdout}"
        );
    }
}

#[test]
fn a_missing_file_is_a_usage_error() {
    let out = memshift(&["check-config", "--config", "/nonexistent/memshift.toml"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("configuration file not found"));
}

#[test]
fn a_taken_port_fails_start_up_with_a_clear_error() {
    let ctx = zmq::Context::new();
    let squatter = ctx.socket(zmq::REP).unwrap();
    squatter.bind("tcp://127.0.0.1:*").unwrap();
    let taken = squatter.get_last_endpoint().unwrap().unwrap();
    let config = format!(
        "[metrics]\nlisten = \"127.0.0.1:0\"\n[[agents]]\nname = \"jarvis\"\nprofile = \"jarvis_memory\"\nlisten = \"{taken}\"\nlegacy = \"tcp://127.0.0.1:1\"\n"
    );
    let (_dir, path) = write_config(&config);
    let out = memshift(&["proxy", "--config", &path]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("agent jarvis: binding {taken}")),
        "{stderr}"
    );
}
