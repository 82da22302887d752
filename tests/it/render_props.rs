//! The rendering property: whatever history of writes a legacy agent has taken, the reply
//! memshift renders for a read from the orchestrator's copy of that history is the very
//! bytes the agent itself answers, key order included (only the agent's clock masked).
//!
//! Why: in stage `live` the orchestrator answers reads in the agent's place, and clients
//! see bytes. The fidelity drill (`tests/it/fidelity.rs`) walks one fixed workload through the
//! whole stack; this property aims at the two pure halves that decide those bytes —
//! `translate` (what a write becomes for the orchestrator) and `answer` (what a read
//! renders from it) — with many generated histories against the real Python stand-ins,
//! which follow `specs/legacy-agents.md` to the letter. Each write goes to the stand-in over
//! ZeroMQ; its actual reply decides the verdict, and the mirror ops are applied to an
//! in-memory model of the orchestrator's storage (rows appended at a strictly increasing
//! time, deleted per memory type and session or user, selected per query oldest first or
//! the newest `n`, as the shadow reader's `batch_read` pages them). Each read then goes to
//! the stand-in too, and its reply is compared with the rendered one as `json.dumps` bytes
//! (and the stand-in's bytes must be what `pyjson::dumps` writes of them, so the
//! comparison is one of bytes).
//!
//! The generators cover what the agents accept: contents that are numbers, lists, objects,
//! `null` or bools; text outside the BMP; every line boundary of Python's `splitlines` and
//! trailing newlines in contextual `code`; objects with many keys in no sorted order;
//! `max_tokens` of every JSON type and of sizes beyond 64 bits; ids that are missing,
//! `null`, numbers, `true`, or strings starting with `json:`; contextual sessions past the
//! 51 interactions a summary needs. Reads the answer module documents as unsupported
//! (`Unsupported`) are counted, and must be rare and expected for their input.
//!
//! Left out on purpose: contextual reads in the middle of a history (`get_context` cuts the
//! stored summary until the next rebuild, which memshift does not emulate, so a contextual
//! session is read once, at the end) and falsy session ids on session_memory's
//! `create_session` (the agent reuses the last id touched, which is not mirrored).
//!
//! Each case uses fresh ids, so one stand-in per agent serves many cases; it is restarted
//! when its store has grown (the JSON agents rewrite it on every write) or when a case
//! needs an id that cannot be fresh (`null`, `"default"`) and an earlier case used it.
//! `PROPTEST_CASES` overrides the number of cases per agent.
//!
//! The differences found so far (by the property, and one cause of them followed to the
//! other places it reaches: integers past 64 bits, which `serde_json` holds as floats) are
//! replayed, minimised, by a test of their own at the end, so that they fail on every run
//! and not only in the runs that happen to generate them.

use crate::common;

use chrono::{DateTime, TimeDelta, Utc};
use common::{StandIn, req_socket};
use memshift::answer::{self, Prepared, Query, Stored, Unsupported};
use memshift::compare::{mask_volatile, paths};
use memshift::profile::Profile;
use memshift::pyjson;
use memshift::translate::{self, MirrorOp, Verdict};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{Config, TestCaseError, TestCaseResult, TestRunner};
use serde_json::{Map, Value, json};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::fmt::{Debug, Display};
use std::ops::Range;
use std::time::Instant;
use tempfile::TempDir;

/// Writes after which a stand-in is restarted: the JSON agents rewrite their whole store
/// on every write, so a large store slows every write down.
const RESTART_AFTER_WRITES: usize = 100;

// ---------------------------------------------------------------------------------------
// The orchestrator's storage, simulated.

struct Row {
    session_id: Option<String>,
    user_id: Option<String>,
    memory_type: String,
    content: Value,
    created_at: DateTime<Utc>,
}

/// What reads see of the orchestrator: memories, and the sessions they must belong to (a
/// memory's session is a foreign key). `batch_read` does not look at a session's state, so
/// ending one changes no read.
#[derive(Default)]
struct Storage {
    sessions: HashSet<String>,
    rows: Vec<Row>,
    ticks: i64,
}

impl Storage {
    fn apply(&mut self, op: &MirrorOp) -> Result<(), String> {
        match op {
            MirrorOp::EnsureSession { session_id, .. } => {
                self.sessions.insert(session_id.clone());
            }
            MirrorOp::EndSession { .. } => {}
            MirrorOp::CreateMemory {
                session_id,
                user_id,
                memory_type,
                content,
                ..
            } => {
                if let Some(s) = session_id
                    && !self.sessions.contains(s)
                {
                    return Err(format!("a memory in session {s:?}, which was never made"));
                }
                self.ticks += 1;
                // Strictly increasing, with microseconds (the agents' clocks have them).
                let start = DateTime::from_timestamp(1_763_934_484, 500_000_000).unwrap();
                self.rows.push(Row {
                    session_id: session_id.clone(),
                    user_id: user_id.clone(),
                    memory_type: memory_type.clone(),
                    content: content.clone(),
                    created_at: start + TimeDelta::microseconds(self.ticks * 1_001),
                });
            }
            MirrorOp::DeleteMemories {
                session_id,
                user_id,
                memory_type,
            } => {
                if session_id.is_none() && user_id.is_none() {
                    return Err(format!("a delete of every {memory_type:?} memory"));
                }
                self.rows.retain(|r| {
                    r.memory_type != *memory_type
                        || session_id
                            .as_ref()
                            .is_some_and(|s| r.session_id.as_ref() != Some(s))
                        || user_id
                            .as_ref()
                            .is_some_and(|u| r.user_id.as_ref() != Some(u))
                });
            }
            MirrorOp::DeleteMemory { .. } => return Err("a legacy write became a delete".into()),
        }
        Ok(())
    }

    /// A `batch_read` of `query`: every match oldest first, or the newest `n` of them.
    fn select(&self, query: &Query) -> Result<Vec<Stored>, String> {
        let mut rows: Vec<&Row> = self.rows.iter().collect();
        for (field, want) in &query.filter {
            match field.as_str() {
                "memory_type" => rows.retain(|r| Some(r.memory_type.as_str()) == want.as_str()),
                "session_id" => rows.retain(|r| r.session_id.as_deref() == want.as_str()),
                "user_id" => rows.retain(|r| r.user_id.as_deref() == want.as_str()),
                "sort" if *want == json!({"field": "created_at", "order": "asc"}) => {}
                _ => return Err(format!("the filter {field}: {want} is not simulated")),
            }
        }
        rows.sort_by_key(|r| r.created_at);
        let skip = query.newest.map_or(0, |n| rows.len().saturating_sub(n));
        Ok(rows[skip..]
            .iter()
            .map(|r| Stored {
                memory_type: r.memory_type.clone(),
                content: r.content.clone(),
                created_at: r.created_at,
            })
            .collect())
    }
}

// ---------------------------------------------------------------------------------------
// One stand-in, reused across cases.

#[derive(Default)]
struct Tally {
    writes: usize,
    reads: usize,
    unsupported: BTreeMap<&'static str, usize>,
    /// Reads per kind of stand-in reply: shows what the histories reached.
    shapes: BTreeMap<&'static str, usize>,
}

struct Live {
    agent: &'static str,
    profile: Profile,
    // Dropped in this order: the socket, the stand-in (killed), its directory, the context.
    socket: zmq::Socket,
    standin: StandIn,
    _dir: TempDir,
    ctx: zmq::Context,
    /// Writes since the stand-in started.
    writes: usize,
    /// Keys of ids that cannot be fresh (`null`, `"default"`), used since it started.
    fixed_used: HashSet<String>,
    /// A request went unanswered: the REQ socket is stuck, the stand-in suspect.
    broken: bool,
    next_id: u64,
    tally: Tally,
}

fn spawn(agent: &str) -> (StandIn, TempDir) {
    let dir = TempDir::new().expect("tempdir");
    // session_memory's expiry (an hour plus the UTC offset after creation, under a minute
    // west of UTC-1) kept out of the way whatever TZ the test runs under.
    let standin = StandIn::spawn(
        agent,
        dir.path(),
        "tcp://127.0.0.1:*",
        &["--idle-expiry", "1e9"],
    );
    (standin, dir)
}

impl Live {
    fn start(agent: &'static str) -> Live {
        let ctx = zmq::Context::new();
        let (standin, dir) = spawn(agent);
        Live {
            agent,
            profile: Profile::from_name(agent).expect("a built-in profile"),
            socket: req_socket(&ctx, &standin.endpoint),
            standin,
            _dir: dir,
            ctx,
            writes: 0,
            fixed_used: HashSet::new(),
            broken: false,
            next_id: 0,
            tally: Tally::default(),
        }
    }

    fn restart(&mut self) {
        let (standin, dir) = spawn(self.agent);
        self.socket = req_socket(&self.ctx, &standin.endpoint);
        self.standin = standin;
        self._dir = dir;
        self.writes = 0;
        self.fixed_used.clear();
        self.broken = false;
    }

    /// Before each case.
    fn begin(&mut self) {
        if self.broken || self.writes > RESTART_AFTER_WRITES {
            self.restart();
        }
    }

    /// A number no earlier case of this test had.
    fn fresh(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Claims the id `id` (under `field`; `None` when missing) for this case: an id that
    /// cannot be fresh and was used since the stand-in started means a new stand-in.
    fn claim(&mut self, id: &Id, field: &str, value: &Option<Value>) {
        if !matches!(id, Id::Fixed { .. }) {
            return;
        }
        let mut req = Map::new();
        if let Some(v) = value {
            req.insert(field.into(), v.clone());
        }
        let key = translate::request_key(self.profile, &req).expect("a fixed id has a key");
        if !self.fixed_used.insert(key.clone()) {
            self.restart();
            self.fixed_used.insert(key);
        }
    }

    fn exchange(&mut self, body: &[u8]) -> Result<Vec<u8>, TestCaseError> {
        let reply = self
            .socket
            .send(body, 0)
            .and_then(|()| self.socket.recv_bytes(0));
        reply.map_err(|e| {
            self.broken = true;
            TestCaseError::fail(format!("{}: no reply to {} ({e})", self.agent, text(body)))
        })
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// ---------------------------------------------------------------------------------------
// One case: writes mirrored into a fresh storage, reads compared.

struct Run<'a> {
    live: &'a mut Live,
    storage: Storage,
    /// Every request of the case so far, with the stand-in's reply.
    history: Vec<String>,
}

impl<'a> Run<'a> {
    fn new(live: &'a mut Live) -> Run<'a> {
        Run {
            live,
            storage: Storage::default(),
            history: Vec::new(),
        }
    }

    fn fail(&self, what: impl Display) -> TestCaseError {
        let history: Vec<String> = self
            .history
            .iter()
            .enumerate()
            .map(|(i, h)| format!("  {:>3}. {h}", i + 1))
            .collect();
        TestCaseError::fail(format!(
            "{}: {what}\nhistory (request -> stand-in reply), oldest first:\n{}",
            self.live.agent,
            history.join("\n")
        ))
    }

    /// Sends a write, and applies its mirror (if the agent took it) to the storage.
    fn write(&mut self, body: Vec<u8>) -> Result<Value, TestCaseError> {
        let reply = self.live.exchange(&body)?;
        self.live.writes += 1;
        self.live.tally.writes += 1;
        self.history
            .push(format!("{} -> {}", text(&body), text(&reply)));
        match translate::translate(self.live.profile, &body, &reply) {
            Verdict::Mirror(m) => {
                for op in &m.ops {
                    self.storage.apply(op).map_err(|e| self.fail(e))?;
                }
            }
            Verdict::Failed(_) => {}
            Verdict::NotAWrite => return Err(self.fail("a write translated as no write")),
        }
        Ok(serde_json::from_slice(&reply).unwrap_or(Value::Null))
    }

    /// Sends a read and compares the stand-in's reply with memshift's rendering.
    /// `may_skip`: whether this request may be `Unsupported` for that reason.
    fn read(&mut self, body: Vec<u8>, may_skip: impl Fn(Unsupported) -> bool) -> TestCaseResult {
        let profile = self.live.profile;
        let legacy = self.live.exchange(&body)?;
        let request: Value = serde_json::from_slice(&body).expect("requests are JSON");
        let parsed: Value = serde_json::from_slice(&legacy)
            .map_err(|e| self.fail(format!("reply {} is not JSON: {e}", text(&legacy))))?;
        let rendered = match answer::prepare(profile, &request) {
            Prepared::Immediate(v) => Ok(v),
            Prepared::Fetch { queries, .. } => {
                let data = queries
                    .iter()
                    .map(|q| self.storage.select(q))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| self.fail(e))?;
                answer::answer(profile, &request, &data)
            }
            Prepared::Unsupported(u) => Err(u),
            Prepared::NotARead => return Err(self.fail("a read prepared as no read")),
        };
        let tally = &mut self.live.tally;
        tally.reads += 1;
        *tally.shapes.entry(shape(profile, &parsed)).or_default() += 1;
        let rendered = match rendered {
            Ok(v) => Some(v),
            Err(u) if may_skip(u) => {
                *tally.unsupported.entry(u.as_label()).or_default() += 1;
                None
            }
            Err(u) => {
                return Err(self.fail(format!(
                    "unsupported ({}) where the answer module documents no reason to be\nrequest:  {}\nstand-in: {}",
                    u.as_label(),
                    text(&body),
                    text(&legacy)
                )));
            }
        };
        if pyjson::dumps(&parsed).as_bytes() != legacy {
            // Not comparable as bytes: what memshift parsed of the reply is not what it said.
            return Err(self.fail(format!(
                "pyjson::dumps does not give back the stand-in's bytes\nrequest:    {}\nstand-in:   {}\nre-encoded: {}\nrendered:   {}",
                text(&body),
                text(&legacy),
                pyjson::dumps(&parsed),
                rendered.as_ref().map_or("(unsupported)".into(), pyjson::dumps),
            )));
        }
        let Some(rendered) = rendered else {
            self.history
                .push(format!("{} -> {}", text(&body), text(&legacy)));
            return Ok(());
        };
        let (mut l, mut r) = (parsed, rendered.clone());
        mask_volatile(profile, &mut l);
        mask_volatile(profile, &mut r);
        let (masked_legacy, masked_rendered) = (pyjson::dumps(&l), pyjson::dumps(&r));
        if masked_legacy != masked_rendered {
            return Err(self.fail(format!(
                "the rendered reply is not the stand-in's\nrequest:         {}\nstand-in:        {}\nrendered:        {}\nstand-in masked: {masked_legacy}\nrendered masked: {masked_rendered}\ndiffering paths: {:?}",
                text(&body),
                text(&legacy),
                pyjson::dumps(&rendered),
                paths(&l, &r),
            )));
        }
        self.history
            .push(format!("{} -> {}", text(&body), text(&legacy)));
        Ok(())
    }
}

/// What kind of reply a read got, for the tally.
fn shape(profile: Profile, reply: &Value) -> &'static str {
    let has = |k: &str| reply.get(k).is_some();
    let nonempty = |k: &str| {
        reply
            .get(k)
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty())
    };
    match profile {
        Profile::SessionMemory if nonempty("context") => "context",
        Profile::SessionMemory if has("context") => "empty context",
        Profile::SessionMemory => "missing session_id",
        Profile::ContextualMemory if has("code_context") => "summary with code",
        Profile::ContextualMemory if has("conversation_summary") => "summary",
        Profile::ContextualMemory if has("errors_encountered") => "summary of errors",
        Profile::ContextualMemory if has("key_decisions") => "decisions only",
        Profile::ContextualMemory => "no summary",
        Profile::JarvisMemory if nonempty("memories") => "memories",
        Profile::JarvisMemory => "no memories",
    }
}

/// A request: the fields given (`None`: left out), in order, as a client writes them
/// (raw UTF-8), with `max_tokens` last as the raw JSON text given, if any (some numbers
/// have no `serde_json::Value`).
fn request(fields: &[(&str, Option<Value>)], max_tokens: Option<&str>) -> Vec<u8> {
    let map: Map<String, Value> = fields
        .iter()
        .filter_map(|(k, v)| Some(((*k).to_owned(), v.clone()?)))
        .collect();
    let mut body = Value::Object(map).to_string();
    if let Some(raw) = max_tokens {
        body.pop();
        body.push_str(&format!(",\"max_tokens\":{raw}}}"));
    }
    body.into_bytes()
}

/// Runs the property for one agent.
fn check<C: Clone + Debug>(
    agent: &'static str,
    default_cases: u32,
    cases: impl Strategy<Value = C>,
    run: fn(&mut Live, &C) -> TestCaseResult,
    covered: &[&str],
) {
    let started = Instant::now();
    let n = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default_cases);
    let config = Config {
        cases: n,
        // Nothing written next to the sources; a failure prints its whole case.
        failure_persistence: None,
        // Each shrink step replays a history against the live stand-in: bound the time.
        max_shrink_iters: 1_000,
        max_shrink_time: 60_000,
        ..Config::default()
    };
    let live = RefCell::new(Live::start(agent));
    let mut runner = TestRunner::new(config);
    let result = runner.run(&cases, |case| {
        let mut live = live.borrow_mut();
        live.begin();
        run(&mut live, &case)
    });
    let live = live.into_inner();
    if let Err(e) = result {
        panic!("{e}");
    }
    let t = &live.tally;
    let unsupported: usize = t.unsupported.values().sum();
    println!(
        "{agent}: {n} cases, {} writes, {} reads compared byte for byte, {unsupported} unsupported {:?}, replies {:?}, {:.1?}",
        t.writes,
        t.reads - unsupported,
        t.unsupported,
        t.shapes,
        started.elapsed()
    );
    // Most reads must really be compared. The generator makes a declined read (a list
    // query with text outside ASCII, a `max_tokens` below i64::MIN) about one time in ten:
    // a quarter leaves room for a random run of 32 cases (4 of 32 happened), and still
    // fails a renderer that declines as a habit.
    assert!(
        unsupported * 4 <= t.reads,
        "{agent}: {unsupported} of {} reads unsupported",
        t.reads
    );
    if n >= 16 {
        for shape in covered {
            assert!(
                t.shapes.get(shape).is_some_and(|&c| c > 0),
                "{agent}: no read got a reply of the kind {shape:?}: {:?}",
                t.shapes
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Values.

#[rustfmt::skip]
const WORDS: &[&str] = &[
    "hello", "world", " ", " ", "Database", "sql", "SQLite", "web", "HTTP", "flask", "API",
    "route", "thread", "Concurrency", "async", "error", "ERROR", "Exception", "fn main()",
    "SELECT * FROM t;", "é", "ß", "中文", "🎉", "𝔘𝔫𝔦", "👍🏽", "\u{212A}elvin", "İ", "ΣΑΣ", "\"",
    "\\", "'", "\t", "\u{7f}", "\u{0}", "\u{1f}", "\u{feff}", "\u{fffd}", "</b>", "0.5",
    "None",
];

/// Every line boundary of Python's `str.splitlines`.
const NEWLINES: &[&str] = &[
    "\n", "\r", "\r\n", "\u{b}", "\u{c}", "\u{1c}", "\u{1d}", "\u{1e}", "\u{85}", "\u{2028}",
    "\u{2029}",
];

#[rustfmt::skip]
const FLOATS: &[f64] = &[
    0.1, -0.0, 0.0, 1.5, 2.0, 1e16, 1e-7, 1e22, 1e300, 5e-324, f64::MAX, f64::MIN_POSITIVE,
    0.30000000000000004, 17_781_180_435_634.562, 123_456_789.123_456_79, -2.5e-10,
];

#[rustfmt::skip]
const KEYS: &[&str] = &[
    "zeta", "alpha", "k10", "k9", "K1", "b", "a", "text", "content", "type", "memory",
    "timestamp", "émoji🎉", "", "2", "10", "null", "status",
];

/// `max_tokens` as raw JSON: every type, and integers past 64 bits.
#[rustfmt::skip]
const MAX_TOKENS: &[&str] = &[
    "null", "0", "1", "-1", "-3", "2", "3", "7", "25", "2000", "9223372036854775807",
    "-9223372036854775808", "18446744073709551615", "-9223372036854775809",
    "100000000000000000000", "-100000000000000000000", "2.5", "-1.5", "2.0", "1e2", "0.0",
    "-0.0", "true", "false", "\"100\"", "\"\"", "[]", "[1]", "{}", "{\"a\": 1}",
];

/// Decorations of string ids (an empty one makes an id of digits only, like `"17"`).
const DECOR: &[&str] = &["ctx-", "séance-", "🎉", "用户", "", "null-", "json-"];

fn fragment() -> BoxedStrategy<String> {
    prop_oneof![
        8 => select(WORDS).prop_map(String::from),
        2 => select(NEWLINES).prop_map(String::from),
        1 => "\\PC{1,6}",
    ]
    .boxed()
}

fn text_of(len: Range<usize>) -> BoxedStrategy<String> {
    vec(fragment(), len).prop_map(|f| f.concat()).boxed()
}

/// Mostly short; now and then past 100 and 200 characters (the cuts of queries and errors).
fn any_text() -> BoxedStrategy<String> {
    prop_oneof![5 => text_of(0..12), 1 => text_of(30..110)].boxed()
}

fn finite_f64() -> BoxedStrategy<f64> {
    use proptest::num::f64::{NEGATIVE, NORMAL, POSITIVE, SUBNORMAL, ZERO};
    (POSITIVE | NEGATIVE | NORMAL | SUBNORMAL | ZERO).boxed()
}

fn leaf() -> BoxedStrategy<Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1000i64..1000).prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        select(FLOATS).prop_map(Value::from),
        finite_f64().prop_map(Value::from),
        text_of(0..6).prop_map(Value::from),
    ]
    .boxed()
}

fn key() -> BoxedStrategy<String> {
    prop_oneof![
        3 => select(KEYS).prop_map(String::from),
        2 => "[a-z]{1,8}",
        1 => text_of(1..3),
    ]
    .boxed()
}

/// An object whose keys come in the order generated: no sorted order.
fn object_of(values: BoxedStrategy<Value>, len: Range<usize>) -> BoxedStrategy<Value> {
    vec((key(), values), len)
        .prop_map(|kv| Value::Object(kv.into_iter().collect()))
        .boxed()
}

fn json_value() -> BoxedStrategy<Value> {
    leaf()
        .prop_recursive(3, 32, 8, |inner| {
            prop_oneof![
                vec(inner.clone(), 0..6).prop_map(Value::Array),
                object_of(inner.boxed(), 0..8),
            ]
        })
        .boxed()
}

/// A list, as a `user_query` content: its `str()` is what the summary prints.
fn list() -> BoxedStrategy<Value> {
    prop_oneof![
        vec(leaf(), 0..5).prop_map(Value::Array),
        vec(json_value(), 1..3).prop_map(Value::Array),
    ]
    .boxed()
}

fn metadata() -> BoxedStrategy<Option<Value>> {
    prop_oneof![
        4 => Just(None),
        1 => Just(Some(json!({}))),
        1 => Just(Some(json!(""))),
        1 => Just(Some(json!(0))),
        2 => object_of(leaf(), 1..6).prop_map(Some),
    ]
    .boxed()
}

fn request_id() -> BoxedStrategy<Option<Value>> {
    prop_oneof![
        2 => Just(None),
        2 => text_of(0..4).prop_map(|s| Some(json!(s))),
        1 => any::<i64>().prop_map(|n| Some(json!(n))),
        1 => Just(Some(Value::Null)),
        1 => object_of(leaf(), 1..4).prop_map(Some),
    ]
    .boxed()
}

fn max_tokens() -> BoxedStrategy<Option<String>> {
    prop_oneof![
        2 => Just(None),
        4 => (-10i64..120).prop_map(|n| Some(n.to_string())),
        1 => (120i64..3000).prop_map(|n| Some(n.to_string())),
        3 => select(MAX_TOKENS).prop_map(|s| Some(s.to_owned())),
        1 => finite_f64().prop_map(|f| Some(json!(f).to_string())),
    ]
    .boxed()
}

/// An id of a contextual session or a jarvis user.
#[derive(Clone, Debug)]
enum Id {
    /// A string: the decoration and a fresh number.
    Text(&'static str),
    /// A string `json:<fresh number>`, the text of an id memshift writes for a number.
    JsonText,
    /// A fresh integer; read back, now and then, as the float of the same value.
    Int,
    /// A fresh float.
    Float,
    /// An id no counter makes fresh: written as `write` and read as `read` (`None`: the
    /// field left out), two forms of one key.
    Fixed {
        write: Option<Value>,
        read: Option<Value>,
    },
}

impl Id {
    /// The id written and the id read (when `alt`, another form of the same key).
    fn forms(&self, n: u64, alt: bool) -> (Option<Value>, Option<Value>) {
        let same = |v: Value| (Some(v.clone()), Some(v));
        match self {
            Id::Text(decor) => same(json!(format!("{decor}{n}"))),
            Id::JsonText => same(json!(format!("json:{n}"))),
            Id::Int => {
                let i = 100_000 + n as i64;
                let read = if alt { json!(i as f64) } else { json!(i) };
                (Some(json!(i)), Some(read))
            }
            Id::Float => same(json!(n as f64 + 0.25)),
            Id::Fixed { write, read } => (write.clone(), if alt { read } else { write }.clone()),
        }
    }
}

fn fixed(write: Option<Value>, read: Option<Value>) -> Id {
    Id::Fixed { write, read }
}

fn id(fixed_ids: Vec<Id>) -> BoxedStrategy<Id> {
    prop_oneof![
        6 => select(DECOR).prop_map(Id::Text),
        1 => Just(Id::JsonText),
        2 => Just(Id::Int),
        1 => Just(Id::Float),
        1 => select(fixed_ids),
    ]
    .boxed()
}

// ---------------------------------------------------------------------------------------
// session_memory: get_context after creates, adds, clears, deletes and reads.

#[derive(Clone, Debug)]
enum Target {
    Own,
    /// A session that was never created.
    Unknown,
    Missing,
}

#[derive(Clone, Debug)]
enum ReadTarget {
    Own,
    Unknown,
    /// An id of another type (`None`: left out).
    Given(Option<Value>),
}

#[derive(Clone, Debug)]
struct SessionRead {
    target: ReadTarget,
    max_tokens: Option<String>,
    request_id: Option<Value>,
}

#[derive(Clone, Debug)]
enum SessionStep {
    Add {
        target: Target,
        role: Value,
        content: Value,
        metadata: Option<Value>,
        request_id: Option<Value>,
    },
    Clear(Option<Value>),
    Delete(Option<Value>),
    /// `create_session` of the session's id again: a duplicate, or a re-creation after a
    /// delete.
    Recreate(Option<Value>),
    Read(SessionRead),
}

#[derive(Clone, Debug)]
struct SessionCase {
    /// The decoration of an id the client names; `None`: the agent picks a uuid4.
    named: Option<&'static str>,
    user_id: Option<Value>,
    metadata: Option<Value>,
    steps: Vec<SessionStep>,
    last: SessionRead,
}

fn session_content() -> BoxedStrategy<Value> {
    prop_oneof![
        150 => any_text().prop_map(Value::from),
        // Accepted, and held as it is: get_context answers `[]` while it is in reach (rare,
        // so that most contexts are not empty).
        1 => (1i64..1000).prop_map(Value::from),
        1 => Just(json!(2.5)),
        1 => Just(json!(true)),
        // Refused: falsy (missing parameters), or a value SQLite cannot bind.
        1 => Just(json!(0)),
        1 => Just(json!("")),
        1 => Just(Value::Null),
        1 => Just(json!(["a", 1])),
        1 => Just(json!({"k": "v"})),
        1 => Just(json!(18446744073709551615u64)),
    ]
    .boxed()
}

fn session_read(target: BoxedStrategy<ReadTarget>) -> BoxedStrategy<SessionRead> {
    (target, max_tokens(), request_id())
        .prop_map(|(target, max_tokens, request_id)| SessionRead {
            target,
            max_tokens,
            request_id,
        })
        .boxed()
}

fn read_target() -> BoxedStrategy<ReadTarget> {
    let odd = vec![
        None,
        Some(Value::Null),
        Some(json!("")),
        Some(json!(0)),
        Some(json!(0.0)),
        Some(json!(false)),
        Some(json!([])),
        Some(json!({})),
        Some(json!([1])),
        Some(json!({"a": 1})),
        Some(json!(7)),
        Some(json!(true)),
        Some(json!(2.5)),
    ];
    prop_oneof![
        12 => Just(ReadTarget::Own),
        1 => Just(ReadTarget::Unknown),
        2 => select(odd).prop_map(ReadTarget::Given),
    ]
    .boxed()
}

fn session_step() -> BoxedStrategy<SessionStep> {
    let target = prop_oneof![
        20 => Just(Target::Own),
        1 => Just(Target::Unknown),
        1 => Just(Target::Missing),
    ];
    let role = prop_oneof![
        10 => select(&["user", "assistant", "system", "ユーザー", "🤖 bot"][..]).prop_map(Value::from),
        1 => Just(json!(true)),
        1 => Just(json!(5)),
        1 => Just(json!("")),
        1 => Just(json!(["user"])),
    ];
    let add = (target, role, session_content(), metadata(), request_id()).prop_map(
        |(target, role, content, metadata, request_id)| SessionStep::Add {
            target,
            role,
            content,
            metadata,
            request_id,
        },
    );
    prop_oneof![
        16 => add,
        3 => session_read(read_target()).prop_map(SessionStep::Read),
        1 => request_id().prop_map(SessionStep::Clear),
        1 => request_id().prop_map(SessionStep::Delete),
        1 => request_id().prop_map(SessionStep::Recreate),
    ]
    .boxed()
}

fn session_case() -> BoxedStrategy<SessionCase> {
    let named = prop_oneof![3 => select(DECOR).prop_map(Some), 1 => Just(None)];
    let user_id = prop_oneof![
        2 => Just(None),
        2 => text_of(1..4).prop_map(|s| Some(json!(s))),
        1 => Just(Some(json!(5))),
    ];
    let last = session_read(Just(ReadTarget::Own).boxed());
    (named, user_id, metadata(), vec(session_step(), 0..20), last)
        .prop_map(|(named, user_id, metadata, steps, last)| SessionCase {
            named,
            user_id,
            metadata,
            steps,
            last,
        })
        .boxed()
}

fn run_session(live: &mut Live, case: &SessionCase) -> TestCaseResult {
    let n = live.fresh();
    let mut run = Run::new(live);
    let named = case.named.map(|decor| json!(format!("{decor}s{n}")));
    let rid = Some(json!(format!("create-{n}")));
    let create = |id: Option<Value>, rid: Option<Value>| {
        request(
            &[
                ("action", Some(json!("create_session"))),
                ("session_id", id),
                ("user_id", case.user_id.clone()),
                ("metadata", case.metadata.clone()),
                ("request_id", rid),
            ],
            None,
        )
    };
    let reply = run.write(create(named, rid))?;
    let Some(sid) = reply["session_id"].as_str().map(str::to_owned) else {
        return Err(run.fail("the create of a fresh session failed"));
    };
    let unknown = format!("never-{n}");
    let of = |target: &Target| match target {
        Target::Own => Some(json!(sid)),
        Target::Unknown => Some(json!(unknown)),
        Target::Missing => None,
    };
    for step in &case.steps {
        let simple = |action: &str, rid: &Option<Value>| {
            request(
                &[
                    ("action", Some(json!(action))),
                    ("session_id", Some(json!(sid))),
                    ("request_id", rid.clone()),
                ],
                None,
            )
        };
        match step {
            SessionStep::Add {
                target,
                role,
                content,
                metadata,
                request_id,
            } => {
                run.write(request(
                    &[
                        ("action", Some(json!("add_interaction"))),
                        ("session_id", of(target)),
                        ("role", Some(role.clone())),
                        ("content", Some(content.clone())),
                        ("metadata", metadata.clone()),
                        ("request_id", request_id.clone()),
                    ],
                    None,
                ))?;
            }
            SessionStep::Clear(rid) => {
                run.write(simple("clear_session", rid))?;
            }
            SessionStep::Delete(rid) => {
                run.write(simple("delete_session", rid))?;
            }
            SessionStep::Recreate(rid) => {
                run.write(create(Some(json!(sid)), rid.clone()))?;
            }
            SessionStep::Read(read) => read_session(&mut run, &sid, &unknown, read)?,
        }
    }
    read_session(&mut run, &sid, &unknown, &case.last)
}

fn read_session(run: &mut Run, sid: &str, unknown: &str, read: &SessionRead) -> TestCaseResult {
    let id = match &read.target {
        ReadTarget::Own => Some(json!(sid)),
        ReadTarget::Unknown => Some(json!(unknown)),
        ReadTarget::Given(v) => v.clone(),
    };
    // A number or `true` is held under that value in memory and as text in SQLite: the
    // answer module documents it as unsupported.
    let odd_id = matches!(id, Some(Value::Number(_) | Value::Bool(true)));
    let body = request(
        &[
            ("action", Some(json!("get_context"))),
            ("session_id", id),
            ("request_id", read.request_id.clone()),
        ],
        read.max_tokens.as_deref(),
    );
    run.read(body, |u| odd_id && u == Unsupported::OddParameter)
}

#[test]
fn session_memory_context_is_rendered_byte_for_byte() {
    check(
        "session_memory",
        96,
        session_case(),
        run_session,
        &["context", "empty context"],
    );
}

// ---------------------------------------------------------------------------------------
// contextual_memory: one get_context at the end of adds and decisions.

#[derive(Clone, Debug)]
enum ContextStep {
    Add {
        kind: Option<Value>,
        content: Option<Value>,
        metadata: Option<Value>,
    },
    Decide(Option<Value>),
}

#[derive(Clone, Debug)]
struct ContextCase {
    id: Id,
    alt_read: bool,
    steps: Vec<ContextStep>,
    max_tokens: Option<String>,
}

fn code_text() -> BoxedStrategy<String> {
    let line = vec(select(WORDS), 0..6).prop_map(|w| w.concat());
    (vec((line, select(NEWLINES)), 0..7), any::<bool>())
        .prop_map(|(lines, trailing)| {
            let last = lines.len();
            let mut code = String::new();
            for (i, (line, newline)) in lines.into_iter().enumerate() {
                code.push_str(&line);
                if i + 1 < last || trailing {
                    code.push_str(newline);
                }
            }
            code
        })
        .boxed()
}

/// A type and a content that suits it; contents that are not strings now and then, in
/// proportions that keep most summaries buildable.
fn interaction() -> BoxedStrategy<(Option<Value>, Option<Value>)> {
    let kind = |k: &'static str| Just(Some(json!(k)));
    let code = prop_oneof![
        150 => code_text().prop_map(|c| Some(json!(c))),
        1 => json_value().prop_map(Some),
        1 => Just(None),
    ];
    let query = prop_oneof![
        60 => any_text().prop_map(|t| Some(json!(t))),
        2 => list().prop_map(Some),
        1 => leaf().prop_map(Some),
        1 => object_of(leaf(), 0..3).prop_map(Some),
        1 => Just(None),
    ];
    let error = prop_oneof![
        40 => any_text().prop_map(|t| Some(json!(t))),
        1 => json_value().prop_map(Some),
    ];
    let other_kind = prop_oneof![
        Just(None),
        Just(Some(Value::Null)),
        Just(Some(json!(5))),
        Just(Some(json!("note"))),
        Just(Some(json!("Code"))),
    ];
    prop_oneof![
        4 => (kind("code"), code),
        4 => (kind("user_query"), query),
        3 => (kind("system_response"), any_text().prop_map(|t| Some(json!(t)))),
        3 => (kind("error"), error),
        1 => (other_kind, json_value().prop_map(Some)),
    ]
    .boxed()
}

fn context_step() -> BoxedStrategy<ContextStep> {
    let add =
        (interaction(), metadata()).prop_map(|((kind, content), metadata)| ContextStep::Add {
            kind,
            content,
            metadata,
        });
    let decision = prop_oneof![
        3 => any_text().prop_map(|t| Some(json!(t))),
        2 => json_value().prop_map(Some),
        1 => Just(None),
    ];
    prop_oneof![15 => add, 1 => decision.prop_map(ContextStep::Decide)].boxed()
}

fn context_case() -> BoxedStrategy<ContextCase> {
    let fixed_ids = vec![
        fixed(None, Some(Value::Null)),
        fixed(Some(Value::Null), None),
        fixed(Some(json!("null")), Some(json!("null"))),
        fixed(Some(json!("json:null")), Some(json!("json:null"))),
        fixed(Some(json!(true)), Some(json!(1))),
    ];
    // Summaries exist from the 51st interaction, and from the 103rd the fetch window is
    // full; one range, so that a failing history shrinks to any length.
    (
        id(fixed_ids),
        any::<bool>(),
        vec(context_step(), 0..125),
        max_tokens(),
    )
        .prop_map(|(id, alt_read, steps, max_tokens)| ContextCase {
            id,
            alt_read,
            steps,
            max_tokens,
        })
        .boxed()
}

fn run_contextual(live: &mut Live, case: &ContextCase) -> TestCaseResult {
    let n = live.fresh();
    let (sid, read_sid) = case.id.forms(n, case.alt_read);
    live.claim(&case.id, "session_id", &sid);
    let mut run = Run::new(live);
    // A `code` content that is not a string keeps the summary from being rebuilt for 51
    // adds; a few of them can push the last rebuild that worked out of the fetch window.
    let mut odd_code = false;
    // A query that is a list prints as Python's str(): declined where pyjson::repr cannot
    // be sure of Python's text (non-ASCII, a float that may have been a big integer).
    let mut list_query = false;
    for step in &case.steps {
        let body = match step {
            ContextStep::Add {
                kind,
                content,
                metadata,
            } => {
                odd_code |=
                    *kind == Some(json!("code")) && !content.as_ref().is_some_and(Value::is_string);
                list_query |= *kind == Some(json!("user_query"))
                    && content.as_ref().is_some_and(Value::is_array);
                request(
                    &[
                        ("action", Some(json!("add_interaction"))),
                        ("session_id", sid.clone()),
                        ("type", kind.clone()),
                        ("content", content.clone()),
                        ("metadata", metadata.clone()),
                    ],
                    None,
                )
            }
            ContextStep::Decide(decision) => request(
                &[
                    ("action", Some(json!("record_decision"))),
                    ("session_id", sid.clone()),
                    ("decision", decision.clone()),
                ],
                None,
            ),
        };
        run.write(body)?;
    }
    let body = request(
        &[
            ("action", Some(json!("get_context"))),
            ("session_id", read_sid),
        ],
        case.max_tokens.as_deref(),
    );
    // An integral number below i64::MIN reaches serde_json as a float whether it was
    // written as an int or not: Python's int and float cut differently, so the read is
    // declined.
    let huge_negative = case.max_tokens.as_deref().is_some_and(|t| {
        t.parse::<i64>().is_err()
            && t.parse::<f64>()
                .is_ok_and(|f| f.fract() == 0.0 && f <= i64::MIN as f64)
    });
    run.read(body, |u| {
        (odd_code && u == Unsupported::TooLarge)
            || (list_query && u == Unsupported::OddContent)
            || (huge_negative && u == Unsupported::OddParameter)
    })
}

#[test]
fn contextual_memory_context_is_rendered_byte_for_byte() {
    check(
        "contextual_memory",
        32,
        context_case(),
        run_contextual,
        &["summary with code", "decisions only"],
    );
}

// ---------------------------------------------------------------------------------------
// jarvis_memory: get_memories among adds and clears.

#[derive(Clone, Debug)]
enum JarvisStep {
    /// `add_memory` (`None`: no `memory` field, stored as `null`).
    Add(Option<Value>),
    Clear,
    Read,
}

#[derive(Clone, Debug)]
struct JarvisCase {
    id: Id,
    alt_read: bool,
    steps: Vec<JarvisStep>,
}

/// An object with `"type": "reminder"` somewhere among its keys: saved, and answered with
/// the agent's `send_proactive_event()` error.
fn reminder() -> BoxedStrategy<Value> {
    (
        object_of(json_value(), 0..6),
        any::<prop::sample::Index>(),
        any_text(),
    )
        .prop_map(|(others, at, text)| {
            let mut kv: Vec<(String, Value)> =
                others.as_object().unwrap().clone().into_iter().collect();
            kv.retain(|(k, _)| k != "type");
            kv.insert(at.index(kv.len() + 1), ("type".into(), json!("reminder")));
            kv.push(("text".into(), json!(text)));
            Value::Object(kv.into_iter().collect())
        })
        .boxed()
}

fn memory() -> BoxedStrategy<Option<Value>> {
    prop_oneof![
        3 => json_value().prop_map(Some),
        2 => object_of(json_value(), 6..14).prop_map(Some),
        1 => reminder().prop_map(Some),
        1 => (any_text(), object_of(leaf(), 0..4)).prop_map(|(t, mut o)| {
            o["text"] = json!(t);
            Some(o)
        }),
        1 => Just(None),
    ]
    .boxed()
}

fn jarvis_case() -> BoxedStrategy<JarvisCase> {
    let fixed_ids = vec![
        fixed(None, Some(json!("default"))),
        fixed(Some(json!("default")), None),
        fixed(Some(Value::Null), Some(Value::Null)),
        fixed(Some(json!("null")), Some(json!("null"))),
        fixed(Some(json!(true)), Some(json!(1.0))),
    ];
    let step = prop_oneof![
        8 => memory().prop_map(JarvisStep::Add),
        1 => Just(JarvisStep::Clear),
        2 => Just(JarvisStep::Read),
    ];
    (id(fixed_ids), any::<bool>(), vec(step, 0..16))
        .prop_map(|(id, alt_read, steps)| JarvisCase {
            id,
            alt_read,
            steps,
        })
        .boxed()
}

fn run_jarvis(live: &mut Live, case: &JarvisCase) -> TestCaseResult {
    let n = live.fresh();
    let (user, read_user) = case.id.forms(n, case.alt_read);
    live.claim(&case.id, "user_id", &user);
    let mut run = Run::new(live);
    for step in &case.steps {
        let write = |action: &str, memory: Option<Value>| {
            request(
                &[
                    ("action", Some(json!(action))),
                    ("user_id", user.clone()),
                    ("memory", memory),
                ],
                None,
            )
        };
        match step {
            JarvisStep::Add(memory) => {
                run.write(write("add_memory", memory.clone()))?;
            }
            JarvisStep::Clear => {
                run.write(write("clear_memories", None))?;
            }
            JarvisStep::Read => read_jarvis(&mut run, &read_user)?,
        }
    }
    read_jarvis(&mut run, &read_user)
}

fn read_jarvis(run: &mut Run, user: &Option<Value>) -> TestCaseResult {
    let body = request(
        &[
            ("action", Some(json!("get_memories"))),
            ("user_id", user.clone()),
        ],
        None,
    );
    run.read(body, |_| false)
}

#[test]
fn jarvis_memory_memories_are_rendered_byte_for_byte() {
    check(
        "jarvis_memory",
        64,
        jarvis_case(),
        run_jarvis,
        &["memories", "no memories"],
    );
}

/// The differences found, minimised, replayed as raw requests every run, so that they fail
/// deterministically rather than in the runs that happen to generate them. A contextual
/// summary needs 51 interactions, the fewest that build one. Each of them is a read memshift
/// cannot render as the agent would (serde_json cannot tell what Python could), so the
/// right answer is to decline it (live: the agent answers; shadow: skipped), never to give
/// other bytes.
///
/// Not here: integers past 64 bits that an agent echoes (a jarvis memory
/// `{"n": 100000000000000000000}`, a `request_id` of that size). Python keeps them exact;
/// serde_json without `arbitrary_precision` holds a float and writes `1e+20`. That is the
/// lossless-input work of the "nothing lost" issue.
#[test]
fn minimised_differences_are_declined_not_rendered_otherwise() {
    let contextual = |sid: &str, last: &str| -> Vec<String> {
        let response = format!(
            r#"{{"action": "add_interaction", "session_id": "{sid}", "type": "system_response", "content": "x"}}"#
        );
        let mut writes = vec![response; 50];
        writes.push(last.replace("SID", sid));
        writes
    };
    let query = |sid: &str, q: &str| {
        let last = format!(
            r#"{{"action": "add_interaction", "session_id": "SID", "type": "user_query", "content": {q}}}"#
        );
        contextual(sid, &last)
    };
    let cut = |sid: &str, max_tokens: &str| {
        let read = format!(
            r#"{{"action": "get_context", "session_id": "{sid}", "max_tokens": {max_tokens}}}"#
        );
        let last = r#"{"action": "add_interaction", "session_id": "SID", "type": "system_response", "content": "x"}"#;
        (contextual(sid, last), read)
    };
    let get_context = |sid: &str| format!(r#"{{"action": "get_context", "session_id": "{sid}"}}"#);
    let cases: Vec<(&str, Vec<String>, String, Unsupported)> = vec![
        // Python prints `['é']` (str.isprintable); pyjson::repr knows ASCII only.
        (
            "a user_query that is a list holding non-ASCII text",
            query("m1", r#"["é"]"#),
            get_context("m1"),
            Unsupported::OddContent,
        ),
        // Python prints `[1e+20]`; an integral float past 2^63 may have been an integer.
        (
            "a user_query that is a list holding a float past 2^63",
            query("m2", "[1e20]"),
            get_context("m2"),
            Unsupported::OddContent,
        ),
    ];
    // Python's int slices the whole text away (`"..."`); a float cuts nothing; serde_json
    // holds either as a float.
    let cuts = [
        ("m3", "max_tokens below i64::MIN", "-100000000000000000000"),
        (
            "m4",
            "max_tokens just below i64::MIN",
            "-9223372036854775809",
        ),
    ];
    let cases = cases.into_iter().chain(cuts.map(|(sid, what, max_tokens)| {
        let (writes, read) = cut(sid, max_tokens);
        (what, writes, read, Unsupported::OddParameter)
    }));
    let mut failures = Vec::new();
    for (what, writes, read, declined) in cases {
        let mut live = Live::start("contextual_memory");
        let mut run = Run::new(&mut live);
        let result = writes
            .into_iter()
            .try_for_each(|w| run.write(w.into_bytes()).map(drop))
            .and_then(|()| run.read(read.into_bytes(), |u| u == declined));
        if let Err(e) = result {
            // The request and both replies; not the history (up to 51 adds).
            let text = e.to_string();
            let head: Vec<&str> = text
                .lines()
                .take_while(|l| !l.starts_with("history"))
                .collect();
            failures.push(format!("{what}:\n{}", head.join("\n")));
        }
        assert_eq!(
            live.tally.unsupported.values().sum::<usize>(),
            1,
            "{what}: declined"
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
