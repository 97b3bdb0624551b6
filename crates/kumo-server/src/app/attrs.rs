//! Attributes a front end keeps about a resource that kumo's own model has no field for, and
//! names a front end needs unique in a namespace of its own.
//!
//! The EC2 API is the user: an EC2 security group has a free-form group name unique per VPC (kumo
//! names are DNS-like and unique per project), a VPC has DNS switches, a volume the EC2 type it was
//! asked for and the device name it was attached at, a snapshot a description. None of this changes
//! what kumo does; it is what the front end shows back.
//!
//! Layout (one record per resource, written in the resource's own create transaction through
//! [`Extra`], so a resource never exists without its attributes):
//! - `/attrs/<resource-id>` → [`Attrs`] (JSON; absent = every attribute at its default)
//! - `/attr-names/<namespace>/<project>/<hex of the name>` → resource ID: a unique name, claimed
//!   with a compare on its absence in the same transaction
//!
//! Whatever front end deletes the resource, its record and its unique names go in the deleting
//! transaction ([`cleanup_ops`]), so a name can be taken again at once.

use std::collections::HashMap;

use kumo_store::{Compare, Op};
use kumo_types::{Error, Result};
use serde::{Deserialize, Serialize};

use super::App;
use crate::storeutil::{encode, get_json, list_raw, store_err};

const PREFIX: &str = "/attrs/";
const NAMES: &str = "/attr-names/";

/// The attributes of one resource; every field is optional and means "the default" when absent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Attrs {
    /// The network (VPC) a security group belongs to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// A security group's EC2 group name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_name: Option<String>,
    /// A VPC's default security group (the one created with it).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub network_default: bool,
    /// Free-form switches, e.g. a VPC's `enableDnsHostnames`, a subnet's
    /// `privateDnsHostnameTypeOnLaunch`, a volume's EC2 `volumeType` and attachment `device`.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub values: std::collections::BTreeMap<String, String>,
    /// Unique names this resource holds (their store keys), released when it goes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
}

impl Attrs {
    pub fn value(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    pub fn set(&mut self, key: &str, value: impl Into<String>) {
        self.values.insert(key.to_string(), value.into());
    }
}

/// What a front end adds to a create: the ID the new resource gets, and compares and ops that
/// commit or fail with the create's own transaction (its attributes, its unique names).
#[derive(Debug, Clone)]
pub struct Extra {
    pub id: String,
    pub compare: Vec<Compare>,
    pub ops: Vec<Op>,
}

impl Extra {
    /// Nothing extra: a fresh ID with `prefix`.
    pub fn none(prefix: &str) -> Extra {
        Extra::id(kumo_types::ids::new_id(prefix))
    }

    /// Nothing extra, the given ID.
    pub fn id(id: String) -> Extra {
        Extra {
            id,
            compare: vec![],
            ops: vec![],
        }
    }

    /// Write `attrs` for the new resource, claiming the unique names they list.
    pub fn with_attrs(id: String, attrs: &Attrs) -> Result<Extra> {
        let mut e = Extra::id(id);
        for n in &attrs.names {
            e.compare.push(Compare::absent(n));
            e.ops.push(Op::put(n, e.id.clone()));
        }
        e.ops.push(Op::put(key(&e.id), encode(attrs)?));
        Ok(e)
    }
}

/// The record of resource `id`.
pub fn key(id: &str) -> String {
    format!("{PREFIX}{id}")
}

/// The key of unique name `name` in `namespace` of `project` (the name hex-encoded: any bytes).
pub fn name_key(namespace: &str, project: &str, name: &str) -> String {
    let hex: String = name.bytes().map(|b| format!("{b:02x}")).collect();
    format!("{NAMES}{namespace}/{project}/{hex}")
}

/// The resource holding unique name `name` in `namespace` of `project`, if any.
pub async fn holder(
    app: &App,
    namespace: &str,
    project: &str,
    name: &str,
) -> Result<Option<String>> {
    Ok(app
        .kv()
        .get(&name_key(namespace, project, name))
        .await
        .map_err(store_err)?
        .map(|kv| String::from_utf8_lossy(&kv.value).into_owned()))
}

/// The attributes of `id` (defaults when it has none).
pub async fn get(app: &App, id: &str) -> Result<Attrs> {
    Ok(get_json::<Attrs>(app.kv(), &key(id))
        .await?
        .map(|(a, _)| a)
        .unwrap_or_default())
}

/// Every resource's attributes, by resource ID (for lists: one range read).
pub async fn all(app: &App) -> Result<HashMap<String, Attrs>> {
    let mut out = HashMap::new();
    for kv in list_raw(app.kv(), PREFIX).await? {
        let id = kv.key.trim_start_matches(PREFIX).to_string();
        out.insert(id, crate::storeutil::decode(&kv)?);
    }
    Ok(out)
}

/// Change the attributes of `id` with `f` under compare-and-swap. Unique names cannot change here.
pub async fn update(app: &App, id: &str, f: impl Fn(&mut Attrs) -> Result<()>) -> Result<Attrs> {
    let k = key(id);
    for attempt in 0..super::quota::ATTEMPTS {
        let (mut a, compare) = match get_json::<Attrs>(app.kv(), &k).await? {
            Some((a, rev)) => (a, Compare::mod_revision(&k, rev)),
            None => (Attrs::default(), Compare::absent(&k)),
        };
        let names = a.names.clone();
        f(&mut a)?;
        a.names = names;
        if crate::storeutil::commit(app.kv(), vec![compare], vec![Op::put(&k, encode(&a)?)]).await?
        {
            return Ok(a);
        }
        super::quota::backoff(attempt).await;
    }
    Err(Error::unavailable(
        "too much contention updating the resource's attributes; retry",
    ))
}

/// The ops that remove everything front ends keep about `id` — its attributes, the unique names
/// they hold, and its tags — for the transaction that deletes the resource, whichever API deletes
/// it (a resource deleted through `/v1` must not leave its EC2 group name taken or its tags listed).
pub async fn cleanup_ops(app: &App, id: &str) -> Result<Vec<Op>> {
    let k = key(id);
    let mut ops = vec![super::tags::delete_op(id)];
    if let Some((a, _)) = get_json::<Attrs>(app.kv(), &k).await? {
        ops.extend(a.names.iter().map(Op::delete));
        ops.push(Op::delete(k));
    }
    Ok(ops)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_hex_encoded_per_namespace_and_project() {
        assert_eq!(
            name_key("ec2-group", "p1", "a b/c"),
            "/attr-names/ec2-group/p1/6120622f63"
        );
        assert_ne!(name_key("x", "p1", "n"), name_key("x", "p2", "n"));
    }

    #[test]
    fn extra_claims_every_name_and_writes_the_record() {
        let attrs = Attrs {
            names: vec![name_key("g", "p", "web")],
            ..Attrs::default()
        };
        let e = Extra::with_attrs("sg-1".into(), &attrs).expect("extra");
        assert_eq!(e.compare.len(), 1);
        assert_eq!(e.ops.len(), 2);
        assert_eq!(e.id, "sg-1");
    }
}
