//! Credentials on both ends of a leaf link: checking a leaf's CONNECT on
//! the accepting side (`leafnodes { authorization }`, else the server's
//! own users, as the reference), and what a soliciting side presents
//! (URL user info, user/password, nkey seed, creds file).

use base64::Engine;

use super::conn::LeafConnect;
use crate::client::Client;
use crate::options::RemoteLeafOpts;
use crate::runtime;

/// Checks an accepted link's CONNECT; the account it binds to, or None.
pub async fn authenticate(c: &Client, conn: &LeafConnect) -> Option<u32> {
    let g = &c.g;
    let opts = g.opts.leafnodes.as_ref()?;
    let a = &opts.auth;
    let (account, ok) = if let Some(user) = &a.user {
        let ok = conn.user.as_deref() == Some(user.as_str())
            && password_ok(a.password.as_deref(), conn.pass.as_deref()).await;
        (a.account.clone(), ok)
    } else if !a.users.is_empty() {
        match a
            .users
            .iter()
            .find(|u| conn.user.as_deref() == Some(u.user.as_str()))
        {
            Some(u) => (
                u.account.clone(),
                password_ok(u.password.as_deref(), conn.pass.as_deref()).await,
            ),
            None => (None, false),
        }
    } else {
        let connect = crate::protocol::info::Connect {
            user: conn.user.clone(),
            pass: conn.pass.clone(),
            auth_token: conn.auth_token.clone(),
            nkey: conn.nkey.clone(),
            sig: conn.sig.clone(),
            jwt: conn.jwt.clone(),
            ..Default::default()
        };
        let auth = g.auth();
        let nonce = c.nonce.clone();
        let r = if auth.is_slow(&connect) {
            runtime::blocking(move || {
                auth.authenticate_as(&connect, nonce.as_deref().map(str::as_bytes), "LEAFNODE")
            })
            .await
        } else {
            auth.authenticate_as(&connect, nonce.as_deref().map(str::as_bytes), "LEAFNODE")
        };
        match r {
            Ok(authed) => {
                let acc = authed.account.clone();
                *c.who.borrow_mut() = Some(authed);
                (Some(acc), true)
            }
            Err(_) => (None, false),
        }
    };
    if !ok {
        return None;
    }
    g.accounts
        .id(account.as_deref().unwrap_or(crate::account::GLOBAL))
}

/// A configured password (plain or bcrypt) against the one given.
async fn password_ok(expected: Option<&str>, given: Option<&str>) -> bool {
    let Some(expected) = expected else {
        return true;
    };
    let given = given.unwrap_or_default().to_string();
    if expected.starts_with("$2") {
        let hash = expected.to_string();
        return runtime::blocking(move || bcrypt::verify(given, &hash).unwrap_or(false)).await;
    }
    constant_time_eq(expected.as_bytes(), given.as_bytes())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Fills the credentials of a soliciting side's CONNECT: the creds file
/// (user JWT and the nonce signed with its seed), an nkey seed, and user,
/// password or token from the URL or the remote's own keys.
pub fn credentials(
    r: &RemoteLeafOpts,
    url_user: Option<(String, Option<String>)>,
    nonce: Option<&str>,
    conn: &mut LeafConnect,
) -> Result<(), String> {
    let sign = |seed: &str| -> Result<(String, Option<String>), String> {
        let kp =
            nkeys::KeyPair::from_seed(seed.trim()).map_err(|e| format!("bad nkey seed: {e}"))?;
        let sig = match nonce {
            Some(n) => Some(
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .encode(kp.sign(n.as_bytes()).map_err(|e| e.to_string())?),
            ),
            None => None,
        };
        Ok((kp.public_key(), sig))
    };
    if let Some(path) = &r.credentials {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("credentials file {}: {e}", path.display()))?;
        let (jwt, seed) = parse_creds(&text)
            .ok_or_else(|| format!("credentials file {} malformed", path.display()))?;
        conn.jwt = Some(jwt);
        conn.sig = sign(&seed)?.1;
    } else if let Some(seed) = &r.nkey {
        let (public, sig) = sign(seed)?;
        conn.nkey = Some(public);
        conn.sig = sig;
    }
    let (user, pass) = match url_user {
        Some((u, p)) => (Some(u), p),
        None => (r.user.clone(), r.password.as_deref().map(str::to_string)),
    };
    if let Some(u) = user {
        // A user without a password doubles as a token (as the reference).
        if pass.is_none() {
            conn.auth_token = Some(u.clone());
        }
        conn.user = Some(u);
        conn.pass = pass;
    }
    Ok(())
}

/// The user JWT and seed of a `.creds` file: the first line after each of
/// the first two `-----BEGIN` markers.
fn parse_creds(text: &str) -> Option<(String, String)> {
    let mut found = Vec::new();
    let mut lines = text.lines();
    while let Some(l) = lines.next() {
        if l.trim_start().starts_with("-----BEGIN") {
            let v = lines.by_ref().map(str::trim).find(|x| !x.is_empty())?;
            found.push(v.to_string());
            if found.len() == 2 {
                break;
            }
        }
    }
    let mut it = found.into_iter();
    Some((it.next()?, it.next()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creds_file() {
        let text = "-----BEGIN NATS USER JWT-----\neyJ0.a.b\n------END NATS USER JWT------\n\n***** IMPORTANT *****\n\n-----BEGIN USER NKEY SEED-----\nSUAX\n------END USER NKEY SEED------\n";
        assert_eq!(parse_creds(text), Some(("eyJ0.a.b".into(), "SUAX".into())));
        assert_eq!(parse_creds("nothing"), None);
    }

    #[test]
    fn user_without_password_is_a_token_too() {
        let mut c = LeafConnect::default();
        credentials(
            &RemoteLeafOpts::default(),
            Some(("tok".into(), None)),
            None,
            &mut c,
        )
        .unwrap();
        assert_eq!(
            (c.user.as_deref(), c.auth_token.as_deref()),
            (Some("tok"), Some("tok"))
        );
        let mut c = LeafConnect::default();
        credentials(
            &RemoteLeafOpts::default(),
            Some(("u".into(), Some("p".into()))),
            None,
            &mut c,
        )
        .unwrap();
        assert_eq!((c.pass.as_deref(), c.auth_token), (Some("p"), None));
    }
}
