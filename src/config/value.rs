//! The parsed configuration tree: values that remember where they came from.

use std::collections::HashMap;
use std::time::Duration;

use super::duration::parse_go_duration;
use super::pos::{ConfigError, Pos};

/// One configuration value and the position where it starts.
///
/// Equality compares the data only (never positions), so tests and reload
/// code can compare trees parsed from different files.
#[derive(Clone, Debug)]
pub struct Value {
    pub kind: ValueKind,
    pub pos: Pos,
    /// Source text of an integer written with a size suffix (`2m`, `1GB`):
    /// lets [`Value::as_duration`] read a bare `2m` as two minutes.
    pub(crate) literal: Option<Box<str>>,
}

/// The data of a [`Value`]. Durations are not a separate kind: nats-server
/// keeps them as strings (or integers meaning seconds) and the option code
/// converts them with [`Value::as_duration`].
#[derive(Clone, Debug, PartialEq)]
pub enum ValueKind {
    Map(Map),
    Array(Vec<Value>),
    String(String),
    /// Size suffixes are already applied (`1K` = 1000, `1KB` = 1024).
    Int(i64),
    Float(f64),
    Bool(bool),
    /// ISO 8601 Zulu datetime, kept as written (`2016-05-04T18:53:41Z`).
    Datetime(String),
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind
    }
}

impl Value {
    pub fn new(kind: ValueKind, pos: Pos) -> Self {
        Value {
            kind,
            pos,
            literal: None,
        }
    }

    /// An error located at this value: `file:line:col: message`.
    pub fn err(&self, message: impl Into<String>) -> ConfigError {
        self.pos.err(message)
    }

    /// A short name of the value's type for messages ("string", "map"...).
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            ValueKind::Map(_) => "map",
            ValueKind::Array(_) => "array",
            ValueKind::String(_) => "string",
            ValueKind::Int(_) => "integer",
            ValueKind::Float(_) => "float",
            ValueKind::Bool(_) => "boolean",
            ValueKind::Datetime(_) => "datetime",
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            ValueKind::String(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_int(&self) -> Option<i64> {
        match self.kind {
            ValueKind::Int(i) => Some(i),
            _ => None,
        }
    }
    /// Floats, and integers widened to floats.
    pub fn as_float(&self) -> Option<f64> {
        match self.kind {
            ValueKind::Float(f) => Some(f),
            ValueKind::Int(i) => Some(i as f64),
            _ => None,
        }
    }
    pub fn as_bool(&self) -> Option<bool> {
        match self.kind {
            ValueKind::Bool(b) => Some(b),
            _ => None,
        }
    }
    pub fn as_map(&self) -> Option<&Map> {
        match &self.kind {
            ValueKind::Map(m) => Some(m),
            _ => None,
        }
    }
    pub fn as_array(&self) -> Option<&[Value]> {
        match &self.kind {
            ValueKind::Array(a) => Some(a),
            _ => None,
        }
    }

    /// `expect_*`: the typed value or an error at this value's position.
    pub fn expect_str(&self) -> Result<&str, ConfigError> {
        self.as_str().ok_or_else(|| self.wrong_type("a string"))
    }
    pub fn expect_int(&self) -> Result<i64, ConfigError> {
        self.as_int().ok_or_else(|| self.wrong_type("an integer"))
    }
    pub fn expect_float(&self) -> Result<f64, ConfigError> {
        self.as_float().ok_or_else(|| self.wrong_type("a number"))
    }
    pub fn expect_bool(&self) -> Result<bool, ConfigError> {
        self.as_bool().ok_or_else(|| self.wrong_type("a boolean"))
    }
    pub fn expect_map(&self) -> Result<&Map, ConfigError> {
        self.as_map().ok_or_else(|| self.wrong_type("a map"))
    }
    pub fn expect_array(&self) -> Result<&[Value], ConfigError> {
        self.as_array().ok_or_else(|| self.wrong_type("an array"))
    }

    fn wrong_type(&self, what: &str) -> ConfigError {
        self.err(format!("expected {what}, got {}", self.type_name()))
    }

    /// Read a duration the way nats-server does: a string in Go syntax
    /// ("2m", "1h30m", "500ms"), or an integer meaning seconds (nats accepts
    /// that for backward compatibility and warns).
    ///
    /// A bare `2m` lexes as the integer 2,000,000 (`m` is the mega suffix);
    /// nats-server would then wait 2,000,000 seconds. We read the literal as
    /// the duration its author meant instead — a deliberate difference.
    pub fn as_duration(&self) -> Result<Duration, ConfigError> {
        match &self.kind {
            ValueKind::String(s) => parse_go_duration(s).map_err(|e| self.err(e)),
            ValueKind::Int(i) => {
                if let Some(lit) = &self.literal {
                    if let Ok(d) = parse_go_duration(lit) {
                        return Ok(d);
                    }
                }
                u64::try_from(*i)
                    .map(Duration::from_secs)
                    .map_err(|_| self.err(format!("negative duration {i} is not allowed")))
            }
            _ => Err(self.wrong_type("a duration")),
        }
    }

    /// True when the integer was written with a size/unit suffix.
    pub fn has_suffix(&self) -> bool {
        self.literal.is_some()
    }

    /// Look up a key in a map value (exact match); `None` for non-maps.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_map().and_then(|m| m.get(key))
    }

    /// Look up a key in a map value ignoring ASCII case, as nats-server
    /// lower-cases option names before matching them.
    pub fn get_ci(&self, key: &str) -> Option<&Value> {
        self.as_map().and_then(|m| m.get_ci(key))
    }

    /// How many values this one contains, itself included.
    pub(crate) fn node_count(&self) -> usize {
        match &self.kind {
            ValueKind::Map(m) => m
                .iter()
                .fold(1usize, |n, e| n.saturating_add(e.value.node_count())),
            ValueKind::Array(a) => a
                .iter()
                .fold(1usize, |n, v| n.saturating_add(v.node_count())),
            _ => 1,
        }
    }

    /// Give this value and everything inside it one position (used for
    /// values that came from an environment variable).
    pub(crate) fn set_pos_recursive(&mut self, pos: &Pos) {
        self.pos = pos.clone();
        match &mut self.kind {
            ValueKind::Map(m) => {
                for e in &mut m.entries {
                    e.key_pos = pos.clone();
                    e.value.set_pos_recursive(pos);
                }
            }
            ValueKind::Array(a) => {
                for v in a {
                    v.set_pos_recursive(pos);
                }
            }
            _ => {}
        }
    }
}

/// One `key: value` of a map.
#[derive(Clone, Debug)]
pub struct Entry {
    pub key: String,
    /// Where the key starts: nats-server reports option errors at the key.
    pub key_pos: Pos,
    pub value: Value,
    /// The key was referenced as `$key` somewhere; nats-server does not call
    /// such top-level keys unknown (they are variable definitions).
    pub used_as_variable: bool,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key && self.value == other.value
    }
}

/// A map that keeps the order keys were written in. A repeated key
/// replaces the earlier value (nats-server: last one wins) in place.
#[derive(Clone, Debug, Default)]
pub struct Map {
    entries: Vec<Entry>,
    index: HashMap<String, usize>,
}

impl PartialEq for Map {
    fn eq(&self, other: &Self) -> bool {
        self.entries == other.entries
    }
}

impl Map {
    pub fn new() -> Self {
        Self::default()
    }

    /// Insert or replace (keeping the first occurrence's place in order).
    pub fn insert(&mut self, entry: Entry) {
        if let Some(&i) = self.index.get(&entry.key) {
            if let Some(slot) = self.entries.get_mut(i) {
                *slot = entry;
                return;
            }
        }
        self.index.insert(entry.key.clone(), self.entries.len());
        self.entries.push(entry);
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.entry(key).map(|e| &e.value)
    }

    pub fn entry(&self, key: &str) -> Option<&Entry> {
        self.index.get(key).and_then(|&i| self.entries.get(i))
    }

    pub(crate) fn entry_mut(&mut self, key: &str) -> Option<&mut Entry> {
        match self.index.get(key) {
            Some(&i) => self.entries.get_mut(i),
            None => None,
        }
    }

    /// Case-insensitive lookup; if several keys differ only in case the
    /// last written wins, matching the effect of nats-server's processing.
    pub fn get_ci(&self, key: &str) -> Option<&Value> {
        self.entry_ci(key).map(|e| &e.value)
    }

    pub fn entry_ci(&self, key: &str) -> Option<&Entry> {
        self.entries
            .iter()
            .rev()
            .find(|e| e.key.eq_ignore_ascii_case(key))
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.index.contains_key(key)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries in the order they were written.
    pub fn iter(&self) -> std::slice::Iter<'_, Entry> {
        self.entries.iter()
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.key.as_str())
    }

    pub fn into_entries(self) -> Vec<Entry> {
        self.entries
    }
}

impl<'a> IntoIterator for &'a Map {
    type Item = &'a Entry;
    type IntoIter = std::slice::Iter<'a, Entry>;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter()
    }
}

/// Free-function form of [`Value::err`] for the option-mapping code:
/// `return Err(err_at(v, "expected a number"))`.
pub fn err_at(value: &Value, message: impl Into<String>) -> ConfigError {
    value.err(message)
}
