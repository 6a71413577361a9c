//! What the broker does with one accepted connection: runs the shared request
//! loop with the broker's routes.
//!
//! Never holds a registry lock across I/O.

use super::Shared;
use super::route::{self, Action};
use crate::log;
use crate::server::{self, Reply};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering;

/// Serves one connection until it closes.
pub(super) fn serve(stream: TcpStream, peer: SocketAddr, shared: &Shared) {
    log::debug!("connection from {peer}");
    let settings = server::Settings {
        limits: shared.config.limits,
        idle_timeout: shared.config.idle_timeout,
        write_timeout: shared.config.delivery_timeout,
    };
    let keep_going = || !shared.stopping.load(Ordering::Relaxed);
    let mut handle = |head: &crate::http::RequestHead, body: &[u8]| {
        if shared.stopping.load(Ordering::SeqCst) {
            // Stopping: nothing new is taken, and the peer is told so.
            let mut reply = Reply::status(503, "broker shutting down");
            reply.close = true;
            return reply;
        }
        match route::route(&head.method, head.path(), body) {
            Ok(action) => execute(action, peer, shared),
            Err(reject) => Reply::status(reject.status, reject.reason),
        }
    };
    match server::serve(stream, &settings, &keep_going, &mut handle) {
        Ok(()) => log::debug!("connection from {peer} closed"),
        Err(e) => log::debug!("connection from {peer} closed: {e}"),
    }
}

fn execute(action: Action, peer: SocketAddr, shared: &Shared) -> Reply {
    let registry = &shared.registry;
    // An IPv4 peer of a dual-stack listener shows as ::ffff:a.b.c.d; key and
    // call it back as the IPv4 address it is.
    let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
    match action {
        Action::Publish { topic, data } => {
            registry.publish(&topic, &data);
        }
        Action::Subscribe { topic, port } => {
            let endpoint = SocketAddr::new(peer.ip(), port);
            if let Err(e) = registry.subscribe(&topic, endpoint) {
                log::warning!(
                    "subscription of {endpoint} to {topic:?} refused: cannot start a thread: {e}"
                );
                return Reply::status(503, "broker busy: cannot start a delivery thread");
            }
            log::debug!("{endpoint} subscribed to {topic:?}");
        }
        Action::Heartbeat { port } => {
            registry.heartbeat(peer.ip(), port);
        }
    }
    Reply::accepted()
}
