//! Go `time.ParseDuration` syntax ("300ms", "1h30m", "-1.5s"), which is what
//! nats-server uses for every duration option, so the same strings mean the
//! same thing here. Errors are worded like Go's so messages match the
//! reference server.

use std::time::Duration;

const NS: u64 = 1;
const US: u64 = 1_000;
const MS: u64 = 1_000_000;
const SEC: u64 = 1_000_000_000;
const MIN: u64 = 60 * SEC;
const HOUR: u64 = 60 * MIN;

/// Largest magnitude Go allows (a negative duration may reach -2^63).
const LIMIT: u64 = 1 << 63;

fn unit_nanos(unit: &str) -> Option<u64> {
    Some(match unit {
        "ns" => NS,
        // Go accepts ASCII "us", U+00B5 (micro sign) and U+03BC (Greek mu).
        "us" | "\u{b5}s" | "\u{3bc}s" => US,
        "ms" => MS,
        "s" => SEC,
        "m" => MIN,
        "h" => HOUR,
        _ => return None,
    })
}

fn invalid(orig: &str) -> String {
    format!("time: invalid duration {orig:?}")
}

/// Parse a Go duration into signed nanoseconds.
pub fn parse_go_duration_nanos(orig: &str) -> Result<i64, String> {
    let mut s = orig;
    let mut neg = false;
    if let Some(rest) = s.strip_prefix('-') {
        neg = true;
        s = rest;
    } else if let Some(rest) = s.strip_prefix('+') {
        s = rest;
    }
    // "0" is the only unit-less value Go accepts.
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(invalid(orig));
    }
    let mut total: u64 = 0;
    while !s.is_empty() {
        let b = s.as_bytes();
        if !(b[0] == b'.' || b[0].is_ascii_digit()) {
            return Err(invalid(orig));
        }
        // Integer part; overflow is an error as in Go.
        let int_len = b.iter().take_while(|c| c.is_ascii_digit()).count();
        let mut v: u64 = 0;
        for &c in &b[..int_len] {
            v = v
                .checked_mul(10)
                .and_then(|x| x.checked_add(u64::from(c - b'0')))
                .filter(|x| *x <= LIMIT)
                .ok_or_else(|| invalid(orig))?;
        }
        s = &s[int_len..];
        let pre = int_len > 0;
        // Fraction part: digits beyond u64 precision are dropped, not an error.
        let mut frac: u64 = 0;
        let mut scale: f64 = 1.0;
        let mut post = false;
        if let Some(rest) = s.strip_prefix('.') {
            s = rest;
            let fb = s.as_bytes();
            let flen = fb.iter().take_while(|c| c.is_ascii_digit()).count();
            let mut overflow = false;
            for &c in &fb[..flen] {
                if overflow {
                    continue;
                }
                match frac
                    .checked_mul(10)
                    .and_then(|x| x.checked_add(u64::from(c - b'0')))
                    .filter(|x| *x <= LIMIT)
                {
                    Some(x) => {
                        frac = x;
                        scale *= 10.0;
                    }
                    None => overflow = true,
                }
            }
            s = &s[flen..];
            post = flen > 0;
        }
        if !pre && !post {
            return Err(invalid(orig));
        }
        let ulen = s
            .char_indices()
            .find(|(_, c)| *c == '.' || c.is_ascii_digit())
            .map(|(i, _)| i)
            .unwrap_or(s.len());
        if ulen == 0 {
            return Err(format!("time: missing unit in duration {orig:?}"));
        }
        let unit_str = &s[..ulen];
        s = &s[ulen..];
        let unit = unit_nanos(unit_str)
            .ok_or_else(|| format!("time: unknown unit {unit_str:?} in duration {orig:?}"))?;
        if v > LIMIT / unit {
            return Err(invalid(orig));
        }
        v *= unit;
        if frac > 0 {
            // Same float arithmetic as Go, so rounding matches.
            v = v
                .checked_add((frac as f64 * (unit as f64 / scale)) as u64)
                .filter(|x| *x <= LIMIT)
                .ok_or_else(|| invalid(orig))?;
        }
        total = total
            .checked_add(v)
            .filter(|x| *x <= LIMIT)
            .ok_or_else(|| invalid(orig))?;
    }
    if neg {
        // -2^63 is representable; everything smaller was rejected above.
        Ok((total as i128).wrapping_neg() as i64)
    } else if total > i64::MAX as u64 {
        Err(invalid(orig))
    } else {
        Ok(total as i64)
    }
}

/// Parse a non-negative Go duration.
pub fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let n = parse_go_duration_nanos(s)?;
    if n < 0 {
        return Err(format!("negative duration {s:?} is not allowed"));
    }
    Ok(Duration::from_nanos(n as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_examples() {
        let ok = [
            ("0", 0i64),
            ("5s", 5 * SEC as i64),
            ("30s", 30 * SEC as i64),
            ("1478s", 1478 * SEC as i64),
            ("-5s", -5 * SEC as i64),
            ("+5s", 5 * SEC as i64),
            ("-0", 0),
            ("5.0s", 5 * SEC as i64),
            ("5.6s", 5 * SEC as i64 + 600 * MS as i64),
            ("5.s", 5 * SEC as i64),
            (".5s", 500 * MS as i64),
            ("1.004s", SEC as i64 + 4 * MS as i64),
            ("100.00100s", 100 * SEC as i64 + MS as i64),
            ("10ns", 10),
            ("11us", 11 * US as i64),
            ("12\u{b5}s", 12 * US as i64),
            ("12\u{3bc}s", 12 * US as i64),
            ("13ms", 13 * MS as i64),
            ("15m", 15 * MIN as i64),
            ("16h", 16 * HOUR as i64),
            ("3h30m", 3 * HOUR as i64 + 30 * MIN as i64),
            (
                "10.5s4m",
                4 * MIN as i64 + 10 * SEC as i64 + 500 * MS as i64,
            ),
            (
                "-2m3.4s",
                -(2 * MIN as i64 + 3 * SEC as i64 + 400 * MS as i64),
            ),
            ("1h2m3s4ms5us6ns", 3_723_004_005_006),
            ("39h9m14.425s", 140_954_425_000_000),
            ("52763797000ns", 52_763_797_000),
            ("0.3333333333333333333h", 20 * MIN as i64),
            ("9007199254740993ns", 9_007_199_254_740_993),
            ("9223372036854775807ns", i64::MAX),
            ("-9223372036854775808ns", i64::MIN),
            ("0.100000000000000000000h", 6 * MIN as i64),
        ];
        for (s, want) in ok {
            assert_eq!(parse_go_duration_nanos(s), Ok(want), "{s}");
        }
    }

    #[test]
    fn go_errors() {
        for s in [
            "",
            "3",
            "-",
            "s",
            ".",
            "-.",
            ".s",
            "+.s",
            "1d",
            "\u{85}\u{85}",
            "\u{ffff}",
            "9223372036854775808ns",
            "9223372036854775810ns",
            "-9223372036854775809ns",
            "3000000h",
        ] {
            assert!(parse_go_duration_nanos(s).is_err(), "{s:?} should fail");
        }
        assert_eq!(
            parse_go_duration_nanos("3").unwrap_err(),
            "time: missing unit in duration \"3\""
        );
        assert_eq!(
            parse_go_duration_nanos("1d").unwrap_err(),
            "time: unknown unit \"d\" in duration \"1d\""
        );
        assert_eq!(
            parse_go_duration_nanos("x").unwrap_err(),
            "time: invalid duration \"x\""
        );
    }

    #[test]
    fn std_duration() {
        assert_eq!(parse_go_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_go_duration("-1s").is_err());
    }
}
