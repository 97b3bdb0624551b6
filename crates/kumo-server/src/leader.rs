//! Leader election among the servers sharing one store: the leader runs the reconcilers that must
//! run once (HA today); every server serves the API.
//!
//! The leader holds `/cluster/leader` (value: its server id) under a store lease of [`TTL`]; it
//! refreshes the lease every [`TTL`]/3. A follower tries to create the key (compare: absent) every
//! second, so when the leader dies its lease expires and another server takes over within about
//! [`TTL`] seconds. A leader that cannot refresh its lease steps down at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kumo_store::{Compare, Kv, Op, Txn};

/// The leader key's lease, in seconds.
pub const TTL: i64 = 6;
const KEY: &str = "/cluster/leader";

/// Whether this server leads, updated by [`spawn`].
#[derive(Debug, Clone, Default)]
pub struct Leadership {
    leader: Arc<AtomicBool>,
    pub server_id: String,
}

impl Leadership {
    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::SeqCst)
    }
}

/// Start campaigning; the returned handle says whether this server leads now.
pub fn spawn(kv: Arc<dyn Kv>, server_id: String) -> Leadership {
    let l = Leadership {
        leader: Arc::new(AtomicBool::new(false)),
        server_id,
    };
    let me = l.clone();
    tokio::spawn(async move {
        let mut lease = 0;
        loop {
            if me.is_leader() {
                if kv.lease_keepalive(lease).await.is_err() {
                    me.leader.store(false, Ordering::SeqCst);
                    tracing::warn!(server = %me.server_id, "lost the leader lease; stepping down");
                }
                tokio::time::sleep(Duration::from_secs((TTL / 3).max(1) as u64)).await;
                continue;
            }
            match campaign(kv.as_ref(), &me.server_id).await {
                Ok(Some(id)) => {
                    lease = id;
                    me.leader.store(true, Ordering::SeqCst);
                    tracing::info!(server = %me.server_id, "leading: running the reconcilers");
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "leader election"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    l
}

/// One attempt: `Some(lease)` if this server now holds the leader key.
async fn campaign(kv: &dyn Kv, server_id: &str) -> kumo_store::Result<Option<i64>> {
    if kv.get(KEY).await?.is_some() {
        return Ok(None);
    }
    let lease = kv.lease_grant(TTL).await?;
    let r = kv
        .txn(Txn {
            compare: vec![Compare::absent(KEY)],
            success: vec![Op::Put {
                key: KEY.to_string(),
                value: server_id.as_bytes().to_vec(),
                lease,
            }],
            failure: vec![],
        })
        .await?;
    if r.succeeded {
        Ok(Some(lease))
    } else {
        let _ = kv.lease_revoke(lease).await;
        Ok(None)
    }
}

/// The current leader's server id, if any.
pub async fn current(kv: &dyn Kv) -> kumo_store::Result<Option<String>> {
    Ok(kv
        .get(KEY)
        .await?
        .map(|v| String::from_utf8_lossy(&v.value).into_owned()))
}
