//! `/leafz`: the leaf-node links, as nats-server shows them (asked of the
//! shard that owns every link).

use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use crate::shard::Shard;

pub async fn leafz(shard: &Rc<Shard>, params: &HashMap<String, String>) -> Result<Value, String> {
    let subs = params
        .get("subs")
        .is_some_and(|v| matches!(v.as_str(), "1" | "true" | "detail"));
    let acc = params.get("acc").cloned();
    let g = shard.g.clone();
    let leafs = crate::shard::bus::call(&g, crate::leaf::home(&g), move |s| async move {
        links(&s, subs, acc.as_deref())
    })
    .await
    .unwrap_or_default();
    Ok(json!({
        "server_id": g.server_id,
        "now": super::endpoints::rfc3339(SystemTime::now()),
        "leafnodes": leafs.len(),
        "leafs": leafs,
    }))
}

fn links(s: &Shard, subs: bool, acc: Option<&str>) -> Vec<Value> {
    let accounts = &s.g.accounts;
    let mut out = Vec::new();
    for c in s.leafs.borrow().iter() {
        let Some(l) = &c.leaf else { continue };
        let account = accounts.name(c.account());
        if acc.is_some_and(|a| a != account) {
            continue;
        }
        let mut v = json!({
            "id": c.cid,
            "name": *l.remote_server.borrow(),
            "is_spoke": l.spoke.get(),
            "account": account,
            "ip": c.addr.ip().to_string(),
            "port": c.addr.port(),
            "rtt": rtt(l.rtt.get().unwrap_or_default()),
            "in_msgs": c.counters.in_msgs.get(),
            "out_msgs": c.counters.out_msgs.get(),
            "in_bytes": c.counters.in_bytes.get(),
            "out_bytes": c.counters.out_bytes.get(),
            "subscriptions": c.subs.borrow().len(),
            "compression": "not supported",
        });
        if subs {
            let mut list: Vec<String> = c
                .subs
                .borrow()
                .values()
                .map(|s| String::from_utf8_lossy(&s.0.subject).into_owned())
                .collect();
            list.sort();
            v["subscriptions_list"] = json!(list);
        }
        out.push(v);
    }
    out
}

/// A round trip as the reference prints it: whole microseconds below a
/// millisecond, Go's `Duration` form above.
fn rtt(d: Duration) -> String {
    let trim = |s: String| s.trim_end_matches('0').trim_end_matches('.').to_string();
    if d < Duration::from_millis(1) {
        format!("{}µs", d.as_micros())
    } else if d < Duration::from_secs(1) {
        format!("{}ms", trim(format!("{:.6}", d.as_nanos() as f64 / 1e6)))
    } else {
        format!("{}s", trim(format!("{:.9}", d.as_secs_f64())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtt_like_go() {
        assert_eq!(rtt(Duration::from_micros(404)), "404µs");
        assert_eq!(rtt(Duration::from_nanos(1_234_500)), "1.2345ms");
        assert_eq!(rtt(Duration::from_millis(2)), "2ms");
        assert_eq!(rtt(Duration::from_millis(1500)), "1.5s");
    }
}
