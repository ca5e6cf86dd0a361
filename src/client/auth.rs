//! Client authentication for the command-line forms (`--user`/`--pass`,
//! `--auth`). The configuration-file forms build on this.

use crate::options::Options;
use crate::protocol::info::Connect;

pub fn required(opts: &Options) -> bool {
    opts.username.is_some() || opts.auth_token.is_some()
}

/// Checks CONNECT credentials. Compares in constant time so a wrong guess
/// takes as long as a near miss.
pub fn check(opts: &Options, c: &Connect) -> bool {
    if let Some(token) = &opts.auth_token {
        return eq(c.auth_token.as_deref().unwrap_or(""), token);
    }
    if let Some(user) = &opts.username {
        let pass = opts.password.as_deref().unwrap_or("");
        return eq(c.user.as_deref().unwrap_or(""), user)
            & eq(c.pass.as_deref().unwrap_or(""), pass);
    }
    true
}

fn eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_pass_and_token() {
        let mut o = Options::default();
        let mut c = Connect::default();
        assert!(check(&o, &c));
        o.username = Some("u".into());
        o.password = Some("p".into());
        assert!(!check(&o, &c));
        c.user = Some("u".into());
        c.pass = Some("p".into());
        assert!(check(&o, &c));
        c.pass = Some("x".into());
        assert!(!check(&o, &c));
        let o = Options {
            auth_token: Some("t".into()),
            ..Options::default()
        };
        assert!(!check(&o, &c));
        c.auth_token = Some("t".into());
        assert!(check(&o, &c));
    }
}
