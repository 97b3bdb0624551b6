//! Watch for the SQLite backend: subscribe, replay from the log, then forward live events.
//!
//! Invariant: the task always holds a broadcast subscription taken BEFORE the snapshot it replays
//! from, and forwards only live events with a revision above that snapshot. Every committed event
//! is therefore delivered exactly once and in order. When the subscription lags, the task takes a
//! new subscription and replays the missed revisions from the log (same invariant).

use std::sync::Arc;

use futures::stream;
use tokio::sync::{broadcast, mpsc};

use super::Readers;
use super::rows;
use super::writer::EventBatch;
use crate::{Result, Revision, StoreError, WatchEvent, WatchStream};

/// Log rows read per replay query.
const REPLAY_PAGE: i64 = 512;
/// Events buffered between the watch task and the consumer.
const OUT_BUFFER: usize = 256;

type Out = mpsc::Sender<Result<WatchEvent>>;

pub(super) async fn start(
    events: broadcast::Sender<EventBatch>,
    readers: Arc<Readers>,
    prefix: String,
    from: Revision,
) -> Result<WatchStream> {
    // Subscribe before anything is read so nothing committed from here on can be missed.
    let live = events.subscribe();
    let (tx, rx) = mpsc::channel(OUT_BUFFER);
    // from == 0: only what commits after now; the snapshot is the current revision.
    let seen = if from <= 0 {
        Some(readers.read(|c| rows::meta(c, "rev")).await?)
    } else {
        None
    };
    tokio::spawn(async move {
        if let Err(e) = run(events, live, readers, &prefix, from, seen, &tx).await {
            let _ = tx.send(Err(e)).await;
        }
    });
    Ok(Box::pin(stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })))
}

/// Forward events until the consumer goes away; an `Err` is sent to the consumer as the last item.
async fn run(
    events: broadcast::Sender<EventBatch>,
    mut live: broadcast::Receiver<EventBatch>,
    readers: Arc<Readers>,
    prefix: &str,
    from: Revision,
    seen: Option<Revision>,
    tx: &Out,
) -> Result<()> {
    let mut through = match seen {
        Some(rev) => rev,
        None => match replay(&readers, prefix, from, tx).await? {
            Some(rev) => rev,
            None => return Ok(()),
        },
    };
    loop {
        let batch = tokio::select! {
            () = tx.closed() => return Ok(()),
            b = live.recv() => b,
        };
        match batch {
            Ok(batch) => {
                for ev in batch.iter() {
                    if ev.kv.mod_revision > through
                        && ev.kv.key.starts_with(prefix)
                        && tx.send(Ok(ev.clone())).await.is_err()
                    {
                        return Ok(());
                    }
                }
                if let Some(last) = batch.last() {
                    through = through.max(last.kv.mod_revision);
                }
            }
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::debug!(
                    "watch on {prefix:?} lagged by {n} batches; replaying from the log"
                );
                live = events.subscribe();
                match replay(&readers, prefix, through + 1, tx).await? {
                    Some(rev) => through = through.max(rev),
                    None => return Ok(()),
                }
            }
            Err(broadcast::error::RecvError::Closed) => {
                return Err(StoreError::Unavailable("store closed".into()));
            }
        }
    }
}

/// Send every logged event with revision >= `from` for `prefix`, up to a snapshot revision, which it
/// returns (`None` if the consumer went away).
async fn replay(
    readers: &Arc<Readers>,
    prefix: &str,
    from: Revision,
    tx: &Out,
) -> Result<Option<Revision>> {
    let mut cursor = (from - 1, i64::MAX);
    let mut through = None;
    loop {
        let p = prefix.to_owned();
        let (snapshot, page) = readers
            .read(move |c| {
                let t = c.transaction().map_err(rows::db_err("begin read"))?;
                let rev = rows::meta(&t, "rev")?;
                let compacted = rows::meta(&t, "compacted")?;
                if from < compacted || (through.is_some() && cursor.0 < compacted) {
                    return Err(StoreError::Compacted {
                        requested: from,
                        oldest: compacted,
                    });
                }
                let snapshot = through.unwrap_or(rev);
                let page = rows::log_page(&t, &p, cursor, snapshot, REPLAY_PAGE)?;
                t.finish().map_err(rows::db_err("end read"))?;
                Ok((snapshot, page))
            })
            .await?;
        through = Some(snapshot);
        let full = page.len() as i64 == REPLAY_PAGE;
        for (seq, ev) in page {
            cursor = (ev.kv.mod_revision, seq);
            if tx.send(Ok(ev)).await.is_err() {
                return Ok(None);
            }
        }
        if !full {
            return Ok(Some(snapshot));
        }
    }
}
