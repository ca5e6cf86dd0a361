//! JetStream with the Python client (nats-py): runs `tests/py/
//! test_jetstream.py` against a server started with `-js` on a fresh store
//! directory (the same way as `python_clients.rs`). When nats-py is not
//! installed the test prints a skip message and passes (scripts/test and CI
//! install it).
//!
//!     BROKER_EDGE_BIN=$PWD/target/refs/bin/nats-server-2.15.3 \
//!         cargo test -p broker-edge --test python_jetstream

mod common;

use std::time::Duration;

use common::Server;

#[tokio::test]
async fn nats_py_jetstream_streams() {
    if !common::have_nats_py() {
        eprintln!("skipped: nats-py is not installed (python3 -m pip install nats-py)");
        return;
    }
    let s = Server::start_js(&[]);
    common::run_py_script(
        "test_jetstream.py",
        &[s.url()],
        &[&s],
        Duration::from_secs(60),
    )
    .await;
}
