//! Property tests: random trees printed in randomly chosen nats syntax
//! forms parse back to the same tree, with values at the positions they
//! were printed at; arbitrary input never panics.

use std::path::Path;

use proptest::prelude::*;

use super::super::*;

/// Tiny deterministic RNG so every printing choice comes from one seed
/// (which proptest can shrink along with the tree).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*; a zero state would stay zero, so nudge it.
        if self.0 == 0 {
            self.0 = 0x9e37_79b9_7f4a_7c15;
        }
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }
    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

/// The tree model: `ValueKind` without positions.
#[derive(Clone, Debug)]
enum M {
    Map(Vec<(String, M)>),
    Array(Vec<M>),
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

fn to_value(m: &M) -> Value {
    let pos = Pos::new(std::sync::Arc::from(Path::new("model")), 1, 1);
    let kind = match m {
        M::Map(es) => {
            let mut map = Map::new();
            for (k, v) in es {
                map.insert(Entry {
                    key: k.clone(),
                    key_pos: pos.clone(),
                    value: to_value(v),
                    used_as_variable: false,
                });
            }
            ValueKind::Map(map)
        }
        M::Array(xs) => ValueKind::Array(xs.iter().map(to_value).collect()),
        M::Str(s) => ValueKind::String(s.clone()),
        M::Int(i) => ValueKind::Int(*i),
        M::Float(f) => ValueKind::Float(*f),
        M::Bool(b) => ValueKind::Bool(*b),
    };
    Value::new(kind, pos)
}

fn key_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[A-Za-z_][A-Za-z0-9_.$-]{0,8}",
        1 => "[^\"\\x00]{0,8}",
    ]
}

fn string_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[A-Za-z_][A-Za-z0-9_.:>*/@+-]{0,12}",
        2 => any::<String>(),
        1 => (0u8..=255, 0u8..=255, 0u8..=255, 0u8..=255, 1u16..)
            .prop_map(|(a, b, c, d, p)| format!("{a}.{b}.{c}.{d}:{p}")),
        1 => (0u32..100_000, prop::sample::select(vec!["s", "ms", "h", "us", "ns", "h30m"]))
            .prop_map(|(n, u)| format!("{n}{u}")),
        1 => "([a-z ()]{0,6}\n){1,3}",
    ]
}

fn int_strategy() -> impl Strategy<Value = i64> {
    prop_oneof![
        any::<i64>(),
        -100_000i64..100_000,
        (-1000i64..1000, 1u32..4, any::<bool>()).prop_map(|(m, k, bin)| m * if bin {
            1024i64
        } else {
            1000
        }
        .pow(k)),
    ]
}

fn leaf() -> impl Strategy<Value = M> {
    prop_oneof![
        int_strategy().prop_map(M::Int),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(M::Float),
        any::<bool>().prop_map(M::Bool),
        string_strategy().prop_map(M::Str),
    ]
}

fn dedup(entries: Vec<(String, M)>) -> Vec<(String, M)> {
    let mut out: Vec<(String, M)> = Vec::new();
    for (k, v) in entries {
        if !out.iter().any(|(ok, _)| *ok == k) {
            out.push((k, v));
        }
    }
    out
}

fn tree() -> impl Strategy<Value = M> {
    leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(M::Array),
            prop::collection::vec((key_strategy(), inner), 0..6).prop_map(|es| M::Map(dedup(es))),
        ]
    })
}

fn top() -> impl Strategy<Value = Vec<(String, M)>> {
    prop::collection::vec((key_strategy(), tree()), 0..8).prop_map(dedup)
}

fn is_bare_key(k: &str) -> bool {
    let mut cs = k.chars();
    matches!(cs.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && cs.all(|c| c.is_ascii_alphanumeric() || "_.$-".contains(c))
        && !k.eq_ignore_ascii_case("include")
}

fn is_bare_value(s: &str) -> bool {
    let mut cs = s.chars();
    matches!(cs.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && cs.all(|c| c.is_ascii_alphanumeric() || "_.:>*/@+-".contains(c))
        && !["true", "false", "yes", "no", "on", "off"]
            .iter()
            .any(|w| s.eq_ignore_ascii_case(w))
}

/// Digits-first strings nats reads as strings when written bare.
fn is_bare_digit_string(s: &str) -> bool {
    let ip = s
        .split(':')
        .next()
        .is_some_and(|h| h.split('.').count() == 4 && h.split('.').all(|p| !p.is_empty()))
        && s.chars()
            .all(|c| c.is_ascii_digit() || c == '.' || c == ':');
    let dur = ["s", "ms", "h", "us", "ns", "h30m"].iter().any(|u| {
        s.strip_suffix(u)
            .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
    });
    ip || dur
}

/// Can `s` be written as a `( ... )` block? Its text must end with a new
/// line and contain no `)` alone at the start of a line before that.
fn block_ok(s: &str) -> bool {
    if !s.ends_with('\n') {
        return false;
    }
    let b = s.as_bytes();
    !(0..b.len()).any(|i| {
        b[i] == b')' && i > 0 && b[i - 1] == b'\n' && matches!(b.get(i + 1), Some(b'\n' | b'\r'))
    })
}

struct Printer {
    out: String,
    rng: Rng,
    /// (line, col) where each top-level value was printed.
    top_positions: Vec<(String, u32, u32)>,
    /// A `( ... )` block was just printed: its `)` must end a line.
    after_block: bool,
}

impl Printer {
    fn line_col(&self) -> (u32, u32) {
        let line = 1 + self.out.matches('\n').count() as u32;
        let last = self.out.rfind('\n').map_or(0, |i| i + 1);
        (line, 1 + self.out[last..].chars().count() as u32)
    }

    /// Print what ends a value: one of `choices`, or a new line after a
    /// block string.
    fn term(&mut self, choices: &[&str]) {
        if std::mem::take(&mut self.after_block) {
            self.out.push('\n');
        } else {
            let t = self.rng.pick(choices);
            self.out.push_str(t);
        }
    }

    fn key(&mut self, k: &str) {
        if is_bare_key(k) && !self.rng.chance(4) {
            self.out.push_str(k);
        } else if !k.contains('"') && (k.contains('\'') || self.rng.chance(2)) {
            self.out.push('"');
            self.out.push_str(k);
            self.out.push('"');
        } else {
            self.out.push('\'');
            self.out.push_str(k);
            self.out.push('\'');
        }
    }

    /// Separator between key and value. `in_map` allows a new line after it.
    fn sep(&mut self, in_map: bool) {
        let s = self
            .rng
            .pick(&[": ", " = ", " ", ":", "=", " : ", "\t", "\n  "]);
        self.out.push_str(s);
        if in_map && self.rng.chance(6) {
            self.out.push_str("\n   ");
        }
    }

    fn string(&mut self, s: &str) {
        let mut forms = vec![0];
        if !s.contains('\'') {
            forms.push(1);
        }
        if is_bare_value(s) || is_bare_digit_string(s) {
            forms.push(2);
            forms.push(2);
        }
        if block_ok(s) {
            forms.push(3);
        }
        match forms[self.rng.below(forms.len())] {
            1 => {
                self.out.push('\'');
                self.out.push_str(s);
                self.out.push('\'');
            }
            2 => self.out.push_str(s),
            3 => {
                self.out.push('(');
                self.out.push_str(s);
                self.out.push(')');
                self.after_block = true;
            }
            _ => {
                self.out.push('"');
                for c in s.chars() {
                    match c {
                        '"' => self.out.push_str("\\\""),
                        '\\' => self.out.push_str("\\\\"),
                        '\n' if self.rng.chance(2) => self.out.push_str("\\n"),
                        '\t' if self.rng.chance(2) => self.out.push_str("\\t"),
                        '\r' => self.out.push_str("\\r"),
                        c if (c as u32) < 0x80 && (c.is_ascii_control() || self.rng.chance(20)) => {
                            self.out.push_str(&format!("\\x{:02x}", c as u32));
                        }
                        c => self.out.push(c),
                    }
                }
                self.out.push('"');
            }
        }
    }

    fn int(&mut self, i: i64) {
        let mut forms = vec![i.to_string()];
        for (k, letter) in "kmgtpe".chars().enumerate() {
            let k = k as u32 + 1;
            let up = if self.rng.chance(2) {
                letter.to_ascii_uppercase()
            } else {
                letter
            };
            if let Some(d) = 1000i64.checked_pow(k) {
                if i % d == 0 && i != 0 {
                    forms.push(format!("{}{up}", i / d));
                }
            }
            if let Some(d) = 1024i64.checked_pow(k) {
                if i % d == 0 && i != 0 {
                    let tail = self.rng.pick(&["b", "B", "i", "ib", "iB"]);
                    forms.push(format!("{}{up}{tail}", i / d));
                }
            }
        }
        let f = forms.swap_remove(self.rng.below(forms.len()));
        self.out.push_str(&f);
    }

    fn value(&mut self, m: &M) {
        match m {
            M::Int(i) => self.int(*i),
            M::Float(f) => {
                // Display never uses exponents; force a '.' so it is a float.
                let mut s = format!("{f}");
                if !s.contains('.') {
                    s.push_str(".0");
                }
                self.out.push_str(&s);
            }
            M::Bool(b) => {
                let w = if *b {
                    self.rng.pick(&["true", "TRUE", "yes", "Yes", "on", "ON"])
                } else {
                    self.rng.pick(&["false", "False", "no", "NO", "off", "Off"])
                };
                self.out.push_str(w);
            }
            M::Str(s) => self.string(s),
            M::Array(xs) => {
                self.out.push('[');
                for (i, x) in xs.iter().enumerate() {
                    self.out
                        .push_str(self.rng.pick(&["", " ", "\n  ", "\n# c\n "]));
                    self.value(x);
                    let last = i + 1 == xs.len();
                    if last {
                        self.term(&["", ",", "\n", " // c\n"]);
                    } else {
                        self.term(&[",", ", ", "\n", " ,\n", " # c\n"]);
                    }
                }
                self.out.push(']');
            }
            M::Map(es) => {
                self.out.push('{');
                for (i, (k, v)) in es.iter().enumerate() {
                    self.out
                        .push_str(self.rng.pick(&["", " ", "\n  ", "\n // c\n  "]));
                    self.key(k);
                    self.sep(true);
                    self.value(v);
                    let last = i + 1 == es.len();
                    if last {
                        self.term(&["", " ", ";", ",", "\n", " # c\n"]);
                    } else {
                        self.term(&[",", ";", "\n", ", ", "; ", " # c\n"]);
                    }
                }
                self.out.push('}');
            }
        }
    }

    /// Print a top-level map; some values go through `$VARIABLES`.
    /// Returns the expected tree (variables included, as nats keeps them).
    fn document(&mut self, entries: &[(String, M)]) -> Vec<(String, M)> {
        let mut expected = Vec::new();
        let braces = self.rng.chance(4);
        if braces {
            self.out.push_str("{\n");
        }
        for (n, (k, v)) in entries.iter().enumerate() {
            let var = format!("VAR_{n}_");
            let use_var = self.rng.chance(4) && !entries.iter().any(|(ek, _)| *ek == var);
            if use_var {
                self.out.push_str(&var);
                self.out.push_str(" = ");
                self.value(v);
                self.term(&["\n"]);
                expected.push((var.clone(), v.clone()));
            }
            self.key(k);
            // At the top level a new line may not follow ':' or '='.
            let s = self.rng.pick(&[": ", " = ", " ", ":", "=", "\n"]);
            self.out.push_str(s);
            let (line, col) = self.line_col();
            self.top_positions.push((k.clone(), line, col));
            if use_var {
                self.out.push('$');
                self.out.push_str(&var);
            } else {
                self.value(v);
            }
            self.term(&["\n", ";\n", "\n\n", " # c\n", ",\n", "; "]);
            expected.push((k.clone(), v.clone()));
        }
        if braces {
            self.out.push('}');
        }
        expected
    }
}

fn no_env(_: &str) -> Option<String> {
    None
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn printed_trees_parse_back(entries in top(), seed in any::<u64>()) {
        let mut p = Printer { out: String::new(), rng: Rng(seed), top_positions: Vec::new(), after_block: false };
        let expected = p.document(&entries);
        let parsed = parse_str_with_env(&p.out, Path::new("gen.conf"), &no_env);
        let parsed = match parsed {
            Ok(v) => v,
            Err(e) => return Err(TestCaseError::fail(format!("{e}\n--- text ---\n{}", p.out))),
        };
        let want = to_value(&M::Map(expected));
        prop_assert_eq!(&parsed, &want, "text:\n{}", p.out);
        // Values sit exactly where they were printed.
        for (k, line, col) in &p.top_positions {
            let v = parsed.get(k).expect("key present");
            prop_assert_eq!((v.pos.line, v.pos.col), (*line, *col), "key {:?} in\n{}", k, p.out);
        }
        // Variables that were used are not unknown fields.
        prop_assert!(unknown_top_level_keys(&parsed).iter().all(|(_, k)| !k.starts_with("VAR_")));
    }

    #[test]
    fn arbitrary_text_never_panics(src in any::<String>()) {
        let _ = parse_str_with_env(&src, Path::new("x.conf"), &no_env);
    }

    #[test]
    fn syntax_soup_never_panics(src in "[a-z0-9 \t\n{}\\[\\]:=,;#/\"'()$\\\\.xkKbB-]{0,200}") {
        match parse_str_with_env(&src, Path::new("x.conf"), &no_env) {
            // Errors always carry a position inside the input.
            Err(e) => {
                let pos = e.pos().expect("position");
                prop_assert!(pos.line as usize <= src.matches('\n').count() + 1);
            }
            Ok(v) => prop_assert!(v.as_map().is_some()),
        }
    }
}
