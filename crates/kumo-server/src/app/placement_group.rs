//! Placement groups: named sets of instances placed apart (`spread`) or together (`affinity`), as a
//! rule (`hard`) or a preference (`soft`). Members join and leave in the transactions that place and
//! delete instances (`app::placement`), with compare-and-swap on the group's record: that is what
//! keeps a hard group intact under concurrent placements, and a group with members undeletable.

use std::collections::HashMap;

use kumo_store::{Compare, Op};
use kumo_types::{
    CreatePlacementGroupRequest, Error, Instance, Page, PlacementGroup, Result, now_rfc3339,
    validate,
};

use super::App;
use crate::storeutil::{commit, encode, get_json, keys, list_json};

/// Longest description.
const MAX_DESCRIPTION: usize = 255;

pub async fn list(app: &App) -> Result<Page<PlacementGroup>> {
    let mut items: Vec<PlacementGroup> = list_json(app.kv(), keys::PLACEMENT_GROUPS).await?;
    items.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Page {
        items,
        next_token: None,
    })
}

/// The group with the mod revision of its record.
pub async fn get_rev(app: &App, name: &str) -> Result<(PlacementGroup, i64)> {
    get_json(app.kv(), &keys::placement_group(name))
        .await?
        .ok_or_else(|| Error::not_found("placement group", name))
}

pub async fn get(app: &App, name: &str) -> Result<PlacementGroup> {
    Ok(get_rev(app, name).await?.0)
}

pub async fn create(app: &App, req: CreatePlacementGroupRequest) -> Result<PlacementGroup> {
    validate::name("name", &req.name)?;
    if let Some(d) = &req.description
        && d.len() > MAX_DESCRIPTION
    {
        return Err(Error::invalid(
            "description",
            format!("{} bytes; at most {MAX_DESCRIPTION}", d.len()),
        ));
    }
    let g = PlacementGroup {
        name: req.name,
        strategy: req.strategy,
        enforcement: req.enforcement.unwrap_or_default(),
        description: req.description,
        members: vec![],
        created_at: now_rfc3339(),
    };
    let key = keys::placement_group(&g.name);
    if !commit(
        app.kv(),
        vec![Compare::absent(&key)],
        vec![Op::put(&key, encode(&g)?)],
    )
    .await?
    {
        return Err(Error::conflict_field(
            "name",
            format!("a placement group named `{}` already exists", g.name),
        ));
    }
    Ok(g)
}

/// Delete a group without members (409 naming them otherwise).
pub async fn delete(app: &App, name: &str) -> Result<()> {
    let (g, rev) = get_rev(app, name).await?;
    if !g.members.is_empty() {
        let mut names = Vec::new();
        for id in g.members.iter().take(5) {
            names.push(
                match get_json::<Instance>(app.kv(), &keys::instance(id)).await? {
                    Some((i, _)) => format!("`{}`", i.name),
                    None => id.clone(),
                },
            );
        }
        if g.members.len() > names.len() {
            names.push(format!("and {} more", g.members.len() - names.len()));
        }
        return Err(Error::conflict(format!(
            "placement group `{name}` has {} member(s): {}; delete them first",
            g.members.len(),
            names.join(", ")
        )));
    }
    let key = keys::placement_group(name);
    if !commit(
        app.kv(),
        vec![Compare::mod_revision(&key, rev)],
        vec![Op::delete(&key)],
    )
    .await?
    {
        return Err(Error::conflict(format!(
            "placement group `{name}` changed concurrently (a member joined?); retry"
        )));
    }
    Ok(())
}

/// Where the group's members run: host ID → number of members (members not placed yet, or gone,
/// are skipped, and so is `except`: an instance being moved). One read per member, never a scan of
/// all instances.
pub async fn member_hosts(
    app: &App,
    g: &PlacementGroup,
    except: Option<&str>,
) -> Result<HashMap<String, u32>> {
    let mut out: HashMap<String, u32> = HashMap::new();
    for id in g.members.iter().filter(|m| Some(m.as_str()) != except) {
        if let Some((inst, _)) = get_json::<Instance>(app.kv(), &keys::instance(id)).await?
            && let Some(h) = inst.host
        {
            *out.entry(h).or_default() += 1;
        }
    }
    Ok(out)
}
