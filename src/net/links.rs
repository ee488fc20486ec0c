//! The connection manager's table: at most one live connection per
//! member, the tie-break when both dial at once, and each link's status
//! for `vigil peers`.

use quinn::{Connection, VarInt};
use std::collections::HashMap;
use std::sync::Mutex;
use tokio::sync::Notify;

use crate::proto::close;

/// The live state of the link to one member.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LinkStatus {
    pub id: String,
    pub connected: bool,
    pub since: Option<i64>,
    pub last_seen: Option<i64>,
    pub remote: Option<String>,
}

struct Link {
    conn: Connection,
    /// Initiated by the lower node id: the one that survives a tie.
    canonical: bool,
    since: i64,
}

/// The connection manager: at most one connection per member.
pub struct Links {
    me: String,
    map: Mutex<HashMap<String, Link>>,
    last_seen: Mutex<HashMap<String, i64>>,
    pub(super) changed: Notify,
}

impl Links {
    pub(super) fn new(me: &str) -> Links {
        Links {
            me: me.to_string(),
            map: Mutex::new(HashMap::new()),
            last_seen: Mutex::new(HashMap::new()),
            changed: Notify::new(),
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Link>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// True if a live connection to `peer` exists.
    pub fn connected(&self, peer: &str) -> bool {
        self.map()
            .get(peer)
            .is_some_and(|l| l.conn.close_reason().is_none())
    }

    pub(super) fn seen(&self, peer: &str) {
        self.last_seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(peer.to_string(), crate::time::now());
    }

    /// Status of the link to `peer`.
    pub fn status(&self, peer: &str) -> LinkStatus {
        let map = self.map();
        let live = map.get(peer).filter(|l| l.conn.close_reason().is_none());
        LinkStatus {
            id: peer.to_string(),
            connected: live.is_some(),
            since: live.map(|l| l.since),
            last_seen: self
                .last_seen
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(peer)
                .copied(),
            remote: live.map(|l| l.conn.remote_address().to_string()),
        }
    }

    /// Installs a new connection unless a canonical live one exists; when
    /// both nodes dial at once, the connection initiated by the lower id wins
    /// on both sides. Returns false if the new connection was refused.
    pub(super) fn install(&self, peer: &str, conn: &Connection, dialed_by_me: bool) -> bool {
        let canonical = if dialed_by_me {
            self.me.as_str() < peer
        } else {
            peer < self.me.as_str()
        };
        let mut map = self.map();
        if let Some(old) = map.get(peer) {
            let alive = old.conn.close_reason().is_none();
            if alive && old.canonical && !canonical {
                return false;
            }
            if alive {
                old.conn.close(
                    VarInt::from_u32(close::DUPLICATE),
                    b"replaced by the canonical connection",
                );
            }
        }
        map.insert(
            peer.to_string(),
            Link {
                conn: conn.clone(),
                canonical,
                since: crate::time::now(),
            },
        );
        drop(map);
        self.changed.notify_waiters();
        true
    }

    pub(super) fn remove(&self, peer: &str, conn: &Connection) {
        let mut map = self.map();
        if map
            .get(peer)
            .is_some_and(|l| l.conn.stable_id() == conn.stable_id())
        {
            map.remove(peer);
        }
        drop(map);
        self.changed.notify_waiters();
    }

    /// Closes the connection to `peer`, if any (config reload).
    pub fn close_peer(&self, peer: &str) {
        if let Some(l) = self.map().get(peer) {
            l.conn
                .close(VarInt::from_u32(close::RELOADED), b"member entry reloaded");
        }
    }

    /// Closes every link so each starts again at once (after this node's
    /// key rotation: the links proved the old key).
    pub fn restart_all(&self, reason: &'static str) {
        for l in self.map().values() {
            l.conn
                .close(VarInt::from_u32(close::RELOADED), reason.as_bytes());
        }
    }

    pub(super) fn close_all(&self) {
        for l in self.map().values() {
            l.conn.close(VarInt::from_u32(close::SHUTDOWN), b"shutdown");
        }
    }
}
