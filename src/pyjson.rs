//! JSON text exactly as Python's `json.dumps` writes it with its defaults.
//!
//! The legacy agents answer with `json.dumps(reply)`: `ensure_ascii=True` (every non-ASCII
//! character as `\uXXXX`, characters outside the BMP as a surrogate pair), separators
//! `", "` and `": "`, keys in insertion order, floats in Python's `repr`. Whenever memshift
//! itself has to answer a legacy client (the guard today, orchestrator-served reads later),
//! it must produce the very bytes the agent would have, so clients that compare or log the
//! raw text see no difference. `serde_json` is built with `preserve_order`, so a
//! [`serde_json::Value`] keeps the key order it was built or parsed with.

use serde_json::Value;
use std::fmt::Write;

/// Encodes `value` as `json.dumps(value)` would.
pub fn dumps(value: &Value) -> String {
    let mut out = String::with_capacity(64);
    write_value(&mut out, value, Dialect::Json).expect("json.dumps writes every JSON value");
    out
}

/// Python's `repr()` (and `str()`, for a list or a dict) of a JSON value as `json.loads`
/// gives it: `['a', 1, None, True, {'k': 1.5}]`. `None` when a string holds a character
/// outside ASCII: whether Python prints it or escapes it depends on the Unicode database
/// (`str.isprintable`), which memshift does not carry.
pub fn repr(value: &Value) -> Option<String> {
    let mut out = String::new();
    write_value(&mut out, value, Dialect::Repr)?;
    Some(out)
}

/// Which Python text a value is written as: `json.dumps`, or `repr`.
#[derive(Clone, Copy, PartialEq)]
enum Dialect {
    Json,
    Repr,
}

/// Writes `value` in `dialect`; `None` where `repr` cannot be sure of Python's text (never
/// for `json.dumps`).
fn write_value(out: &mut String, value: &Value, dialect: Dialect) -> Option<()> {
    let repr = dialect == Dialect::Repr;
    match value {
        Value::Null => out.push_str(if repr { "None" } else { "null" }),
        Value::Bool(true) => out.push_str(if repr { "True" } else { "true" }),
        Value::Bool(false) => out.push_str(if repr { "False" } else { "false" }),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => write!(out, "{i}").expect("writing to a String cannot fail"),
            (None, Some(u), _) => write!(out, "{u}").expect("writing to a String cannot fail"),
            // An integral float this large may have been an integer literal beyond u64, which
            // Python keeps exact and serde_json does not: unknown to `repr`. (serde_json holds
            // finite numbers only, so json's `Infinity` never meets Python's `inf`.)
            (None, None, Some(f)) if repr && f.fract() == 0.0 && f.abs() >= 9.2e18 => {
                return None;
            }
            (None, None, f) => out.push_str(&float_repr(f.unwrap_or(f64::NAN))),
        },
        Value::String(s) => write_string(out, s, dialect)?,
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_value(out, item, dialect)?;
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (key, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_string(out, key, dialect)?;
                out.push_str(": ");
                write_value(out, item, dialect)?;
            }
            out.push('}');
        }
    }
    Some(())
}

/// A string (a value or a key) in `dialect`.
fn write_string(out: &mut String, s: &str, dialect: Dialect) -> Option<()> {
    match dialect {
        Dialect::Json => {
            write_str(out, s);
            Some(())
        }
        Dialect::Repr => write_str_repr(out, s),
    }
}

/// CPython's `unicode_repr` for ASCII text: single quotes unless the text has a single
/// quote and no double one; `\\`, `\t`, `\n`, `\r` and the quote escaped; other control
/// characters as `\xNN`.
fn write_str_repr(out: &mut String, s: &str) -> Option<()> {
    if !s.is_ascii() {
        return None;
    }
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            c => write!(out, "\\x{:02x}", c as u32).expect("writing to a String cannot fail"),
        }
    }
    out.push(quote);
    Some(())
}

/// A string literal with Python's `ensure_ascii` escaping.
fn write_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    write!(out, "\\u{unit:04x}").expect("writing to a String cannot fail");
                }
            }
        }
    }
    out.push('"');
}

/// Python's `repr(float)`: the shortest digits that round-trip, in positional notation for
/// decimal exponents from -4 to 15 and in scientific notation (`1e+16`, `1.5e-05`) outside.
pub fn float_repr(f: f64) -> String {
    if f.is_nan() {
        return "NaN".to_owned();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.to_owned();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0" } else { "0.0" }.to_owned();
    }
    let sign = if f < 0.0 { "-" } else { "" };
    let (digits, exp) = shortest_digits(f.abs());
    if (-4..16).contains(&exp) {
        positional(sign, &digits, exp)
    } else {
        let (head, tail) = digits.split_at(1);
        let frac = if tail.is_empty() {
            String::new()
        } else {
            format!(".{tail}")
        };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{head}{frac}e{esign}{:02}", exp.abs())
    }
}

/// The shortest decimal digits that round-trip `f` (positive, finite, non-zero), without
/// leading or trailing zeros, and the decimal exponent of the first digit. From `ryu`, which
/// breaks ties to even as CPython's repr does (Rust's own `{:e}` rounds some ties up:
/// 17781180435634.5625 is `…634.562` in Python and `…634.563` with `{:e}`).
fn shortest_digits(f: f64) -> (String, i32) {
    let mut buf = ryu::Buffer::new();
    let text = buf.format_finite(f);
    let (mantissa, exp) = match text.split_once('e') {
        Some((m, e)) => (m, e.parse::<i32>().expect("ryu exponent is an integer")),
        None => (text, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all = format!("{int}{frac}");
    let leading = all.bytes().take_while(|b| *b == b'0').count();
    let digits = all[leading..].trim_end_matches('0').to_owned();
    (digits, exp + int.len() as i32 - 1 - leading as i32)
}

fn positional(sign: &str, digits: &str, exp: i32) -> String {
    let n = digits.len() as i32;
    if exp < 0 {
        let zeros = "0".repeat((-exp - 1) as usize);
        format!("{sign}0.{zeros}{digits}")
    } else if exp + 1 >= n {
        let zeros = "0".repeat((exp + 1 - n) as usize);
        format!("{sign}{digits}{zeros}.0")
    } else {
        let (int, frac) = digits.split_at((exp + 1) as usize);
        format!("{sign}{int}.{frac}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn separators_and_key_order_follow_python() {
        let v: Value = serde_json::from_str(r#"{"status":"ok","b":[1,2,{"z":null,"a":true}]}"#)
            .expect("valid json");
        assert_eq!(
            dumps(&v),
            r#"{"status": "ok", "b": [1, 2, {"z": null, "a": true}]}"#
        );
        assert_eq!(dumps(&json!({})), "{}");
        assert_eq!(dumps(&json!([])), "[]");
    }

    #[test]
    fn non_ascii_is_escaped_like_ensure_ascii() {
        // Expected strings are what CPython 3.11 prints for json.dumps(...).
        let cases = [
            ("é", r#""\u00e9""#),
            ("日本", r#""\u65e5\u672c""#),
            ("🎉", r#""\ud83c\udf89""#),
            ("a\"b\\c", r#""a\"b\\c""#),
            ("\n\r\t\u{8}\u{c}", r#""\n\r\t\b\f""#),
            ("\u{1}\u{1f}\u{7f}", r#""\u0001\u001f\u007f""#),
            ("/", r#""/""#),
        ];
        for (input, expected) in cases {
            assert_eq!(dumps(&json!(input)), expected, "input {input:?}");
        }
    }

    #[test]
    fn repr_follows_python() {
        // Expected strings are what CPython 3.11 prints for str(json.loads(...)).
        let cases = [
            (
                r#"["a", 1, null, true, false, 1.5]"#,
                "['a', 1, None, True, False, 1.5]",
            ),
            (r#"[{"k": [], "j": {}}]"#, "[{'k': [], 'j': {}}]"),
            (
                r#"["it's", "say \"hi\"", "both ' \"", "a\\b\n\t\u0001\u007f"]"#,
                r#"["it's", 'say "hi"', 'both \' "', 'a\\b\n\t\x01\x7f']"#,
            ),
            (
                r#"[1e16, 12345678901234567890]"#,
                "[1e+16, 12345678901234567890]",
            ),
        ];
        for (input, expected) in cases {
            let v: Value = serde_json::from_str(input).expect("valid json");
            assert_eq!(repr(&v).as_deref(), Some(expected), "input {input}");
        }
        assert_eq!(repr(&json!(["é"])), None);
        // An integer beyond u64 reaches serde_json as a float: Python would print it exactly.
        let big: Value = serde_json::from_str("[100000000000000000000]").expect("valid json");
        assert_eq!(repr(&big), None);
    }

    #[test]
    fn floats_use_python_repr() {
        // Expected strings are CPython's repr() of the same float.
        let cases = [
            (1763934484.818728, "1763934484.818728"),
            (0.5, "0.5"),
            (1.0, "1.0"),
            (123.0, "123.0"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (1234567890123456.0, "1234567890123456.0"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (-2.5, "-2.5"),
            (1e300, "1e+300"),
            (0.1 + 0.2, "0.30000000000000004"),
            (-0.0, "-0.0"),
            // Exactly …634.5625, a tie between two 17-digit forms: CPython rounds half to
            // even; Rust's `{:e}` gives …634.563.
            (17781180435634.562, "17781180435634.562"),
            (1000.0, "1000.0"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
        ];
        for (input, expected) in cases {
            assert_eq!(float_repr(input), expected, "float {input:e}");
        }
        assert_eq!(dumps(&json!({"t": 1.0, "n": -7})), r#"{"t": 1.0, "n": -7}"#);
    }
}
