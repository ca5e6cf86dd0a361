//! `broker_edge { … }`: Broker Edge's own settings, which nats-server does
//! not have (it would refuse the block as an unknown field): how many
//! shards and how clients fill them, whether shards are pinned to CPUs, and
//! the latency policy (the read spin and the idle pollers; see
//! docs/architecture.md, "Latency policy").

use super::{bool_of, duration, type_err, usize_of, Cx};
use crate::config::Entry;
use crate::options::Options;

pub(super) fn block(cx: &mut Cx, e: &Entry, o: &mut Options) {
    let Some(m) = e.value.as_map() else {
        return cx.push(type_err(e, "a map"));
    };
    for f in m {
        match f.key.to_ascii_lowercase().as_str() {
            "shards" => match cx.ok(usize_of(f)) {
                Some(0) => cx.push(f.key_pos.err("shards must be at least 1")),
                Some(n) => o.shards = Some(n),
                None => {}
            },
            "shard_fill" => match cx.ok(usize_of(f)) {
                Some(0) => cx.push(f.key_pos.err("shard_fill must be at least 1")),
                Some(n) => o.shard_fill = n,
                None => {}
            },
            "pin_shards" | "pin" => {
                if let Some(b) = cx.ok(bool_of(f)) {
                    o.tuning.pin_shards = b;
                }
            }
            "read_spin" => {
                if let Some(d) = cx.ok(duration(f)) {
                    o.tuning.read_spin = d;
                }
            }
            "spin_turn" => {
                if let Some(d) = cx.ok(duration(f)) {
                    o.tuning.spin_turn = d;
                }
            }
            "idle_poll" => {
                if let Some(b) = cx.ok(bool_of(f)) {
                    o.tuning.idle_poll = b;
                }
            }
            _ => cx.unknown(f),
        }
    }
}
