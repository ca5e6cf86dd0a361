//! A shard's life: join the mesh, start the links, then serve control
//! messages (new connections, monitoring queries, lame duck, shutdown).

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use super::link::{run_sender, Batch};
use super::Shard;
use crate::global::{Ctl, Global};
use crate::runtime::{self, Mesh};

pub async fn run(g: Arc<Global>, mesh: Mesh<Batch>) {
    let (senders, mut receivers) = match mesh.join().await {
        Ok(x) => x,
        Err(_) => {
            tracing::error!(target: "fatal", "shard failed to join the channel mesh");
            return;
        }
    };
    let id = senders.peer_id();
    let shard = Rc::new(Shard::new(id, g.clone()));
    let senders = Rc::new(senders);
    let mut tasks = Vec::new();
    for peer in 0..g.shards {
        if let Some(link) = shard.link(peer) {
            tasks.push(runtime::spawn_local(run_sender(
                link.clone(),
                senders.clone(),
                peer,
            )));
        }
    }
    for (_, rx) in receivers.streams() {
        let shard = shard.clone();
        tasks.push(runtime::spawn_local(async move {
            while let Some(batch) = rx.recv().await {
                for item in batch {
                    shard.receive(item);
                }
            }
        }));
    }
    let ctl = g.ctl_rx[id].clone();
    while let Ok(msg) = ctl.recv().await {
        match msg {
            Ctl::NewClient(fd, addr) => crate::client::accept(&shard, fd, addr),
            Ctl::NewHttp(fd, addr) => crate::monitor::serve(&shard, fd, addr),
            Ctl::Gather(q, reply) => {
                let _ = reply.send(crate::monitor::gather::report(&shard, &q));
            }
            Ctl::LameDuck => lame_duck(&shard),
            Ctl::Shutdown => break,
        }
    }
    let clients: Vec<_> = shard.clients.borrow().values().cloned().collect();
    for c in clients {
        c.close(crate::client::CloseReason::ServerShutdown);
    }
    // Give writers a moment to flush and sockets to close.
    runtime::sleep(Duration::from_millis(50)).await;
    for link in (0..g.shards).filter_map(|p| shard.link(p)) {
        link.close();
    }
    senders.close();
    drop(tasks);
}

/// Tells every client we are going away (INFO with `ldm`), then closes them
/// spread over the lame-duck duration, after the grace period.
fn lame_duck(shard: &Rc<Shard>) {
    let clients: Vec<_> = shard.clients.borrow().values().cloned().collect();
    for c in &clients {
        c.send_info(true);
    }
    let opts = &shard.g.opts;
    let grace = opts.lame_duck_grace_period;
    let window = opts.lame_duck_duration.saturating_sub(grace);
    runtime::spawn_local(async move {
        runtime::sleep(grace).await;
        let n = clients.len().max(1) as u32;
        let step = window / n;
        for c in clients {
            c.close(crate::client::CloseReason::ServerShutdown);
            if !step.is_zero() {
                runtime::sleep(step).await;
            }
        }
    })
    .detach();
}
