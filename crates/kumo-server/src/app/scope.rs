//! Which project's resources a request sees: every app function that creates, lists, reads, changes
//! or deletes project resources takes a [`Scope`].
//!
//! Rules:
//! - Creates land in `scope.project`; names resolve in `scope.project` only.
//! - A resource of another project is invisible: reading, changing or deleting it answers the same
//!   `NotFound` as a missing one (never `Forbidden`, which would leak that it exists) — except for
//!   a cloud admin, who reaches any project's resources by ID.
//! - Lists show `scope.project` only, unless a cloud admin asked for every project (`all`).
//! - References from one resource to another (an instance's network, a floating IP's port) resolve
//!   in the project of the resource that holds the reference, for everyone ([`Scope::within`]).
//! - Reconcilers, agents' assignments, HA, drain and migration act for the cluster and use the
//!   unscoped internal functions (`find_any`, …) or [`Scope::system`].

use kumo_store::Revision;
use kumo_types::{DEFAULT_PROJECT, Error, Result};
use serde::de::DeserializeOwned;

use super::App;
use crate::identity::Caller;
use crate::storeutil::{get_json, list_json, resolve_id};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// The project the request acts in.
    pub project: String,
    /// Lists show every project's resources (cloud admins, `?all_projects=true`).
    pub all: bool,
    /// A cloud admin: other projects' resources are reachable by ID.
    pub admin: bool,
}

impl Scope {
    /// The caller's own project (lists show only it).
    pub fn of(caller: &Caller) -> Scope {
        Scope {
            project: caller.project.clone(),
            all: false,
            admin: caller.is_cloud_admin(),
        }
    }

    /// For a list: every project when `all_projects` is asked, which only a cloud admin may.
    pub fn listing(caller: &Caller, all_projects: bool) -> Result<Scope> {
        if all_projects && !caller.is_cloud_admin() {
            return Err(Error::Forbidden {
                message: "only a cloud admin may list every project's resources (all_projects)"
                    .into(),
            });
        }
        Ok(Scope {
            all: all_projects,
            ..Scope::of(caller)
        })
    }

    /// Strictly `project` (no admin reach): how references held by a resource of `project` resolve.
    pub fn within(project: &str) -> Scope {
        Scope {
            project: project.to_string(),
            all: false,
            admin: false,
        }
    }

    /// The cluster acting for itself (reconcilers, drain, migration): sees everything; names resolve
    /// in the default project. This is what every request was before projects existed.
    pub fn system() -> Scope {
        Scope {
            project: DEFAULT_PROJECT.to_string(),
            all: true,
            admin: true,
        }
    }

    /// Whether a resource of `project` can be read, changed or deleted by ID.
    pub fn sees(&self, project: &str) -> bool {
        self.admin || self.project == project
    }

    /// Whether a resource of `project` appears in a list.
    pub fn lists(&self, project: &str) -> bool {
        self.all || self.project == project
    }

    /// `found` if its project is visible, else the `NotFound` a missing one gets.
    pub fn visible<T>(
        &self,
        found: Option<T>,
        project: impl Fn(&T) -> &str,
        kind: &'static str,
        id: &str,
    ) -> Result<T> {
        match found {
            Some(x) if self.sees(project(&x)) => Ok(x),
            _ => Err(Error::not_found(kind, id)),
        }
    }
}

/// A resource that belongs to a project.
pub trait Owned {
    fn project(&self) -> &str;
}

macro_rules! owned {
    ($($t:ty),*) => {$(
        impl Owned for $t {
            fn project(&self) -> &str {
                &self.project
            }
        }
    )*};
}

owned!(
    kumo_types::Instance,
    kumo_types::Volume,
    kumo_types::Snapshot,
    kumo_types::Network,
    kumo_types::Subnet,
    kumo_types::Port,
    kumo_types::Router,
    kumo_types::SecurityGroup,
    kumo_types::FloatingIp,
    kumo_types::KeyPair,
    kumo_types::Image
);

/// How a kind of resource is stored: ID prefix, name-key kind, record key, and the word for errors.
pub struct Kind {
    pub prefix: &'static str,
    pub names: &'static str,
    pub key: fn(&str) -> String,
    pub what: &'static str,
}

/// A resource by ID or name (names resolve in `scope.project`), with its mod revision; `NotFound`
/// when missing or invisible to `scope`.
pub async fn find<T: DeserializeOwned + Owned>(
    app: &App,
    scope: &Scope,
    kind: &Kind,
    id_or_name: &str,
) -> Result<(T, Revision)> {
    let nf = || Error::not_found(kind.what, id_or_name);
    let id = resolve_id(
        app.kv(),
        kind.prefix,
        kind.names,
        &scope.project,
        id_or_name,
    )
    .await?
    .ok_or_else(nf)?;
    let found = get_json::<T>(app.kv(), &(kind.key)(&id)).await?;
    scope.visible(found, |(t, _)| t.project(), kind.what, id_or_name)
}

/// A resource by ID alone, whatever its project (internal paths: reconcilers, agents' assignments).
pub async fn find_any<T: DeserializeOwned>(
    app: &App,
    kind: &Kind,
    id: &str,
) -> Result<(T, Revision)> {
    get_json::<T>(app.kv(), &(kind.key)(id))
        .await?
        .ok_or_else(|| Error::not_found(kind.what, id))
}

/// Every record under `prefix` that `scope` lists.
pub async fn list<T: DeserializeOwned + Owned>(
    app: &App,
    scope: &Scope,
    prefix: &str,
) -> Result<Vec<T>> {
    Ok(list_json::<T>(app.kv(), prefix)
        .await?
        .into_iter()
        .filter(|t| scope.lists(t.project()))
        .collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::identity::Role;

    fn caller(project: &str, role: Role) -> Caller {
        Caller {
            user: "u".into(),
            project: project.into(),
            role,
            credential: None,
            source: None,
        }
    }

    #[test]
    fn members_see_their_project_and_admins_reach_every_one_by_id() {
        let m = Scope::of(&caller("p1", Role::Member));
        assert!(m.sees("p1") && m.lists("p1"));
        assert!(!m.sees("p2") && !m.lists("p2"));
        let e = Scope::listing(&caller("p1", Role::Admin), true).unwrap_err();
        assert!(matches!(e, Error::Forbidden { .. }), "{e:?}");

        let a = Scope::of(&caller("p1", Role::CloudAdmin));
        assert!(a.sees("p2") && !a.lists("p2"));
        let all = Scope::listing(&caller("p1", Role::CloudAdmin), true).unwrap();
        assert!(all.lists("p2") && all.project == "p1");

        let w = Scope::within("p2");
        assert!(w.sees("p2") && !w.sees("p1"));
        let s = Scope::system();
        assert!(s.sees("p9") && s.lists("p9") && s.project == DEFAULT_PROJECT);

        let hidden = m.visible(Some(("x", "p2")), |x| x.1, "instance", "i-1");
        assert!(matches!(hidden, Err(Error::NotFound { .. })));
        assert_eq!(
            m.visible(Some(("x", "p1")), |x| x.1, "instance", "i-1")
                .unwrap()
                .0,
            "x"
        );
    }
}
