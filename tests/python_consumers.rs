//! JetStream consumers and KV with the Python client (nats-py): runs
//! `tests/py/test_consumers.py` (pull fetch/ack/nak, push subscribe, KV
//! put/get/update/watch) against a server started with `-js` on a fresh
//! store directory. When nats-py is not installed the test prints a skip
//! message and passes (scripts/test and CI install it).
//!
//!     BROKER_EDGE_BIN=$PWD/target/refs/bin/nats-server-2.15.3 \
//!         cargo test -p broker-edge --test python_consumers

mod common;

use std::time::Duration;

use common::Server;

#[tokio::test]
async fn nats_py_consumers_and_kv() {
    if !common::have_nats_py() {
        eprintln!("skipped: nats-py is not installed (python3 -m pip install nats-py)");
        return;
    }
    let s = Server::start_js(&[]);
    common::run_py_script(
        "test_consumers.py",
        &[s.url()],
        &[&s],
        Duration::from_secs(60),
    )
    .await;
}
