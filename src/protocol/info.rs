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

fn default_true() -> bool {
    true
}

/// CONNECT options. Fields a client leaves out keep the reference's
/// defaults (verbose and pedantic stay on unless turned off).
#[derive(Debug, Clone, Deserialize)]
pub struct Connect {
    #[serde(default = "default_true")]
    pub verbose: bool,
    #[serde(default = "default_true")]
    pub pedantic: bool,
    #[serde(default)]
    pub tls_required: bool,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub lang: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub protocol: i32,
    #[serde(default = "default_true")]
    pub echo: bool,
    #[serde(default)]
    pub headers: bool,
    #[serde(default)]
    pub no_responders: bool,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub pass: Option<String>,
    #[serde(default)]
    pub auth_token: Option<String>,
    #[serde(default)]
    pub nkey: Option<String>,
    #[serde(default)]
    pub sig: Option<String>,
    #[serde(default)]
    pub jwt: Option<String>,
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
    }
}
