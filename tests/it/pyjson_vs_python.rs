//! `pyjson::dumps` against CPython itself: random JSON documents encoded by both must be the
//! same bytes. (The unit tests pin known cases; this looks for the unknown ones.)

use crate::common;

use common::repo;
use memshift::pyjson;
use serde_json::{Map, Value};
use std::io::Write;
use std::process::{Command, Stdio};

/// A small deterministic generator (xorshift64*), so a failure reproduces exactly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const ALPHABET: &[char] = &[
    'a',
    'Z',
    '0',
    ' ',
    '"',
    '\\',
    '/',
    '\n',
    '\t',
    '\u{1}',
    '\u{7f}',
    'é',
    'ß',
    '€',
    '日',
    '\u{2028}',
    '\u{ffff}',
    '🎉',
    '𝄞',
    '\u{10ffff}',
];

fn string(rng: &mut Rng) -> String {
    (0..rng.below(12))
        .map(|_| ALPHABET[rng.below(ALPHABET.len() as u64) as usize])
        .collect()
}

fn float(rng: &mut Rng) -> f64 {
    loop {
        let f = match rng.below(4) {
            0 => f64::from_bits(rng.next()),
            1 => (rng.next() as f64) / 1e6,
            2 => 1_763_934_484.0 + (rng.below(1_000_000) as f64) / 1e6,
            _ => (rng.below(2000) as f64 - 1000.0) * 10f64.powi(rng.below(40) as i32 - 20),
        };
        if f.is_finite() {
            return f;
        }
    }
}

fn value(rng: &mut Rng, depth: u32) -> Value {
    match rng.below(if depth > 3 { 6 } else { 8 }) {
        0 => Value::Null,
        1 => Value::Bool(rng.below(2) == 0),
        2 => Value::from(rng.next() as i64 >> rng.below(64)),
        3 => Value::from(float(rng)),
        4 | 5 => Value::String(string(rng)),
        6 => Value::Array((0..rng.below(5)).map(|_| value(rng, depth + 1)).collect()),
        _ => {
            let mut map = Map::new();
            for _ in 0..rng.below(5) {
                map.insert(string(rng), value(rng, depth + 1));
            }
            Value::Object(map)
        }
    }
}

#[test]
fn dumps_matches_cpython_on_random_documents() {
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let docs: Vec<Value> = (0..20_000).map(|_| value(&mut rng, 0)).collect();
    // Each document travels to Python as serde_json text (exact floats, via ryu) and comes
    // back as json.dumps of what Python parsed.
    let script =
        "import json, sys\nfor line in sys.stdin:\n    print(json.dumps(json.loads(line)))\n";
    let python = std::env::var_os("MEMSHIFT_PYTHON")
        .unwrap_or_else(|| repo().join(".venv/bin/python").into());
    let mut child = Command::new(python)
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python");
    let input: String = docs
        .iter()
        .map(|d| format!("{}\n", serde_json::to_string(d).unwrap()))
        .collect();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let output = child.wait_with_output().expect("python output");
    writer.join().unwrap().expect("write to python");
    assert!(output.status.success());
    let python_lines: Vec<&str> = std::str::from_utf8(&output.stdout)
        .unwrap()
        .lines()
        .collect();
    assert_eq!(python_lines.len(), docs.len());
    for (i, (doc, expected)) in docs.iter().zip(python_lines).enumerate() {
        assert_eq!(pyjson::dumps(doc), expected, "document #{i}: {doc}");
    }
}
