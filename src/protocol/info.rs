//! The JSON bodies of INFO (server → client) and CONNECT (client → server).

use serde::{Deserialize, Serialize};

/// The NATS feature level this server implements; clients and test suites
/// gate features on it. The product's own version is `broker_edge_version`.
pub const NATS_VERSION: &str = "2.10.0";
pub const PRODUCT_VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Debug, Clone, Serialize)]
pub struct Info {
    pub server_id: String,
    pub server_name: String,
    pub version: String,
    pub proto: u32,
    pub go: String,
    pub host: String,
    pub port: u16,
    pub headers: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub auth_required: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tls_required: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tls_verify: bool,
    pub max_payload: usize,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub jetstream: bool,
    pub client_id: u64,
    pub client_ip: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub connect_urls: Vec<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub ldm: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    pub broker_edge_version: String,
    /// The INFO sent after the first PONG to a client in the system
    /// account (see `system`): its account, and that it is the system
    /// account (`nats account info` shows it).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub connect_info: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_account: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub acc_is_sys: bool,
}

impl Info {
    pub fn to_line(&self) -> Vec<u8> {
        let mut out = b"INFO ".to_vec();
        // Serialising a plain struct of strings and numbers cannot fail.
        serde_json::to_writer(&mut out, self).unwrap_or_default();
        // The reference ends INFO with " \r\n"; some clients match on it.
        out.extend_from_slice(b" \r\n");
        out
    }
}

/// CONNECT options. Fields a client leaves out (or sends as `null`, as
/// some clients do) keep the reference's defaults: verbose and pedantic stay
/// on unless turned off.
#[derive(Debug, Clone, Deserialize)]
#[serde(from = "RawConnect")]
pub struct Connect {
    pub verbose: bool,
    pub pedantic: bool,
    pub tls_required: bool,
    pub name: String,
    pub lang: String,
    pub version: String,
    pub protocol: i32,
    pub echo: bool,
    pub headers: bool,
    pub no_responders: bool,
    pub user: Option<String>,
    pub pass: Option<String>,
    pub auth_token: Option<String>,
    pub nkey: Option<String>,
    pub sig: Option<String>,
    pub jwt: Option<String>,
}

/// The wire form: every field optional and nullable.
#[derive(Deserialize)]
struct RawConnect {
    verbose: Option<bool>,
    pedantic: Option<bool>,
    tls_required: Option<bool>,
    name: Option<String>,
    lang: Option<String>,
    version: Option<String>,
    protocol: Option<i32>,
    echo: Option<bool>,
    headers: Option<bool>,
    no_responders: Option<bool>,
    user: Option<String>,
    pass: Option<String>,
    auth_token: Option<String>,
    nkey: Option<String>,
    sig: Option<String>,
    jwt: Option<String>,
}

impl From<RawConnect> for Connect {
    fn from(r: RawConnect) -> Connect {
        Connect {
            verbose: r.verbose.unwrap_or(true),
            pedantic: r.pedantic.unwrap_or(true),
            tls_required: r.tls_required.unwrap_or(false),
            name: r.name.unwrap_or_default(),
            lang: r.lang.unwrap_or_default(),
            version: r.version.unwrap_or_default(),
            protocol: r.protocol.unwrap_or(0),
            echo: r.echo.unwrap_or(true),
            headers: r.headers.unwrap_or(false),
            no_responders: r.no_responders.unwrap_or(false),
            user: r.user,
            pass: r.pass,
            auth_token: r.auth_token,
            nkey: r.nkey,
            sig: r.sig,
            jwt: r.jwt,
        }
    }
}

impl Default for Connect {
    fn default() -> Self {
        Connect {
            verbose: true,
            pedantic: true,
            tls_required: false,
            name: String::new(),
            lang: String::new(),
            version: String::new(),
            protocol: 0,
            echo: true,
            headers: false,
            no_responders: false,
            user: None,
            pass: None,
            auth_token: None,
            nkey: None,
            sig: None,
            jwt: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_defaults_follow_reference() {
        let c: Connect = serde_json::from_str("{}").unwrap();
        assert!(c.verbose && c.pedantic && c.echo && !c.headers);
        let c: Connect =
            serde_json::from_str(r#"{"verbose":false,"headers":true,"name":"x","extra":1}"#)
                .unwrap();
        assert!(!c.verbose && c.headers);
        assert_eq!(c.name, "x");
        let c: Connect =
            serde_json::from_str(r#"{"name":null,"user":null,"echo":null,"verbose":false}"#)
                .unwrap();
        assert!(c.echo && c.name.is_empty() && c.user.is_none());
    }
}
