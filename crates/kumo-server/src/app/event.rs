//! The event log: what happened to which resource, newest last. Each event carries the project of its
//! resource; a project's callers see its events, cloud admins also see the cluster's (hosts, pools).

use kumo_types::{Event, Page, Result, ids, now_rfc3339};
use serde::Deserialize;

use super::App;
use super::scope::Scope;
use crate::storeutil::{encode, keys, list_json, store_err};

/// Append an event about `resource`, finding its project from its record (for callers that do not
/// know it; the record must still exist).
pub async fn record(app: &App, resource: &str, kind: &str, message: &str) -> Result<()> {
    let project = project_of(app, resource).await?;
    record_in(app, project.as_deref(), resource, kind, message).await
}

/// Append an event about `resource` of `project` (`None`: a cluster-wide resource). Keys sort by
/// time, so listing returns them in order.
pub async fn record_in(
    app: &App,
    project: Option<&str>,
    resource: &str,
    kind: &str,
    message: &str,
) -> Result<()> {
    let now = chrono::Utc::now();
    let id = ids::new_id(ids::EVENT);
    let key = format!("{}{:016}-{}", keys::EVENTS, now.timestamp_micros(), id);
    let ev = Event {
        id,
        time: now_rfc3339(),
        resource: resource.to_string(),
        project: project.map(str::to_string),
        kind: kind.to_string(),
        message: message.to_string(),
    };
    app.kv().put(&key, encode(&ev)?).await.map_err(store_err)?;
    Ok(())
}

/// The store key of the record of a project resource with ID `id` (by its prefix), if it is one.
fn record_key(id: &str) -> Option<String> {
    let (prefix, _) = id.split_once('-')?;
    Some(match prefix {
        ids::INSTANCE => keys::instance(id),
        ids::VOLUME => keys::volume(id),
        ids::SNAPSHOT => keys::snapshot(id),
        ids::NETWORK => keys::network(id),
        ids::SUBNET => keys::subnet(id),
        ids::PORT => keys::port(id),
        ids::ROUTER => keys::router(id),
        ids::SECURITY_GROUP => keys::security_group(id),
        ids::FLOATING_IP => keys::floating_ip(id),
        ids::KEY_PAIR => keys::key_pair(id),
        ids::IMAGE => keys::image(id),
        _ => return None,
    })
}

/// The project of resource `id`, read from its record (`None`: cluster-wide, or gone).
pub async fn project_of(app: &App, id: &str) -> Result<Option<String>> {
    #[derive(Deserialize)]
    struct Owned {
        project: String,
    }
    let Some(key) = record_key(id) else {
        return Ok(None);
    };
    let Some(kv) = app.kv().get(&key).await.map_err(store_err)? else {
        return Ok(None);
    };
    // A record without a project is treated as cluster-wide rather than failing the caller's
    // (already done) work.
    Ok(serde_json::from_slice::<Owned>(&kv.value)
        .ok()
        .map(|o| o.project))
}

/// Whether `scope` sees event `e`: its project's, or, for cloud admins, the cluster's too.
fn visible(scope: &Scope, e: &Event) -> bool {
    match &e.project {
        Some(p) => scope.lists(p),
        None => scope.admin,
    }
}

pub async fn list(
    app: &App,
    scope: &Scope,
    resource: Option<&str>,
    limit: Option<usize>,
    next_token: Option<&str>,
) -> Result<Page<Event>> {
    let all: Vec<Event> = list_json(app.kv(), keys::EVENTS).await?;
    let filtered: Vec<Event> = all
        .into_iter()
        .filter(|e| resource.is_none_or(|r| e.resource == r))
        .filter(|e| visible(scope, e))
        .collect();
    super::paginate(
        filtered,
        |e| format!("{}{}", e.time, e.id),
        limit,
        next_token,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_keys_by_id_prefix() {
        assert_eq!(record_key("i-0a1b").as_deref(), Some("/instances/i-0a1b"));
        assert_eq!(
            record_key("eipalloc-1").as_deref(),
            Some("/floating-ips/eipalloc-1")
        );
        assert_eq!(record_key("host-1"), None);
        assert_eq!(record_key("nodash"), None);
    }
}
