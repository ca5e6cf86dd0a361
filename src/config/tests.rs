//! Unit tests for every syntax form and for error positions.

use std::path::Path;
use std::time::Duration;

use super::*;

mod fixtures;
mod proptests;

fn no_env(_: &str) -> Option<String> {
    None
}

fn parse(src: &str) -> Value {
    match parse_str_with_env(src, Path::new("t.conf"), &no_env) {
        Ok(v) => v,
        Err(e) => panic!("parse failed: {e}\n--- input ---\n{src}"),
    }
}

fn parse_env(src: &str, env: &[(&str, &str)]) -> Result<Value, ConfigError> {
    let lookup = |k: &str| {
        env.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    };
    parse_str_with_env(src, Path::new("t.conf"), &lookup)
}

/// The error text for input that must fail.
fn fail(src: &str) -> String {
    match parse_str_with_env(src, Path::new("t.conf"), &no_env) {
        Ok(v) => panic!("expected an error for {src:?}, got {v:?}"),
        Err(e) => e.to_string(),
    }
}

fn s(v: &str) -> ValueKind {
    ValueKind::String(v.to_string())
}

fn kind<'a>(root: &'a Value, key: &str) -> &'a ValueKind {
    match root.get(key) {
        Some(v) => &v.kind,
        None => panic!("missing key {key} in {root:?}"),
    }
}

fn pos_of(root: &Value, key: &str) -> (u32, u32) {
    let v = root.get(key).expect("key");
    (v.pos.line, v.pos.col)
}

#[test]
fn key_separators() {
    let v = parse("a: 1\nb = 2\nc 3\nd:4\ne=5\nf\t6\n  g :  7\n");
    for (k, n) in [
        ("a", 1),
        ("b", 2),
        ("c", 3),
        ("d", 4),
        ("e", 5),
        ("f", 6),
        ("g", 7),
    ] {
        assert_eq!(kind(&v, k), &ValueKind::Int(n), "{k}");
    }
    let keys: Vec<_> = v.as_map().unwrap().keys().collect();
    assert_eq!(keys, ["a", "b", "c", "d", "e", "f", "g"]);
}

#[test]
fn comments() {
    let v = parse(
        "# hash comment\n// slash comment\na: 1 # trailing\nb: 2 // trailing\n\
         m {\n  # inside\n  x: 1 // after\n}\narr [\n  1 # one\n  // two\n  2\n]\n",
    );
    assert_eq!(kind(&v, "a"), &ValueKind::Int(1));
    assert_eq!(kind(&v, "b"), &ValueKind::Int(2));
    assert_eq!(v.get("m").unwrap().get("x").unwrap().as_int(), Some(1));
    assert_eq!(v.get("arr").unwrap().as_array().unwrap().len(), 2);
    assert_eq!(parse("").as_map().unwrap().len(), 0);
    assert_eq!(parse("# only a comment").as_map().unwrap().len(), 0);
}

#[test]
fn strings() {
    let v = parse(concat!(
        "a: \"double \\\"q\\\" \\t\\n\\r\\\\ \\x41\"\n",
        "b: 'single \\n raw'\n",
        "c: bare_word\n",
        "d: \"\"\n",
        "f: \"multi\nline\"\n",
        "g: caf\u{e9}\n",
        "h: a\\tb\n",
        "i: nats://user:pw@host:4222\n",
        "j: \"true\"\n",
        "k: \"$NOTVAR\"\n",
        "l: \"# not a comment\"\n",
    ));
    assert_eq!(kind(&v, "a"), &s("double \"q\" \t\n\r\\ A"));
    assert_eq!(kind(&v, "b"), &s("single \\n raw"));
    assert_eq!(kind(&v, "c"), &s("bare_word"));
    assert_eq!(kind(&v, "d"), &s(""));
    assert_eq!(kind(&v, "f"), &s("multi\nline"));
    assert_eq!(kind(&v, "g"), &s("caf\u{e9}"));
    assert_eq!(kind(&v, "h"), &s("a\tb"));
    assert_eq!(kind(&v, "i"), &s("nats://user:pw@host:4222"));
    assert_eq!(kind(&v, "j"), &s("true"));
    assert_eq!(kind(&v, "k"), &s("$NOTVAR"));
    assert_eq!(kind(&v, "l"), &s("# not a comment"));
}

#[test]
fn quote_ends_a_bare_string_like_nats() {
    // nats ends `it''s` after "it" then sees an empty quoted string: error
    // in nats too (value end), so we only check we do not panic.
    let _ = parse_str_with_env("e: it's\n", Path::new("t"), &no_env);
}

#[test]
fn booleans() {
    for (w, b) in [
        ("true", true),
        ("TRUE", true),
        ("True", true),
        ("yes", true),
        ("Yes", true),
        ("on", true),
        ("ON", true),
        ("false", false),
        ("False", false),
        ("no", false),
        ("NO", false),
        ("off", false),
        ("Off", false),
    ] {
        let v = parse(&format!("x: {w}"));
        assert_eq!(kind(&v, "x"), &ValueKind::Bool(b), "{w}");
    }
    assert_eq!(kind(&parse("x: 'yes'"), "x"), &s("yes"));
    assert_eq!(kind(&parse("x: yess"), "x"), &s("yess"));
}

#[test]
fn numbers() {
    let v = parse(
        "a: 4222\nb: -1\nc: 0\nd: 1.5\ne: -0.25\nf: 10K\ng: 1GB\nh: 512MB\ni: 64kb\n\
         j: 9223372036854775807\nk: 1k, l: 2\n",
    );
    assert_eq!(kind(&v, "a"), &ValueKind::Int(4222));
    assert_eq!(kind(&v, "b"), &ValueKind::Int(-1));
    assert_eq!(kind(&v, "c"), &ValueKind::Int(0));
    assert_eq!(kind(&v, "d"), &ValueKind::Float(1.5));
    assert_eq!(kind(&v, "e"), &ValueKind::Float(-0.25));
    assert_eq!(kind(&v, "f"), &ValueKind::Int(10_000));
    assert_eq!(kind(&v, "g"), &ValueKind::Int(1 << 30));
    assert_eq!(kind(&v, "h"), &ValueKind::Int(512 << 20));
    assert_eq!(kind(&v, "i"), &ValueKind::Int(64 << 10));
    assert_eq!(kind(&v, "j"), &ValueKind::Int(i64::MAX));
    assert_eq!(kind(&v, "k"), &ValueKind::Int(1000));
    assert_eq!(kind(&v, "l"), &ValueKind::Int(2));
    assert!(v.get("g").unwrap().has_suffix());
    assert!(!v.get("a").unwrap().has_suffix());
}

#[test]
fn ip_like_and_host_values_are_strings() {
    let v = parse(
        "listen: 0.0.0.0:4222\nhost: 127.0.0.1\nx: 127.0.0.1:4222\ny: localhost:4222\n\
         z: [10.0.0.1:6222, 10.0.0.2:6222]\nw: ::1\n",
    );
    assert_eq!(kind(&v, "listen"), &s("0.0.0.0:4222"));
    assert_eq!(kind(&v, "host"), &s("127.0.0.1"));
    assert_eq!(kind(&v, "x"), &s("127.0.0.1:4222"));
    assert_eq!(kind(&v, "y"), &s("localhost:4222"));
    assert_eq!(kind(&v, "w"), &s("::1"));
    let z = v.get("z").unwrap().as_array().unwrap();
    assert_eq!(z[0].kind, s("10.0.0.1:6222"));
    assert_eq!(z[1].kind, s("10.0.0.2:6222"));
}

#[test]
fn durations() {
    let v = parse(
        "a: \"2m\"\nb: 30s\nc: 500ms\nd: \"1h\"\ne: 1h30m\nf: 10\ng: 2m\nh: \"1.5s\"\ni: bad\n\
         j: -5\nk: 1GB\n",
    );
    let d = |k: &str| v.get(k).unwrap().as_duration();
    assert_eq!(d("a").unwrap(), Duration::from_secs(120));
    assert_eq!(kind(&v, "b"), &s("30s"));
    assert_eq!(d("b").unwrap(), Duration::from_secs(30));
    assert_eq!(d("c").unwrap(), Duration::from_millis(500));
    assert_eq!(d("d").unwrap(), Duration::from_secs(3600));
    assert_eq!(d("e").unwrap(), Duration::from_secs(5400));
    // Integers mean seconds (nats backward compatibility).
    assert_eq!(d("f").unwrap(), Duration::from_secs(10));
    // Bare `2m` lexes as 2,000,000 but reads as two minutes as a duration.
    assert_eq!(kind(&v, "g"), &ValueKind::Int(2_000_000));
    assert_eq!(d("g").unwrap(), Duration::from_secs(120));
    assert_eq!(d("h").unwrap(), Duration::from_millis(1500));
    assert_eq!(
        d("i").unwrap_err().to_string(),
        "t.conf:9:4: time: invalid duration \"bad\""
    );
    assert!(d("j").is_err());
    // A size suffix that is no duration unit falls back to seconds.
    assert_eq!(d("k").unwrap(), Duration::from_secs(1 << 30));
}

#[test]
fn datetime() {
    let v = parse("t: 2016-05-04T18:53:41Z\n");
    assert_eq!(
        kind(&v, "t"),
        &ValueKind::Datetime("2016-05-04T18:53:41Z".into())
    );
    assert!(fail("t: 2016-05-04").contains("ISO8601"));
    assert!(fail("t: 16-05-04T18:53:41Z").contains("full Zulu form"));
}

#[test]
fn maps_and_arrays() {
    let v = parse(
        "authorization {\n  user: a\n  password: b\n  timeout: 2\n}\n\
         cluster: { name: c1, port: 6222 }\n\
         empty {}\n\
         ws = {\n  port: 8080; no_tls: true\n}\n\
         arr: [1, two, \"three\", 4.5, true, [5, 6], {seven: 7}]\n\
         multi: [\n  a\n  b,\n  c,\n]\n\
         nested { a { b { c: deep } } }\n\
         earr: []\n",
    );
    let auth = v.get("authorization").unwrap();
    assert_eq!(auth.get("user").unwrap().kind, s("a"));
    assert_eq!(auth.get("timeout").unwrap().as_int(), Some(2));
    assert_eq!(
        v.get("cluster").unwrap().get("port").unwrap().as_int(),
        Some(6222)
    );
    assert!(v.get("empty").unwrap().as_map().unwrap().is_empty());
    assert_eq!(
        v.get("ws").unwrap().get("no_tls").unwrap().as_bool(),
        Some(true)
    );
    let arr = v.get("arr").unwrap().as_array().unwrap();
    assert_eq!(arr.len(), 7);
    assert_eq!(arr[1].kind, s("two"));
    assert_eq!(arr[3].kind, ValueKind::Float(4.5));
    assert_eq!(arr[4].kind, ValueKind::Bool(true));
    assert_eq!(arr[5].as_array().unwrap()[1].kind, ValueKind::Int(6));
    assert_eq!(arr[6].get("seven").unwrap().kind, ValueKind::Int(7));
    let multi: Vec<_> = v
        .get("multi")
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    assert_eq!(multi, ["a", "b", "c"]);
    let deep = v.get("nested").unwrap().get("a").unwrap().get("b").unwrap();
    assert_eq!(deep.get("c").unwrap().kind, s("deep"));
    assert!(v.get("earr").unwrap().as_array().unwrap().is_empty());
}

#[test]
fn semicolons_and_commas_end_values() {
    let v = parse("a: 1; b: 2, c: 3;\nd { x: 1; y: 2 }\n");
    assert_eq!(kind(&v, "c"), &ValueKind::Int(3));
    assert_eq!(v.get("d").unwrap().get("y").unwrap().as_int(), Some(2));
}

#[test]
fn json_form() {
    let v = parse(
        "{\"port\": 4567, \"jetstream\": true, \"server_name\": \"n1\",\n \
         \"cluster\": {\"routes\": [\"nats://a:6222\", \"nats://b:6222\"], \"port\": 6222},\n \
         \"ratio\": 0.5, \"list\": [1, 2, 3], \"none\": []}\n",
    );
    assert_eq!(kind(&v, "port"), &ValueKind::Int(4567));
    assert_eq!(kind(&v, "jetstream"), &ValueKind::Bool(true));
    assert_eq!(kind(&v, "server_name"), &s("n1"));
    let routes = v
        .get("cluster")
        .unwrap()
        .get("routes")
        .unwrap()
        .as_array()
        .unwrap();
    assert_eq!(routes[1].kind, s("nats://b:6222"));
    let list: Vec<_> = v
        .get("list")
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_int().unwrap())
        .collect();
    assert_eq!(list, [1, 2, 3]);
    // Pretty-printed JSON, as `jq .` writes it.
    let v = parse("{\n  \"port\": 4567,\n  \"jetstream\": {\n    \"max_mem\": 1024\n  }\n}\n");
    assert_eq!(
        v.get("jetstream").unwrap().get("max_mem").unwrap().as_int(),
        Some(1024)
    );
}

#[test]
fn quoted_keys() {
    let v = parse("\"a b\": 1\n'c.d' = 2\nm { \"$SYS\": { users: [] } }\n");
    assert_eq!(kind(&v, "a b"), &ValueKind::Int(1));
    assert_eq!(kind(&v, "c.d"), &ValueKind::Int(2));
    assert!(v.get("m").unwrap().get("$SYS").is_some());
}

#[test]
fn duplicate_keys_last_wins_in_first_place() {
    let v = parse("a: 1\nb: 2\na: 3\n");
    assert_eq!(kind(&v, "a"), &ValueKind::Int(3));
    assert_eq!(v.as_map().unwrap().keys().collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(pos_of(&v, "a"), (3, 4));
}

#[test]
fn case_insensitive_lookup() {
    let v = parse("Max_Payload: 1MB\nPORT: 1\n");
    assert_eq!(v.get_ci("max_payload").unwrap().as_int(), Some(1 << 20));
    assert_eq!(v.get_ci("port").unwrap().as_int(), Some(1));
    assert!(v.get("port").is_none());
}

#[test]
fn block_strings() {
    let v = parse("a: (\nline one\n  line (two)\n)\nb: 1\n");
    assert_eq!(kind(&v, "a"), &s("\nline one\n  line (two)\n"));
    assert_eq!(kind(&v, "b"), &ValueKind::Int(1));
    let v = parse("a (\nx )\n)");
    assert_eq!(kind(&v, "a"), &s("\nx )\n"));
    assert!(fail("a: (\nnever closed )\n").contains("Unexpected EOF processing block."));
}

#[test]
fn variables() {
    let v = parse(
        "TOKEN = \"s3cr3t\"\nPORT: 4222\nauthorization { token: $TOKEN }\nport: $PORT\n\
         L = [1, 2]\nlist: $L\n",
    );
    assert_eq!(
        v.get("authorization").unwrap().get("token").unwrap().kind,
        s("s3cr3t")
    );
    assert_eq!(kind(&v, "port"), &ValueKind::Int(4222));
    assert_eq!(v.get("list").unwrap().as_array().unwrap().len(), 2);
    // The value takes the position of the reference.
    assert_eq!(pos_of(&v, "port"), (4, 7));
}

#[test]
fn variable_scopes() {
    let v = parse(
        "A = outer\nm {\n  A = inner\n  x: $A\n  n { y: $A }\n}\nz: $A\n\
         arr: [ { w: $A } ]\n",
    );
    let m = v.get("m").unwrap();
    assert_eq!(m.get("x").unwrap().kind, s("inner"));
    assert_eq!(m.get("n").unwrap().get("y").unwrap().kind, s("inner"));
    assert_eq!(kind(&v, "z"), &s("outer"));
    let arr = v.get("arr").unwrap().as_array().unwrap();
    assert_eq!(arr[0].get("w").unwrap().kind, s("outer"));
    // Later definitions are not visible earlier.
    assert!(fail("x: $B\nB = 1\n").contains("variable reference for 'B' can not be found"));
}

#[test]
fn variables_from_environment() {
    let env = [
        ("NATS_ADMIN_PASS", "hunter2"),
        ("NATS_PORT", "4333"),
        ("SIZE", "1MB"),
        ("ON", "true"),
        ("CHAIN", "$NATS_PORT"),
        ("LOOP", "$LOOP"),
        ("EMPTY", ""),
        ("SPACE", "a b"),
        ("ARR", "[a, b]"),
    ];
    let v = parse_env(
        "pass: $NATS_ADMIN_PASS\nport: $NATS_PORT\nsize: $SIZE\non: $ON\nc: $CHAIN\ne: $EMPTY\n\
         arr: $ARR\n",
        &env,
    )
    .unwrap();
    assert_eq!(kind(&v, "pass"), &s("hunter2"));
    assert_eq!(kind(&v, "port"), &ValueKind::Int(4333));
    assert_eq!(kind(&v, "size"), &ValueKind::Int(1 << 20));
    assert_eq!(kind(&v, "on"), &ValueKind::Bool(true));
    assert_eq!(kind(&v, "c"), &ValueKind::Int(4333));
    assert_eq!(kind(&v, "e"), &s(""));
    let arr = v.get("arr").unwrap().as_array().unwrap();
    assert_eq!(arr[1].kind, s("b"));
    // Env values are positioned at the reference.
    assert_eq!((arr[1].pos.line, arr[1].pos.col), (7, 6));
    // The file's own definition wins over the environment.
    let v = parse_env("NATS_PORT = 1\nport: $NATS_PORT\n", &env).unwrap();
    assert_eq!(kind(&v, "port"), &ValueKind::Int(1));

    let e = parse_env("x: $LOOP\n", &env).unwrap_err().to_string();
    assert!(
        e.starts_with("t.conf:1:4: variable reference for 'LOOP' could not be parsed"),
        "{e}"
    );
    assert!(e.contains("cycle"), "{e}");
    let e = parse_env("x: $SPACE\n", &env).unwrap_err().to_string();
    assert!(
        e.starts_with("t.conf:1:4: variable reference for 'SPACE' could not be parsed"),
        "{e}"
    );
    let e = parse_env("\n  x: $MISSING\n", &env)
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "t.conf:2:6: variable reference for 'MISSING' can not be found"
    );
}

#[test]
fn process_environment_fallback() {
    // PATH exists in any test environment; only read, never set.
    let v = parse_str("p: $PATH\n", Path::new("t.conf")).unwrap();
    assert!(v.get("p").is_some());
}

#[test]
fn bcrypt_hashes_are_not_variables() {
    let h = "$2a$11$W2zko751KUvVy59mUTWmpOdWjpEm5qhcCZRd05GjI/sSOT.xtiHyG";
    let v = parse(&format!("password: {h}\nq: \"{h}\"\nb: $2b$10$abc\n"));
    assert_eq!(kind(&v, "password"), &s(h));
    assert_eq!(kind(&v, "q"), &s(h));
    assert_eq!(kind(&v, "b"), &s("$2b$10$abc"));
}

#[test]
fn includes() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    std::fs::write(
        sub.join("auth.conf"),
        "users: [ {user: a, password: b} ]\nT = 1\nt: $T\n",
    )
    .unwrap();
    std::fs::write(sub.join("more.conf"), "include 'deeper.conf'\n").unwrap();
    std::fs::write(sub.join("deeper.conf"), "deep: yes\n").unwrap();
    std::fs::write(dir.path().join("top.conf"), "port: 1\n").unwrap();
    let main = dir.path().join("main.conf");
    std::fs::write(
        &main,
        "include top.conf\nauthorization {\n  include \"sub/auth.conf\"\n  timeout: 1\n}\n\
         INCLUDE sub/more.conf; x: 2\ninclude: not_a_keyword\n",
    )
    .unwrap();
    let v = parse_file_with_env(&main, &no_env).unwrap();
    assert_eq!(kind(&v, "port"), &ValueKind::Int(1));
    let auth = v.get("authorization").unwrap();
    assert_eq!(auth.get("users").unwrap().as_array().unwrap().len(), 1);
    assert_eq!(auth.get("timeout").unwrap().as_int(), Some(1));
    // deeper.conf is relative to more.conf, which lives in sub/.
    assert_eq!(kind(&v, "deep"), &ValueKind::Bool(true));
    assert_eq!(kind(&v, "x"), &ValueKind::Int(2));
    assert_eq!(kind(&v, "include"), &s("not_a_keyword"));
    // Values from an included file carry that file's position.
    let users = auth.get("users").unwrap();
    assert!(users.pos.file.ends_with("sub/auth.conf"));
    assert_eq!((users.pos.line, users.pos.col), (1, 8));
    // A variable used inside the included file is marked as used.
    assert!(auth.as_map().unwrap().entry("T").unwrap().used_as_variable);
}

#[test]
fn include_errors() {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("main.conf");
    std::fs::write(&main, "a: 1\ninclude missing.conf\n").unwrap();
    let e = parse_file_with_env(&main, &no_env).unwrap_err().to_string();
    assert!(
        e.contains("main.conf:2:9: error parsing include file 'missing.conf'"),
        "{e}"
    );

    std::fs::write(dir.path().join("bad.conf"), "ok: 1\nbroken: [1,\n").unwrap();
    std::fs::write(&main, "include bad.conf\n").unwrap();
    let e = parse_file_with_env(&main, &no_env).unwrap_err().to_string();
    assert!(
        e.contains("bad.conf:2:9: Parse error on line 3: 'Unexpected EOF processing array.'"),
        "{e}"
    );

    std::fs::write(dir.path().join("loop.conf"), "include main.conf\n").unwrap();
    std::fs::write(&main, "include loop.conf\n").unwrap();
    let e = parse_file_with_env(&main, &no_env).unwrap_err().to_string();
    assert!(e.contains("include cycle"), "{e}");

    for (src, want) in [
        ("include [a]", "found start of an array"),
        ("include {a}", "found start of a map"),
        ("include 12", "found start of a number"),
        ("include \"x", "Unexpected EOF in double quoted include"),
    ] {
        assert!(fail(src).contains(want), "{src}: {}", fail(src));
    }
    let e = parse_file_with_env(&dir.path().join("nope.conf"), &no_env).unwrap_err();
    assert!(
        e.to_string().starts_with("error opening config file: "),
        "{e}"
    );
    assert!(e.pos().is_none());
}

#[test]
fn positions() {
    let v = parse("port: 4222\n  cluster {\n\tname: \"c1\"\n  }\nlist: [\n  a, bb\n]\n");
    assert_eq!(pos_of(&v, "port"), (1, 7));
    assert_eq!(pos_of(&v, "cluster"), (2, 11));
    let cluster = v.get("cluster").unwrap();
    assert_eq!(
        (
            cluster.get("name").unwrap().pos.line,
            cluster.get("name").unwrap().pos.col
        ),
        (3, 8)
    );
    let e = cluster.as_map().unwrap().entry("name").unwrap();
    assert_eq!((e.key_pos.line, e.key_pos.col), (3, 2));
    let list = v.get("list").unwrap().as_array().unwrap();
    assert_eq!((list[1].pos.line, list[1].pos.col), (6, 6));
    assert_eq!(v.pos.to_string(), "t.conf:1:1");
    assert_eq!(
        err_at(&list[1], "expected a number").to_string(),
        "t.conf:6:6: expected a number"
    );
    assert_eq!(
        v.get("port").unwrap().expect_str().unwrap_err().to_string(),
        "t.conf:1:7: expected a string, got integer"
    );
}

/// Syntax errors (where nats-server's lexer fails) read
/// `file:line:col: Parse error on line N: '…'`: our position of the
/// construct at fault, then the reference's phrase and line (checked
/// against nats-server 2.15.3 `-t`; the texts are its own except where
/// noted in `mod.rs`). Other errors are `file:line:col: message`.
#[test]
fn error_positions() {
    let cases: &[(&str, &str)] = &[
        ("a: 1 b", "t.conf:1:6: Parse error on line 1: 'Expected a top-level value to end with a new line, comment or EOF, but got 'b' instead.'"),
        // The reference's lexer is past the new line when it complains.
        ("a:\n1", "t.conf:1:3: Parse error on line 2: 'Expected value but found new line'"),
        // EOF: ours points at the map, the reference's line is the last.
        ("x: 1\nm {\n  a: 1\n", "t.conf:2:3: Parse error on line 4: 'Unexpected EOF processing map.'"),
        ("x: [1,\n2", "t.conf:1:4: Parse error on line 2: 'Unexpected EOF processing array.'"),
        ("a: [1 2]", "t.conf:1:7: Parse error on line 1: 'Expected an array value terminator \",\" or an array terminator \"]\", but got '2' instead.'"),
        ("a: [,]", "t.conf:1:5: Parse error on line 1: 'Unexpected array value terminator ','.'"),
        ("m { a: 1 b: 2 }", "t.conf:1:10: Parse error on line 1: 'Expected a map value terminator \",\" or a map terminator \"}\", but got 'b' instead.'"),
        ("m { a: , }", "t.conf:1:8: Parse error on line 1: 'Unexpected map value terminator \",\".'"),
        ("m { a: }", "t.conf:1:5: config is invalid: key 'a' has no value"),
        ("m { ] }", "t.conf:1:5: Parse error on line 1: 'Unexpected array end ']' processing map.'"),
        ("m { : 1 }", "t.conf:1:5: Parse error on line 1: 'Unexpected key separator ':'.'"),
        (": 1", "t.conf:1:1: Parse error on line 1: 'Unexpected key separator ':''"),
        ("\n\n  a", "t.conf:3:3: config is invalid: key 'a' has no value"),
        ("a: \"abc", "t.conf:1:4: Parse error on line 1: 'Unexpected EOF.'"),
        ("a: 'abc\n\n", "t.conf:1:4: Parse error on line 3: 'Unexpected EOF.'"),
        ("a: \"x\\qy\"", "t.conf:1:6: Parse error on line 1: 'Invalid escape character 'q'. Only the following escape characters are allowed: \\xXX, \\t, \\n, \\r, \\\", \\\\.'"),
        ("a: \"\\xZZ\"", "t.conf:1:5: Parse error on line 1: 'Expected two hexadecimal digits after '\\x', but got 'ZZ''"),
        ("a: .5", "t.conf:1:4: Parse error on line 1: 'Floats must start with a digit'"),
        ("a: 1.x", "t.conf:1:6: Parse error on line 1: 'Floats must have a digit after the '.', but got 'x' instead.'"),
        ("a: -x", "t.conf:1:5: Parse error on line 1: 'Expected a digit but got 'x'.'"),
        // Not lexer errors in the reference either: no "Parse error".
        ("a: 99999999999999999999", "t.conf:1:24: integer '99999999999999999999' is out of the range"),
        ("a: 16EB", "t.conf:1:8: integer '16EB' is out of the range"),
        ("a: 1kbi", "t.conf:1:8: invalid size suffix 'kbi' in '1kbi'"),
        ("\n b: $NOPE", "t.conf:2:5: variable reference for 'NOPE' can not be found"),
        // Ours only (the reference accepts or words these differently).
        ("{ a: 1", "t.conf:1:1: Parse error on line 1: 'Unexpected EOF: this '{' is never closed.'"),
        ("a: 1\n}\nb: 2", "t.conf:2:1: Parse error on line 3: 'Unexpected '}' at top level'"),
        ("/ x", "t.conf:1:1: Parse error on line 1: 'Unexpected '/' at top level (comments start with '//')'"),
        ("a: 1k5", "t.conf:1:6: Parse error on line 1: 'Expected a top-level value to end with a new line, comment or EOF, but got '5' instead.'"),
        // Quoted keys: the reference's words differ by place and quote.
        ("\"k", "t.conf:1:1: Parse error on line 1: 'Unexpected EOF.'"),
        ("a {\"k: 1}", "t.conf:1:4: Parse error on line 1: 'Unexpected EOF processing double quoted map key.'"),
        ("m { 'k: 1", "t.conf:1:5: Parse error on line 1: 'Unexpected EOF processing quoted map key.'"),
        ("include \"x", "t.conf:1:9: Parse error on line 1: 'Unexpected EOF in double quoted include'"),
        ("include 'x", "t.conf:1:9: Parse error on line 1: 'Unexpected EOF in quoted include'"),
        ("a: (\nnever closed )\n", "t.conf:1:4: Parse error on line 3: 'Unexpected EOF processing block.'"),
    ];
    for (src, want) in cases {
        assert_eq!(&fail(src), want, "input {src:?}");
    }
}

/// Hardening #22: the five kinds of broken file the issue names, each
/// with our `file:line:col` and the reference's words (nats-server 2.9.10
/// and 2.15.3 print the quoted part identically).
#[test]
fn broken_files_carry_the_reference_wording() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str)] = &[
        // Unterminated block.
        (
            "port: 4222\nauthorization {\n  user: a\n",
            "t.conf:2:15: Parse error on line 4: 'Unexpected EOF processing map.'",
        ),
        // Bad key/value.
        (
            "port: 4222\nfoo = = bar\n",
            "t.conf:2:9: Parse error on line 2: 'Expected a top-level value to end with a new line, comment or EOF, but got 'b' instead.'",
        ),
        // Unbalanced quote.
        (
            "port: 4222\nserver_name: \"abc\n",
            "t.conf:2:14: Parse error on line 3: 'Unexpected EOF.'",
        ),
        // Missing include: nats' `error parsing include file '…', open …`.
        (
            "port: 4222\ninclude ./nope.conf\n",
            "t.conf:2:9: error parsing include file './nope.conf', open NOPE: no such file or directory",
        ),
        // Bad number (a lexer error in nats too).
        (
            "port: 4222\nmax_payload: 1.x\n",
            "t.conf:2:16: Parse error on line 2: 'Floats must have a digit after the '.', but got 'x' instead.'",
        ),
    ];
    let path = dir.path().join("t.conf");
    let nope = dir.path().join("nope.conf");
    for (src, want) in cases {
        std::fs::write(&path, src).unwrap();
        let e = parse_file_with_env(&path, &no_env).unwrap_err().to_string();
        let want = want
            .replace("t.conf", &path.display().to_string())
            .replace("NOPE", &nope.display().to_string());
        assert_eq!(e, want, "input {src:?}");
    }
    // A missing file: nats-server says `open <path>: no such file or
    // directory`.
    let e = parse_file_with_env(&nope, &no_env).unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "error opening config file: open {}: no such file or directory",
            nope.display()
        )
    );
}

#[test]
fn error_api() {
    let e = parse_str_with_env("a: [", Path::new("/etc/nats/nats.conf"), &no_env).unwrap_err();
    let pos = e.pos().unwrap();
    assert_eq!((pos.line, pos.col), (1, 4));
    assert_eq!(e.message(), "Unexpected EOF processing array.");
    assert_eq!(
        e.to_string(),
        "/etc/nats/nats.conf:1:4: Parse error on line 1: 'Unexpected EOF processing array.'"
    );
}

#[test]
fn unknown_keys() {
    let v = parse(
        "port: 4222\nfoo: 1\nPORT: 2\nHTTP_PORT: 8222\nUSED = 3\nUNUSED = 4\n\
         max_payload: $USED\nm { bar: 1 }\njetstream { store_dir: x }\n",
    );
    let unknown: Vec<_> = unknown_top_level_keys(&v)
        .into_iter()
        .map(|(p, k)| (p.line, p.col, k))
        .collect();
    assert_eq!(
        unknown,
        [
            (2, 1, "foo".to_string()),
            (6, 1, "UNUSED".into()),
            (8, 1, "m".into())
        ]
    );
    let (pos, key) = &unknown_top_level_keys(&v)[0];
    assert_eq!(
        unknown_field_error(pos, key).to_string(),
        "t.conf:2:1: unknown field \"foo\""
    );
    assert!(is_known_top_level_key("Leafnodes"));
    assert!(unknown_top_level_keys(&Value::new(ValueKind::Int(1), v.pos.clone())).is_empty());
}

#[test]
fn whitespace_oddities() {
    // Key and separator on different lines, CRLF files, tabs, BOM.
    let v = parse("a\n= 1\r\nb:\t2\r\n");
    assert_eq!(kind(&v, "a"), &ValueKind::Int(1));
    assert_eq!(kind(&v, "b"), &ValueKind::Int(2));
    let v = parse("\u{feff}port: 1\r\nm {\r\n  x: y\r\n}\r\n");
    assert_eq!(v.get("m").unwrap().get("x").unwrap().kind, s("y"));
    // A stray '}' closing the file is tolerated, as in nats.
    assert_eq!(
        kind(&parse("\"port\": 1\n} # end\n"), "port"),
        &ValueKind::Int(1)
    );
    // `key =` at the very end is an empty string, as in nats.
    assert_eq!(kind(&parse("a ="), "a"), &s(""));
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let src = format!("a: {}{}", "[".repeat(10_000), "]".repeat(10_000));
    assert!(fail(&src).contains("nested deeper"));
    let src = format!("a: {}", "{b: ".repeat(10_000));
    assert!(fail(&src).contains("nested deeper"));
}

#[test]
fn nats_conf_package_cases() {
    // Forms exercised by nats-server's own conf tests.
    let v = parse("{\n  {\n    listen: 0.0.0.0:4222 // c\n  }\n  # w1\n}\n# w2\n");
    assert_eq!(kind(&v, "listen"), &s("0.0.0.0:4222"));
    let v = parse("\naccounts { users = [{}]}\n}\n");
    assert_eq!(
        v.get("accounts")
            .unwrap()
            .get("users")
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let v = parse(
        "{\n  \"jetstream\": {\n    \"store_dir\": \"/tmp/nats\"\n    \"max_mem\": 1000000,\n  },\n  \
         \"port\": 4222,\n  \"server_name\": \"nats1\"\n}\n",
    );
    assert_eq!(
        v.get("jetstream").unwrap().get("max_mem").unwrap().as_int(),
        Some(1_000_000)
    );
    assert_eq!(kind(&v, "server_name"), &s("nats1"));
    let v = parse("{\n  \"debug\":              False\n  \"prof_port\":          8221\n}\n");
    assert_eq!(kind(&v, "debug"), &ValueKind::Bool(false));
    for src in ["{}", "\n{\n# c\n}\n", "", "\n\n   \n", "# c\n# d\n"] {
        assert!(parse(src).as_map().unwrap().is_empty(), "{src:?}");
    }
    for src in [
        "aaaaaaaaa",
        "     aaaa     ",
        "\n# c\n  aaaa\n   ",
        "\n  a,a,a,a\n  ",
    ] {
        assert!(fail(src).contains("has no value"), "{src:?}");
    }
    let env = [("A", "3Gyz"), ("B", "'3xyz'"), ("C", "22")];
    let v = parse_env("a = $A\nb = $B\nc = $C\n", &env).unwrap();
    assert_eq!(kind(&v, "a"), &s("3Gyz"));
    assert_eq!(kind(&v, "b"), &s("3xyz"));
    assert_eq!(kind(&v, "c"), &ValueKind::Int(22));
    let v = parse(
        "k = 8k\nkb = 4kb\nki = 3ki\nkib = 4kib\nm = 1m\nmib = 64MiB\ng = 2g\ngi = 22Gi\n\
         tb = 22TB\npib = 22PiB\n",
    );
    assert_eq!(kind(&v, "k"), &ValueKind::Int(8000));
    assert_eq!(kind(&v, "kb"), &ValueKind::Int(4096));
    assert_eq!(kind(&v, "ki"), &ValueKind::Int(3072));
    assert_eq!(kind(&v, "kib"), &ValueKind::Int(4096));
    assert_eq!(kind(&v, "m"), &ValueKind::Int(1_000_000));
    assert_eq!(kind(&v, "mib"), &ValueKind::Int(64 << 20));
    assert_eq!(kind(&v, "g"), &ValueKind::Int(2_000_000_000));
    assert_eq!(kind(&v, "gi"), &ValueKind::Int(22 << 30));
    assert_eq!(kind(&v, "tb"), &ValueKind::Int(22 << 40));
    assert_eq!(kind(&v, "pib"), &ValueKind::Int(22 << 50));
}

#[test]
fn nats_server_test_configs_parse() {
    // nats-server's reference test configs use these forms together.
    let v = parse(
        "# Cluster Seed Node\n\nlisten: 127.0.0.1:4222\nhttp: 8222\n\ncluster {\n  \
         listen: 127.0.0.1:4248\n  name: xyz\n\n  authorization {\n    user: ruser\n    \
         password: T0PS3cr3T!\n    timeout: 1\n  }\n  routes = [\n    nats-route://ruser:T0PS3cr3T!@127.0.0.1:4244\n  ]\n}\n\
         tls {\n  cert_file: \"./configs/certs/server.pem\"\n  key_file:  './configs/certs/key.pem'\n  \
         timeout: 0.5\n  cipher_suites: [\n    \"TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384\",\n  ]\n}\n",
    );
    let cluster = v.get("cluster").unwrap();
    assert_eq!(
        cluster
            .get("authorization")
            .unwrap()
            .get("password")
            .unwrap()
            .kind,
        s("T0PS3cr3T!")
    );
    let routes = cluster.get("routes").unwrap().as_array().unwrap();
    assert_eq!(
        routes[0].kind,
        s("nats-route://ruser:T0PS3cr3T!@127.0.0.1:4244")
    );
    assert_eq!(
        v.get("tls").unwrap().get("timeout").unwrap().kind,
        ValueKind::Float(0.5)
    );
    assert_eq!(kind(&v, "http"), &ValueKind::Int(8222));
}

#[test]
fn exponential_variable_expansion_is_refused() {
    let mut src = String::from("A0 = [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n");
    for i in 1..12 {
        let prev = format!("$A{}", i - 1);
        src.push_str(&format!("A{i} = [{}]\n", [prev.as_str(); 10].join(", ")));
    }
    assert!(fail(&src).contains("expand to more than"));
}
