//! Reading a merged figment tree field by field, collecting every error.
//!
//! serde stops at the first error it meets; an operator fixing a config file wants them all
//! at once. So the merged tree is walked table by table: each known key is deserialized on
//! its own, each unknown key is reported, and each error says which file or environment
//! variable the value came from.

use super::ENV_PREFIX;
use figment::value::{Dict, Value};
use figment::{Figment, Source};
use serde::de::DeserializeOwned;
use std::fmt;

/// One configuration mistake, with where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// Where the offending value came from: a file path or an environment variable.
    pub origin: String,
    /// The key path inside the configuration (`agents[1].listen`).
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.origin, self.path, self.message)
    }
}

/// Collects errors while a configuration is read.
pub struct Errors<'a> {
    figment: &'a Figment,
    /// Shown for errors about missing values, which have no origin of their own.
    default_origin: String,
    pub list: Vec<ConfigError>,
}

impl<'a> Errors<'a> {
    pub fn new(figment: &'a Figment, default_origin: String) -> Self {
        Errors {
            figment,
            default_origin,
            list: Vec::new(),
        }
    }

    /// Records an error about `value` (or, with `None`, about a missing value).
    pub fn push(&mut self, path: &str, value: Option<&Value>, message: impl Into<String>) {
        let origin = value
            .and_then(|v| self.figment.get_metadata(v.tag()))
            .map(|md| match &md.source {
                Some(Source::File(file)) => file.display().to_string(),
                _ if md.name.contains("environment") => {
                    let var = path_keys(path).join("__").to_ascii_uppercase();
                    format!("environment variable {ENV_PREFIX}{var}")
                }
                _ => self.default_origin.clone(),
            })
            .unwrap_or_else(|| self.default_origin.clone());
        self.list.push(ConfigError {
            origin,
            path: path.to_owned(),
            message: message.into(),
        });
    }
}

/// `agents[1].listen` → `["agents", "1", "listen"]`.
fn path_keys(path: &str) -> Vec<String> {
    path.split(['.', '['])
        .map(|k| k.trim_end_matches(']').to_owned())
        .collect()
}

/// One table of the tree being read. Call [`Table::finish`] when done, so that the keys it
/// never asked for are reported as unknown.
pub struct Table<'t> {
    path: String,
    dict: Option<&'t Dict>,
    known: Vec<&'static str>,
}

impl<'t> Table<'t> {
    /// The table at `path`, or an empty one (all defaults) when `value` is absent.
    pub fn new(path: impl Into<String>, value: Option<&'t Value>, errors: &mut Errors) -> Self {
        let path = path.into();
        let dict = match value {
            None => None,
            Some(Value::Dict(_, dict)) => Some(dict),
            Some(other) => {
                errors.push(&path, Some(other), "expected a table");
                None
            }
        };
        Table {
            path,
            dict,
            known: Vec::new(),
        }
    }

    fn key_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// The raw value of a known key.
    pub fn value(&mut self, key: &'static str) -> Option<&'t Value> {
        self.known.push(key);
        self.dict.and_then(|d| d.get(key))
    }

    /// A key deserialized as `T`; `None` (with an error recorded) when it has the wrong type.
    pub fn get<T: DeserializeOwned>(
        &mut self,
        key: &'static str,
        errors: &mut Errors,
    ) -> Option<T> {
        let value = self.value(key)?;
        match value.deserialize::<T>() {
            Ok(v) => Some(v),
            Err(e) => {
                errors.push(&self.key_path(key), Some(value), e.kind.to_string());
                None
            }
        }
    }

    /// A string key turned into a typed value by `parse`, or `default` when it is absent.
    /// A value that does not parse is recorded and replaced by `default`, so that reading
    /// can go on and find the next mistake.
    pub fn parse<T>(
        &mut self,
        key: &'static str,
        default: T,
        errors: &mut Errors,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> T {
        let Some(value) = self.value(key) else {
            return default;
        };
        let parsed = match value {
            Value::String(_, s) => parse(s),
            Value::Num(..) | Value::Bool(..) => parse(&value_text(value)),
            _ => Err("expected a string".to_owned()),
        };
        parsed.unwrap_or_else(|message| {
            errors.push(&self.key_path(key), Some(value), message);
            default
        })
    }

    /// A key that must be present, parsed like [`Table::parse`].
    pub fn require<T>(
        &mut self,
        key: &'static str,
        errors: &mut Errors,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        if self.dict.and_then(|d| d.get(key)).is_none() {
            self.known.push(key);
            errors.push(&self.key_path(key), None, "missing (required)");
            return None;
        }
        self.parse(key, None, errors, |s| parse(s).map(Some))
    }

    /// Reports every key of the table that was never asked for.
    pub fn finish(self, errors: &mut Errors) {
        let Some(dict) = self.dict else { return };
        for (key, value) in dict {
            if !self.known.contains(&key.as_str()) {
                let expected = self.known.join(", ");
                errors.push(
                    &self.key_path(key),
                    Some(value),
                    format!("unknown key (expected one of: {expected})"),
                );
            }
        }
    }
}

fn value_text(value: &Value) -> String {
    match value {
        Value::Num(_, n) => n
            .to_u128()
            .map(|u| u.to_string())
            .or_else(|| n.to_i128().map(|i| i.to_string()))
            .or_else(|| n.to_f64().map(|f| f.to_string()))
            .unwrap_or_default(),
        Value::Bool(_, b) => b.to_string(),
        Value::String(_, s) => s.clone(),
        _ => String::new(),
    }
}
