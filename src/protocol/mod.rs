//! The NATS client wire protocol: parsing what clients send and the JSON
//! bodies exchanged in INFO/CONNECT.

pub mod info;
pub mod parser;

pub use parser::{parse, ClientOp, Limits, ParseError, Parsed};
