//! Subscription interest: a token trie keyed by subject filters, with a
//! cache of results for literal subjects.
//!
//! One `Sublist` belongs to one shard (no locks). It is generic so the same
//! structure holds local subscriptions and the interest other shards announce.

use std::collections::HashMap;
use std::rc::Rc;

use bytes::Bytes;

use crate::subject;

/// Cached results are dropped wholesale past this many subjects, which keeps
/// memory bounded when publishers use unique subjects (inboxes).
const CACHE_MAX: usize = 4096;

/// Slots of the admission filter (a power of two): a subject's result is
/// cached on its second sighting only, so one-off subjects (every reply
/// inbox, every PubAck) cost a lookup, not a cache entry that churns the
/// cache and is freed unused.
const SEEN_SLOTS: usize = 4096;

type Map<K, V> = HashMap<K, V, ahash::RandomState>;

/// Everything interested in one literal subject.
#[derive(Debug)]
pub struct Matches<T> {
    /// Inline when one (a reply inbox, a stream's capture): one
    /// allocation per uncached lookup instead of two.
    pub psubs: smallvec::SmallVec<[T; 1]>,
    /// Queue groups: name and members.
    pub qsubs: Vec<(Bytes, Vec<T>)>,
    /// Where each group sits in `qsubs`, when there are many.
    index: GroupIndex,
}

/// Past this many groups, `Matches::group` looks names up in an index.
const GROUP_INDEX_MIN: usize = 16;

impl<T> Matches<T> {
    pub fn is_empty(&self) -> bool {
        self.psubs.is_empty() && self.qsubs.is_empty()
    }

    /// The members of group `name`, if it has any here.
    pub fn group(&self, name: &[u8]) -> Option<&Vec<T>> {
        match &self.index {
            Some(index) => index.get(name).map(|&i| &self.qsubs[i].1),
            None => self
                .qsubs
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, members)| members),
        }
    }
}

impl<T> Default for Matches<T> {
    fn default() -> Self {
        Matches {
            psubs: smallvec::SmallVec::new(),
            qsubs: Vec::new(),
            index: None,
        }
    }
}

struct Node<T> {
    next: Option<Box<Level<T>>>,
    psubs: Vec<T>,
    /// By group name: thousands of groups on one subject must not make
    /// each subscribe or unsubscribe a linear search.
    qsubs: Map<Bytes, Vec<T>>,
}

impl<T> Default for Node<T> {
    fn default() -> Self {
        Node {
            next: None,
            psubs: Vec::new(),
            qsubs: Map::default(),
        }
    }
}

impl<T> Node<T> {
    fn is_empty(&self) -> bool {
        self.psubs.is_empty()
            && self.qsubs.is_empty()
            && self.next.as_ref().is_none_or(|l| l.is_empty())
    }
}

struct Level<T> {
    literal: Map<Box<[u8]>, Node<T>>,
    pwc: Option<Box<Node<T>>>,
    fwc: Option<Box<Node<T>>>,
}

impl<T> Default for Level<T> {
    fn default() -> Self {
        Level {
            literal: Map::default(),
            pwc: None,
            fwc: None,
        }
    }
}

impl<T> Level<T> {
    fn is_empty(&self) -> bool {
        self.literal.is_empty() && self.pwc.is_none() && self.fwc.is_none()
    }
}

/// Counters for `/subsz`.
#[derive(Debug, Default, Clone, Copy)]
pub struct SublistStats {
    pub subscriptions: usize,
    pub cache_entries: usize,
    pub matches: u64,
    pub cache_hits: u64,
    pub inserts: u64,
    pub removes: u64,
}

pub struct Sublist<T> {
    root: Level<T>,
    cache: Map<Bytes, Rc<Matches<T>>>,
    /// The last subject looked up: a publisher usually repeats its subject,
    /// and a compare is cheaper than hashing.
    last: Option<(Bytes, Rc<Matches<T>>)>,
    /// Hashes of subjects looked up once and not cached (direct-mapped;
    /// a collision only delays caching).
    seen: Box<[u64]>,
    stats: SublistStats,
}

impl<T: Clone + PartialEq> Default for Sublist<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Clone + PartialEq> Sublist<T> {
    pub fn new() -> Self {
        Sublist {
            root: Level::default(),
            cache: Map::default(),
            last: None,
            seen: vec![0; SEEN_SLOTS].into_boxed_slice(),
            stats: SublistStats::default(),
        }
    }

    pub fn stats(&self) -> SublistStats {
        SublistStats {
            cache_entries: self.cache.len(),
            ..self.stats
        }
    }

    pub fn len(&self) -> usize {
        self.stats.subscriptions
    }

    pub fn is_empty(&self) -> bool {
        self.stats.subscriptions == 0
    }

    /// Adds `item` under `filter` (already validated), in `queue` if given.
    pub fn insert(&mut self, filter: &[u8], queue: Option<&Bytes>, item: T) {
        let mut level = &mut self.root;
        let mut tokens = filter.split(|&b| b == b'.').peekable();
        let node = loop {
            let tok = tokens.next().unwrap_or_default();
            let node: &mut Node<T> = match tok {
                b"*" => level.pwc.get_or_insert_with(Default::default),
                b">" => level.fwc.get_or_insert_with(Default::default),
                _ => level.literal.entry(tok.into()).or_default(),
            };
            if tokens.peek().is_none() {
                break node;
            }
            level = node.next.get_or_insert_with(Default::default);
        };
        match queue {
            None => node.psubs.push(item),
            Some(q) => match node.qsubs.get_mut(q) {
                Some(members) => members.push(item),
                None => {
                    node.qsubs.insert(q.clone(), vec![item]);
                }
            },
        }
        self.stats.subscriptions += 1;
        self.stats.inserts += 1;
        self.invalidate(filter);
    }

    /// Removes one `item` registered under `filter`/`queue`. Returns whether
    /// it was present.
    pub fn remove(&mut self, filter: &[u8], queue: Option<&Bytes>, item: &T) -> bool {
        let tokens: Vec<&[u8]> = filter.split(|&b| b == b'.').collect();
        let removed = remove_in(&mut self.root, &tokens, queue, item);
        if removed {
            self.stats.subscriptions -= 1;
            self.stats.removes += 1;
            self.invalidate(filter);
        }
        removed
    }

    fn invalidate(&mut self, filter: &[u8]) {
        self.last = None;
        if self.cache.is_empty() {
            return;
        }
        if subject::has_wildcard(filter) {
            self.cache.retain(|k, _| !subject::matches(filter, k));
        } else {
            self.cache.remove(filter);
        }
    }

    /// Whether something is registered under exactly `filter` (not through
    /// a wildcard that covers it).
    pub fn has_exact(&self, filter: &[u8]) -> bool {
        let mut level = &self.root;
        let mut tokens = filter.split(|&b| b == b'.').peekable();
        loop {
            let tok = tokens.next().unwrap_or_default();
            let node = match tok {
                b"*" => level.pwc.as_deref(),
                b">" => level.fwc.as_deref(),
                _ => level.literal.get(tok),
            };
            let Some(node) = node else {
                return false;
            };
            if tokens.peek().is_none() {
                return !node.psubs.is_empty() || !node.qsubs.is_empty();
            }
            let Some(next) = node.next.as_deref() else {
                return false;
            };
            level = next;
        }
    }

    /// Everything interested in the literal `subject`.
    pub fn matches(&mut self, subject: &[u8]) -> Rc<Matches<T>> {
        self.stats.matches += 1;
        if let Some((k, m)) = &self.last {
            if k.as_ref() == subject {
                self.stats.cache_hits += 1;
                return m.clone();
            }
        }
        if let Some(hit) = self.cache.get_key_value(subject) {
            self.stats.cache_hits += 1;
            let hit = (hit.0.clone(), hit.1.clone());
            self.last = Some(hit.clone());
            return hit.1;
        }
        let mut out = Matches::default();
        collect(&self.root, subject, &mut out);
        let out = Rc::new(out);
        let h = self.cache.hasher().hash_one(subject) | 1;
        let slot = &mut self.seen[h as usize & (SEEN_SLOTS - 1)];
        if *slot != h {
            *slot = h;
            return out;
        }
        *slot = 0;
        if self.cache.len() >= CACHE_MAX {
            self.cache.clear();
        }
        let key = Bytes::copy_from_slice(subject);
        self.cache.insert(key.clone(), out.clone());
        self.last = Some((key, out.clone()));
        out
    }

    /// Matches without touching the cache (for one-off lookups such as
    /// monitoring or permission checks).
    pub fn matches_uncached(&self, subject: &[u8]) -> Matches<T> {
        let mut out = Matches::default();
        collect(&self.root, subject, &mut out);
        out
    }

    /// Visits every stored entry as (filter, queue, item).
    pub fn for_each(&self, mut f: impl FnMut(&[u8], Option<&Bytes>, &T)) {
        let mut path = Vec::new();
        walk(&self.root, &mut path, &mut f);
    }
}

fn walk<T>(level: &Level<T>, path: &mut Vec<u8>, f: &mut impl FnMut(&[u8], Option<&Bytes>, &T)) {
    let mut visit = |tok: &[u8], node: &Node<T>, path: &mut Vec<u8>| {
        let mark = path.len();
        if !path.is_empty() {
            path.push(b'.');
        }
        path.extend_from_slice(tok);
        for s in &node.psubs {
            f(path, None, s);
        }
        for (q, members) in &node.qsubs {
            for s in members {
                f(path, Some(q), s);
            }
        }
        if let Some(next) = &node.next {
            walk(next, path, f);
        }
        path.truncate(mark);
    };
    for (tok, node) in &level.literal {
        visit(tok, node, path);
    }
    if let Some(n) = &level.pwc {
        visit(b"*", n, path);
    }
    if let Some(n) = &level.fwc {
        visit(b">", n, path);
    }
}

/// Where each group sits in `Matches::qsubs`, built only once a second
/// node brings groups (a group may sit under several matching filters).
type GroupIndex = Option<Map<Bytes, usize>>;

fn add_node<T: Clone>(node: &Node<T>, out: &mut Matches<T>, index: &mut GroupIndex) {
    out.psubs.extend(node.psubs.iter().cloned());
    if node.qsubs.is_empty() {
        return;
    }
    if out.qsubs.is_empty() {
        out.qsubs
            .extend(node.qsubs.iter().map(|(q, m)| (q.clone(), m.clone())));
        return;
    }
    let index = index.get_or_insert_with(|| {
        out.qsubs
            .iter()
            .enumerate()
            .map(|(i, (q, _))| (q.clone(), i))
            .collect()
    });
    for (q, members) in &node.qsubs {
        match index.get(q) {
            Some(&i) => out.qsubs[i].1.extend(members.iter().cloned()),
            None => {
                index.insert(q.clone(), out.qsubs.len());
                out.qsubs.push((q.clone(), members.clone()));
            }
        }
    }
}

fn collect<T: Clone>(level: &Level<T>, subject: &[u8], out: &mut Matches<T>) {
    let mut index = None;
    collect_into(level, Some(subject), out, &mut index);
    if out.qsubs.len() >= GROUP_INDEX_MIN {
        out.index = Some(index.unwrap_or_else(|| {
            out.qsubs
                .iter()
                .enumerate()
                .map(|(i, (q, _))| (q.clone(), i))
                .collect()
        }));
    }
}

/// The first token of `rest` and what follows its dot (None after the
/// last token; `Some(b"")` after a trailing dot, as `split` counts it).
fn token(rest: &[u8]) -> (&[u8], Option<&[u8]>) {
    match memchr::memchr(b'.', rest) {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    }
}

/// Walks the tokens of `rest` (None: none left) without collecting them.
fn collect_into<T: Clone>(
    level: &Level<T>,
    rest: Option<&[u8]>,
    out: &mut Matches<T>,
    index: &mut GroupIndex,
) {
    let Some(rest) = rest else {
        return;
    };
    let (tok, rest) = token(rest);
    if let Some(fwc) = &level.fwc {
        add_node(fwc, out, index);
    }
    let mut step = |node: &Node<T>| match rest {
        None => add_node(node, out, index),
        Some(_) => {
            if let Some(next) = &node.next {
                collect_into(next, rest, out, index);
            }
        }
    };
    if let Some(pwc) = &level.pwc {
        step(pwc);
    }
    if let Some(node) = level.literal.get(tok) {
        step(node);
    }
}

fn remove_from<T: PartialEq>(node: &mut Node<T>, queue: Option<&Bytes>, item: &T) -> bool {
    match queue {
        None => match node.psubs.iter().position(|s| s == item) {
            Some(i) => {
                node.psubs.swap_remove(i);
                true
            }
            None => false,
        },
        Some(q) => {
            let Some(members) = node.qsubs.get_mut(q) else {
                return false;
            };
            let Some(i) = members.iter().position(|s| s == item) else {
                return false;
            };
            members.swap_remove(i);
            if members.is_empty() {
                node.qsubs.remove(q);
            }
            true
        }
    }
}

fn remove_in<T: PartialEq>(
    level: &mut Level<T>,
    tokens: &[&[u8]],
    queue: Option<&Bytes>,
    item: &T,
) -> bool {
    let Some((tok, rest)) = tokens.split_first() else {
        return false;
    };
    let removed;
    let empty;
    {
        let node: &mut Node<T> = match *tok {
            b"*" => match level.pwc.as_deref_mut() {
                Some(n) => n,
                None => return false,
            },
            b">" => match level.fwc.as_deref_mut() {
                Some(n) => n,
                None => return false,
            },
            t => match level.literal.get_mut(t) {
                Some(n) => n,
                None => return false,
            },
        };
        removed = if rest.is_empty() {
            remove_from(node, queue, item)
        } else {
            match node.next.as_deref_mut() {
                Some(next) => {
                    let r = remove_in(next, rest, queue, item);
                    if next.is_empty() {
                        node.next = None;
                    }
                    r
                }
                None => false,
            }
        };
        empty = node.is_empty();
    }
    if empty {
        match *tok {
            b"*" => level.pwc = None,
            b">" => level.fwc = None,
            t => {
                level.literal.remove(t);
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn exact_registration_is_not_a_covering_wildcard() {
        let mut sl: Sublist<u32> = Sublist::new();
        sl.insert(b"_INBOX.x.*", None, 1);
        assert!(!sl.has_exact(b"_INBOX.x.y"));
        assert!(sl.has_exact(b"_INBOX.x.*"));
        sl.insert(b"_INBOX.x.y", None, 2);
        assert!(sl.has_exact(b"_INBOX.x.y"));
        sl.remove(b"_INBOX.x.y", None, &2);
        assert!(!sl.has_exact(b"_INBOX.x.y"));
        assert!(!sl.has_exact(b"other"));
    }

    #[test]
    fn a_subject_is_cached_on_its_second_lookup_only() {
        let mut sl: Sublist<u32> = Sublist::new();
        sl.insert(b"_INBOX.abc.*", None, 1);
        for i in 0..100 {
            let m = sl.matches(format!("_INBOX.abc.{i}").as_bytes());
            assert_eq!(m.psubs.to_vec(), vec![1]);
        }
        assert_eq!(sl.stats().cache_entries, 0, "one-off subjects stay out");
        sl.matches(b"_INBOX.abc.7");
        assert_eq!(sl.stats().cache_entries, 1, "a repeat is cached");
        let hits = sl.stats().cache_hits;
        sl.matches(b"_INBOX.abc.7");
        assert_eq!(sl.stats().cache_hits, hits + 1);
        // A later subscription is seen through the cached entry.
        sl.insert(b"_INBOX.>", None, 2);
        let mut got = sl.matches(b"_INBOX.abc.7").psubs.to_vec();
        got.sort();
        assert_eq!(got, vec![1, 2]);
        // Trailing and empty tokens match as the split-based walk did.
        sl.insert(b"a.*", None, 3);
        assert_eq!(sl.matches(b"a.").psubs.to_vec(), vec![3]);
        assert!(sl.matches(b"a").psubs.is_empty());
    }

    #[test]
    fn basic_insert_match_remove() {
        let mut sl: Sublist<u32> = Sublist::new();
        sl.insert(b"a.b", None, 1);
        sl.insert(b"a.*", None, 2);
        sl.insert(b"a.>", None, 3);
        sl.insert(b">", Some(&b("q")), 4);
        sl.insert(b"a.b", Some(&b("q")), 5);
        let m = sl.matches(&b("a.b"));
        let mut p = m.psubs.to_vec();
        p.sort();
        assert_eq!(p, vec![1, 2, 3]);
        assert_eq!(m.qsubs.len(), 1);
        let mut q = m.qsubs[0].1.clone();
        q.sort();
        assert_eq!(q, vec![4, 5]);
        assert!(sl.remove(b"a.*", None, &2));
        assert!(!sl.remove(b"a.*", None, &2));
        let m = sl.matches(&b("a.b"));
        assert_eq!(m.psubs.len(), 2);
        assert!(sl.remove(b">", Some(&b("q")), &4));
        assert!(sl.remove(b"a.b", Some(&b("q")), &5));
        assert!(sl.remove(b"a.b", None, &1));
        assert!(sl.remove(b"a.>", None, &3));
        assert!(sl.is_empty());
        assert!(sl.root.is_empty());
    }

    fn token() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("a".to_string()),
            Just("b".to_string()),
            Just("c".to_string())
        ]
    }

    fn filter() -> impl Strategy<Value = String> {
        (
            proptest::collection::vec(prop_oneof![token(), Just("*".to_string())], 1..4),
            any::<bool>(),
        )
            .prop_map(|(mut toks, fwc)| {
                if fwc {
                    toks.push(">".into());
                }
                toks.join(".")
            })
    }

    fn literal() -> impl Strategy<Value = String> {
        proptest::collection::vec(token(), 1..5).prop_map(|t| t.join("."))
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(String, Option<u8>, u32),
        Remove(usize),
        Match(String),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (filter(), proptest::option::of(0u8..2), 0u32..1000)
                .prop_map(|(f, q, i)| Op::Insert(f, q, i)),
            (0usize..64).prop_map(Op::Remove),
            literal().prop_map(Op::Match),
        ]
    }

    proptest! {
        /// The trie (with its cache) agrees with a brute-force scan.
        #[test]
        fn agrees_with_brute_force(ops in proptest::collection::vec(op(), 1..120)) {
            let mut sl: Sublist<u32> = Sublist::new();
            let mut model: Vec<(String, Option<Bytes>, u32)> = Vec::new();
            for op in ops {
                match op {
                    Op::Insert(f, q, i) => {
                        let q = q.map(|q| b(&format!("q{q}")));
                        sl.insert(f.as_bytes(), q.as_ref(), i);
                        model.push((f, q, i));
                    }
                    Op::Remove(k) => {
                        if !model.is_empty() {
                            let (f, q, i) = model.remove(k % model.len());
                            prop_assert!(sl.remove(f.as_bytes(), q.as_ref(), &i));
                        }
                    }
                    Op::Match(s) => {
                        let m = sl.matches(&b(&s));
                        let mut got: Vec<(Option<Bytes>, u32)> = m.psubs.iter().map(|i| (None, *i)).collect();
                        for (q, members) in &m.qsubs {
                            got.extend(members.iter().map(|i| (Some(q.clone()), *i)));
                        }
                        let mut want: Vec<(Option<Bytes>, u32)> = model
                            .iter()
                            .filter(|(f, _, _)| subject::matches(f.as_bytes(), s.as_bytes()))
                            .map(|(_, q, i)| (q.clone(), *i))
                            .collect();
                        got.sort();
                        want.sort();
                        prop_assert_eq!(got, want);
                    }
                }
                prop_assert_eq!(sl.len(), model.len());
            }
        }
    }
}
