//! The event log: what happened to which resource, newest last.

use kumo_types::{Event, Page, Result, ids, now_rfc3339};

use super::App;
use crate::storeutil::{encode, keys, list_json, store_err};

/// Append an event. Keys sort by time, so listing returns them in order.
pub async fn record(app: &App, resource: &str, kind: &str, message: &str) -> Result<()> {
    let now = chrono::Utc::now();
    let id = ids::new_id(ids::EVENT);
    let key = format!("{}{:016}-{}", keys::EVENTS, now.timestamp_micros(), id);
    let ev = Event {
        id,
        time: now_rfc3339(),
        resource: resource.to_string(),
        kind: kind.to_string(),
        message: message.to_string(),
    };
    app.kv().put(&key, encode(&ev)?).await.map_err(store_err)?;
    Ok(())
}

pub async fn list(
    app: &App,
    resource: Option<&str>,
    limit: Option<usize>,
    next_token: Option<&str>,
) -> Result<Page<Event>> {
    let all: Vec<Event> = list_json(app.kv(), keys::EVENTS).await?;
    let filtered: Vec<Event> = all
        .into_iter()
        .filter(|e| resource.is_none_or(|r| e.resource == r))
        .collect();
    super::paginate(
        filtered,
        |e| format!("{}{}", e.time, e.id),
        limit,
        next_token,
    )
}
