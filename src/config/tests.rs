use super::*;

fn parse(toml: &str) -> Result<Config, ConfigErrors> {
    let figment = Figment::new().merge(Toml::string(toml));
    from_figment(&figment, "test.toml".to_owned())
}

const MINIMAL: &str = r#"
[[agents]]
name = "jarvis"
profile = "jarvis_memory"
listen = "tcp://0.0.0.0:5598"
legacy = "tcp://127.0.0.1:15598"
"#;

#[test]
fn minimal_file_gets_documented_defaults() {
    let config = parse(MINIMAL).expect("valid");
    assert_eq!(config.proxy, ProxySettings::default());
    assert_eq!(config.metrics.listen.to_string(), "127.0.0.1:9464");
    assert_eq!(config.log, LogSettings::default());
    let agent = &config.agents[0];
    assert_eq!(agent.profile, Profile::JarvisMemory);
    assert_eq!(agent.legacy_timeout, Duration::from_secs(30));
    assert_eq!(agent.guard, GuardPolicy::default());
}

#[test]
fn every_key_is_read() {
    let config = parse(
        r#"
[proxy]
shutdown_grace = "3s"
max_in_flight = 64
linger = "250ms"
heartbeat_interval = "1s"
heartbeat_timeout = "4s"
[metrics]
listen = "0.0.0.0:9000"
[log]
level = "memshift=debug"
format = "json"
[[agents]]
name = "session_memory"
profile = "session_memory"
listen = "tcp://*:5574"
legacy = "tcp://legacy-host:15574"
legacy_timeout = "2s"
[agents.guard]
multipart = false
non_json = true
"#,
    )
    .expect("valid");
    assert_eq!(config.proxy.shutdown_grace, Duration::from_secs(3));
    assert_eq!(config.proxy.max_in_flight, 64);
    assert_eq!(config.proxy.linger, Duration::from_millis(250));
    assert_eq!(config.log.format, LogFormat::Json);
    assert_eq!(config.metrics.listen.port(), 9000);
    let agent = &config.agents[0];
    assert_eq!(agent.listen.as_str(), "tcp://*:5574");
    assert_eq!(agent.legacy_timeout, Duration::from_secs(2));
    assert_eq!(
        agent.guard,
        GuardPolicy {
            multipart: false,
            non_json: true
        }
    );
}

#[test]
fn all_mistakes_are_reported_at_once_with_their_path() {
    let err = parse(
        r#"
[proxy]
shutdown_grace = "soon"
colour = "blue"
[[agents]]
name = "jarvis"
profile = "jarvis"
listen = "tcp://0.0.0.0:5598"
legacy = "tcp://127.0.0.1"
[[agents]]
name = "jarvis"
profile = "session_memory"
listen = "tcp://0.0.0.0:5598"
"#,
    )
    .expect_err("invalid");
    let paths: Vec<_> = err.0.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "proxy.shutdown_grace",
            "proxy.colour",
            "agents[0].profile",
            "agents[0].legacy",
            "agents[1].legacy",
        ],
        "{err}"
    );
    assert!(err.0.iter().all(|e| e.origin == "test.toml"), "{err}");
    assert!(
        err.to_string()
            .starts_with("5 errors in the configuration:"),
        "{err}"
    );
}

#[test]
fn duplicates_are_rejected() {
    let twice = format!("{MINIMAL}{MINIMAL}");
    let err = parse(&twice).expect_err("duplicate");
    let paths: Vec<_> = err.0.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["agents[1].name", "agents[1].listen"], "{err}");
}

#[test]
fn agents_are_optional_for_the_orchestrator() {
    let config = parse("[proxy]\nlinger = \"1s\"\n").expect("no agents is valid");
    assert!(config.agents.is_empty());
    assert_eq!(config.orchestrator, OrchestratorSettings::default());
    assert_eq!(config.embedding, EmbeddingSettings::default());
}

#[test]
fn orchestrator_keys_are_read_and_checked() {
    let config = parse(
        r#"
[database]
url = "postgres://memshift:s3cret@db:5432/memory"
max_connections = 8
[orchestrator]
listen = "tcp://127.0.0.1:*"
request_deadline = "750ms"
access_log = false
[embedding]
provider = "openai"
url = "http://127.0.0.1:11434/"
model = "nomic-embed-text"
dimension = 768
api_key_env = "EMBEDDING_KEY"
"#,
    )
    .expect("valid");
    let url = config.database.url.as_ref().expect("url");
    assert!(!url.to_string().contains("s3cret"), "{url}");
    assert!(!format!("{:?}", config.database).contains("s3cret"));
    assert_eq!(
        config.orchestrator.request_deadline,
        Duration::from_millis(750)
    );
    assert!(!config.orchestrator.access_log);
    assert_eq!(
        config.embedding.provider,
        EmbeddingProvider::OpenAi {
            url: "http://127.0.0.1:11434".into(),
            api_key_env: Some("EMBEDDING_KEY".into())
        }
    );
    assert_eq!(config.embedding.dimension, 768);

    let err = parse(
        r#"
[database]
url = "mysql://root:hunter2@db/x"
[embedding]
provider = "openai"
dimension = 4096
"#,
    )
    .expect_err("invalid");
    let paths: Vec<_> = err.0.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "database.url",
            "embedding.dimension",
            "embedding.url",
            "embedding.model"
        ],
        "{err}"
    );
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

#[test]
fn wrong_types_are_reported_not_coerced() {
    let err = parse(&format!("{MINIMAL}[agents.guard]\nmultipart = \"yes\"\n")).expect_err("type");
    assert_eq!(err.0.len(), 1, "{err}");
    assert_eq!(err.0[0].path, "agents[0].guard.multipart");
    let err = parse(&format!("[proxy]\nmax_in_flight = 0\n{MINIMAL}")).expect_err("range");
    assert_eq!(err.0[0].path, "proxy.max_in_flight");
}

#[test]
fn endpoints_are_checked_for_their_role() {
    let ok_bind = [
        "tcp://*:5574",
        "tcp://0.0.0.0:*",
        "tcp://[::1]:80",
        "ipc:///tmp/x",
        "inproc://a",
    ];
    for e in ok_bind {
        assert!(Endpoint::parse_bind(e).is_ok(), "{e}");
    }
    let bad = [
        "tcp://host",
        "tcp://:80",
        "tcp://h:0",
        "tcp://h:99999",
        "udp://h:1",
        "h:1",
        "ipc://",
    ];
    for e in bad {
        assert!(Endpoint::parse_bind(e).is_err(), "{e}");
        assert!(Endpoint::parse_connect(e).is_err(), "{e}");
    }
    assert!(Endpoint::parse_connect("tcp://127.0.0.1:*").is_err());
}

#[test]
fn the_mirror_is_read_and_checked_and_flags_are_not_agent_keys() {
    let config = parse(MINIMAL).expect("valid");
    assert_eq!(config.mirror, MirrorSettings::default());
    assert_eq!(config.rollout, RolloutSettings::default());

    let config = parse(&format!(
        "{MINIMAL}\
         [mirror]\ndata_dir = \"/tmp/x\"\norchestrator = \"tcp://orch:5570\"\ntimeout = \"2s\"\n\
         max_in_flight = 8\nqueue = 100\nmax_pending = 5000\nmax_attempts = 3\nmax_age = \"1h\"\n\
         backoff_base = \"10ms\"\nbackoff_max = \"1s\"\ndurability = \"normal\"\n"
    ))
    .expect("valid");
    let m = &config.mirror;
    assert_eq!(m.data_dir, std::path::PathBuf::from("/tmp/x"));
    assert_eq!(m.orchestrator.as_str(), "tcp://orch:5570");
    assert_eq!(
        (
            m.timeout,
            m.max_in_flight,
            m.queue,
            m.max_pending,
            m.max_attempts
        ),
        (Duration::from_secs(2), 8, 100, 5000, 3)
    );
    assert_eq!(m.max_age, Duration::from_secs(3600));
    assert_eq!(m.durability, Durability::Normal);

    let errors = parse(&format!(
        "{MINIMAL}stage = \"live\"\nmirror_percent = 101\n\
         [mirror]\norchestrator = \"tcp://orch:*\"\nbackoff_base = \"2s\"\nbackoff_max = \"1s\"\ndurability = \"maybe\"\nqueue = 0\n"
    ))
    .unwrap_err();
    let paths: Vec<&str> = errors.0.iter().map(|e| e.path.as_str()).collect();
    assert!(
        errors.to_string().contains("flags moved to the flags file"),
        "{errors}"
    );
    for expected in [
        "agents[0].stage",
        "agents[0].mirror_percent",
        "mirror.orchestrator",
        "mirror.backoff_max",
        "mirror.durability",
        "mirror.queue",
    ] {
        assert!(paths.contains(&expected), "{expected} not in {errors}");
    }
}

#[test]
fn the_shipped_reference_file_holds_the_defaults() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/memshift.toml");
    let figment = Figment::new().merge(Toml::file_exact(&path));
    let config = from_figment(&figment, path.display().to_string()).expect("valid");
    assert_eq!(config.proxy, ProxySettings::default());
    assert_eq!(config.mirror, MirrorSettings::default());
    assert_eq!(config.shadow, ShadowSettings::default());
    assert_eq!(config.live, LiveSettings::default());
    assert_eq!(config.orchestrator, OrchestratorSettings::default());
    assert_eq!(config.embedding, EmbeddingSettings::default());
    assert_eq!(config.rollout, RolloutSettings::default());
}

#[test]
fn rollout_settings_are_read_and_checked() {
    let config = parse(&format!(
        "{MINIMAL}[rollout]\nflags = \"/etc/memshift/flags.toml\"\npoll_interval = \"5s\"\n\
         gates = \"warn\"\n[rollout.auto]\nmin_samples = 50\nmax_inconsistency = 0.01\nhold = 1\n"
    ))
    .expect("valid");
    let r = &config.rollout;
    assert_eq!(r.gates, GateMode::Warn);
    assert_eq!(r.poll_interval, Duration::from_secs(5));
    assert_eq!(
        r.panic_path(),
        Some(std::path::PathBuf::from("/etc/memshift/memshift.panic"))
    );
    assert_eq!(
        (r.auto.min_samples, r.auto.max_inconsistency, r.auto.hold),
        (50, 0.01, 1)
    );
    let errors = parse(&format!(
        "{MINIMAL}[rollout]\ngates = \"maybe\"\npoll_interval = \"0s\"\n\
         [rollout.auto]\nmax_error_rate = 2\nwindow = \"2h\"\nspeed = 1\n"
    ))
    .unwrap_err();
    let paths: Vec<&str> = errors.0.iter().map(|e| e.path.as_str()).collect();
    for expected in [
        "rollout.gates",
        "rollout.poll_interval",
        "rollout.auto.max_error_rate",
        "rollout.auto.max_window",
        "rollout.auto.speed",
    ] {
        assert!(paths.contains(&expected), "{expected} not in {errors}");
    }
}
