//! Authorization of `/v1` requests: one pure function of (caller, method, path), applied by the
//! authentication middleware before any handler runs. What a request may see *inside* a project
//! (which project's resources, whose credentials) is decided where the data is read, in the app
//! layer; this table decides whether the caller's role allows the kind of request at all.
//!
//! | path (under `/v1`) | read (GET, HEAD) | write (POST, PUT, PATCH, DELETE) |
//! |---|---|---|
//! | project resources (instances, volumes, snapshots, networks, subnets, ports, routers, security groups, floating IPs, key pairs, images) | reader | member |
//! | events | reader | — |
//! | catalog: instance types, volume types, placement groups, hosts, pools, quotas | reader | cloud-admin |
//! | cluster (join tokens, status) | cloud-admin | cloud-admin |
//! | projects | reader (own projects only) | cloud-admin |
//! | users | admin; reader for oneself | create/delete: cloud-admin; roles in one's own project: admin; own password: reader |
//! | tokens, access keys, whoami | reader (own; project admins also their project's users') | reader (same) |
//! | audit (list, export) | admin (own project) | — |
//! | audit/verify | cloud-admin | — |
//! | audit/prune | — | cloud-admin |
//! | anything else | reader | cloud-admin (fail closed: new routes must be classified) |

use axum::http::Method;
use kumo_types::Error;

use super::caller::{Caller, Role};

/// How a path's first segment is governed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Resources that belong to a project.
    ProjectResource,
    /// Cluster-wide, readable by everyone, changed by cloud admins.
    Catalog,
    /// Cluster administration: cloud admins only.
    Cluster,
    Projects,
    Users,
    /// The caller's own credentials (the app layer checks ownership).
    Credentials,
    Audit,
    /// Read-only views for every role.
    ReadOnly,
}

/// The class of a path's first segment (`None`: not classified, so treated as cluster-wide).
pub fn classify(first: &str) -> Option<Class> {
    Some(match first {
        "instances" | "volumes" | "snapshots" | "networks" | "subnets" | "ports" | "routers"
        | "security-groups" | "floating-ips" | "key-pairs" | "images" => Class::ProjectResource,
        "instance-types" | "volume-types" | "placement-groups" | "hosts" | "pools" | "quotas" => {
            Class::Catalog
        }
        "cluster" => Class::Cluster,
        "projects" => Class::Projects,
        "users" => Class::Users,
        "tokens" | "access-keys" | "whoami" => Class::Credentials,
        "audit" => Class::Audit,
        "events" => Class::ReadOnly,
        _ => return None,
    })
}

fn is_read(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD
}

/// The segments of a `/v1` path (with or without the `/v1` prefix).
pub fn segments(path: &str) -> Vec<&str> {
    let p = path.strip_prefix("/v1").unwrap_or(path);
    p.split('/').filter(|s| !s.is_empty()).collect()
}

/// The least role the request needs (pure), with what the rule is about for messages.
pub fn needed(caller: &Caller, method: &Method, path: &str) -> (Role, &'static str) {
    let seg = segments(path);
    let read = is_read(method);
    let first = seg.first().copied().unwrap_or("");
    let myself = seg.get(1).is_some_and(|u| *u == caller.user);
    match classify(first) {
        Some(Class::ProjectResource) if read => (Role::Reader, "reading the project's resources"),
        Some(Class::ProjectResource) => (Role::Member, "changing the project's resources"),
        Some(Class::Catalog) if read => (Role::Reader, "reading the catalog"),
        Some(Class::Catalog) => (Role::CloudAdmin, "changing a cluster-wide resource"),
        Some(Class::Cluster) => (Role::CloudAdmin, "cluster administration"),
        Some(Class::Projects) if read => (Role::Reader, "reading projects"),
        Some(Class::Projects) => (Role::CloudAdmin, "creating or deleting projects"),
        Some(Class::Users) => match (seg.len(), read) {
            (1, true) => (Role::Admin, "listing users"),
            (2, true) if myself => (Role::Reader, "reading one's own user"),
            (2, true) => (Role::Admin, "reading another user"),
            (4, false) if seg[2] == "roles" && seg[3] == caller.project => {
                (Role::Admin, "managing roles in one's own project")
            }
            (4, false) if seg[2] == "roles" => (
                Role::CloudAdmin,
                "managing roles in a project other than the current one",
            ),
            (3, false) if seg[2] == "password" && myself => {
                (Role::Reader, "changing one's own password")
            }
            _ => (Role::CloudAdmin, "creating, deleting or changing users"),
        },
        Some(Class::Credentials) => (Role::Reader, "managing one's own credentials"),
        Some(Class::Audit) if seg.get(1) == Some(&"verify") => {
            (Role::CloudAdmin, "verifying the whole audit chain")
        }
        Some(Class::Audit) if read => (Role::Admin, "reading the audit log"),
        Some(Class::Audit) => (Role::CloudAdmin, "the audit log"),
        Some(Class::ReadOnly) if read => (Role::Reader, "reading"),
        Some(Class::ReadOnly) | None if !read => (Role::CloudAdmin, "this cluster-wide call"),
        Some(Class::ReadOnly) | None => (Role::Reader, "reading"),
    }
}

/// May `caller` make this request? `Forbidden`, naming the role needed, when not (pure).
pub fn authorize(caller: &Caller, method: &Method, path: &str) -> Result<(), Error> {
    let (need, what) = needed(caller, method, path);
    if caller.role >= need {
        return Ok(());
    }
    let shown = format!("/v1/{}", segments(path).join("/"));
    let message = if need == Role::CloudAdmin {
        format!(
            "`{method} {shown}` ({what}) needs the `cloud-admin` role; user `{}` is `{}` in project `{}`",
            caller.user,
            caller.role.as_str(),
            caller.project
        )
    } else {
        format!(
            "`{method} {shown}` ({what}) needs the `{}` role in project `{}`; user `{}` is `{}` there",
            need.as_str(),
            caller.project,
            caller.user,
            caller.role.as_str()
        )
    };
    Err(Error::Forbidden { message })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(role: Role) -> Caller {
        Caller {
            user: "bob".into(),
            project: "p1".into(),
            role,
            credential: None,
            source: None,
        }
    }

    #[test]
    fn the_role_table() {
        use Role::*;
        // (method, path, least role that may)
        let table: &[(&str, &str, Role)] = &[
            ("GET", "/v1/instances", Reader),
            ("HEAD", "/v1/instances/i-1", Reader),
            ("POST", "/v1/instances", Member),
            ("DELETE", "/v1/instances/web", Member),
            ("POST", "/v1/instances/web/stop", Member),
            ("PATCH", "/v1/volumes/v", Member),
            ("POST", "/v1/security-groups/sg/rules", Member),
            ("POST", "/v1/images", Member),
            ("GET", "/v1/events", Reader),
            ("POST", "/v1/events", CloudAdmin),
            ("GET", "/v1/instance-types", Reader),
            ("POST", "/v1/instance-types", CloudAdmin),
            ("DELETE", "/v1/volume-types/ssd", CloudAdmin),
            ("POST", "/v1/placement-groups", CloudAdmin),
            ("GET", "/v1/hosts", Reader),
            ("PATCH", "/v1/hosts/h1", CloudAdmin),
            ("POST", "/v1/hosts/h1/drain", CloudAdmin),
            ("POST", "/v1/pools", CloudAdmin),
            ("GET", "/v1/cluster/join-tokens", CloudAdmin),
            ("POST", "/v1/cluster/join-tokens", CloudAdmin),
            ("GET", "/v1/cluster/status", CloudAdmin),
            ("GET", "/v1/projects", Reader),
            ("POST", "/v1/projects", CloudAdmin),
            ("DELETE", "/v1/projects/p1", CloudAdmin),
            ("GET", "/v1/users", Admin),
            ("GET", "/v1/users/bob", Reader),
            ("GET", "/v1/users/alice", Admin),
            ("POST", "/v1/users", CloudAdmin),
            ("DELETE", "/v1/users/alice", CloudAdmin),
            ("PUT", "/v1/users/alice/roles/p1", Admin),
            ("DELETE", "/v1/users/alice/roles/p1", Admin),
            ("PUT", "/v1/users/alice/roles/p2", CloudAdmin),
            ("PUT", "/v1/users/bob/password", Reader),
            ("PUT", "/v1/users/alice/password", CloudAdmin),
            ("POST", "/v1/tokens", Reader),
            ("DELETE", "/v1/tokens/tok-1", Reader),
            ("POST", "/v1/access-keys", Reader),
            ("GET", "/v1/whoami", Reader),
            ("GET", "/v1/audit", Admin),
            ("GET", "/v1/audit/export", Admin),
            ("GET", "/v1/audit/verify", CloudAdmin),
            ("POST", "/v1/audit/prune", CloudAdmin),
            ("GET", "/v1/something-new", Reader),
            ("POST", "/v1/something-new", CloudAdmin),
            ("GET", "/instances", Reader),
        ];
        for &(m, path, least) in table {
            let method: Method = m.parse().expect("method");
            for role in [Reader, Member, Admin, CloudAdmin] {
                let got = authorize(&caller(role), &method, path);
                assert_eq!(
                    got.is_ok(),
                    role >= least,
                    "{m} {path} as {role:?}: {got:?} (least {least:?})"
                );
                if let Err(e) = got {
                    assert_eq!(e.code(), "forbidden");
                    assert!(
                        e.to_string().contains(least.as_str()),
                        "the message names the role needed: {e}"
                    );
                }
            }
        }
    }

    #[test]
    fn every_api_route_is_classified() {
        let doc: serde_json::Value =
            serde_json::from_str(&crate::api::openapi_json()).expect("openapi json");
        let paths = doc["paths"].as_object().expect("paths");
        assert!(paths.len() > 50);
        for p in paths.keys() {
            let seg = segments(p);
            let first = seg.first().copied().unwrap_or("");
            if first == "login" {
                continue; // unauthenticated
            }
            assert!(
                classify(first).is_some(),
                "route {p} is not classified in identity::authz::classify"
            );
        }
    }

    #[test]
    fn messages_name_user_role_and_project() {
        let e =
            authorize(&caller(Role::Reader), &Method::POST, "/v1/instances").expect_err("reader");
        let m = e.to_string();
        assert!(
            m.contains("`member`")
                && m.contains("`p1`")
                && m.contains("`bob`")
                && m.contains("`reader`"),
            "{m}"
        );
        let e =
            authorize(&caller(Role::Admin), &Method::POST, "/v1/hosts/h/drain").expect_err("admin");
        assert!(e.to_string().contains("`cloud-admin`"), "{e}");
    }
}
