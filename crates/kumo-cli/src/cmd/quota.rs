//! `kumo quota show|set`: a project's limits and usage (`show`: the project the command acts in, see
//! the global `--project`), and a cloud admin's changes to them. A limit is a number, or `unlimited`
//! (`-1` on the wire).

use clap::{Args, Subcommand};
use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{ContentArrangement, Table};
use kumo_types::{ProjectQuotas, QuotaResource, UpdateQuotasRequest};

use crate::CliError;
use crate::client::{Client, Json, seg};
use crate::render::Output;

#[derive(Debug, Clone, Subcommand)]
pub enum QuotaCmd {
    /// Show the limits and usage of the project the command acts in (`--project`).
    Show,
    /// Change a project's limits (cloud admins only); limits not given keep their value.
    Set(SetArgs),
}

#[derive(Debug, Clone, Args)]
pub struct SetArgs {
    /// The project whose limits change.
    #[arg(value_name = "PROJECT")]
    pub project_name: String,
    /// Instances (running or not): a number or `unlimited`.
    #[arg(long, value_parser = parse_limit)]
    pub instances: Option<i64>,
    /// vCPUs of all instances.
    #[arg(long, value_parser = parse_limit)]
    pub vcpus: Option<i64>,
    /// Memory of all instances, MiB.
    #[arg(long, value_parser = parse_limit)]
    pub memory_mib: Option<i64>,
    /// Size of all volumes, GiB.
    #[arg(long, value_parser = parse_limit)]
    pub volume_gib: Option<i64>,
    #[arg(long, value_parser = parse_limit)]
    pub snapshots: Option<i64>,
    #[arg(long, value_parser = parse_limit)]
    pub floating_ips: Option<i64>,
    #[arg(long, value_parser = parse_limit)]
    pub networks: Option<i64>,
    #[arg(long, value_parser = parse_limit)]
    pub security_groups: Option<i64>,
}

/// A limit on the command line: a count, or `unlimited` (also `-1`) (pure).
pub fn parse_limit(s: &str) -> Result<i64, String> {
    match s {
        "unlimited" | "-1" => Ok(-1),
        _ => s
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| format!("{s:?}: give a count (0 or more) or `unlimited`")),
    }
}

/// The `PUT /v1/projects/{project}/quotas` body, or a usage error when nothing is to change (pure).
pub fn set_request(a: &SetArgs) -> Result<UpdateQuotasRequest, CliError> {
    let req = UpdateQuotasRequest {
        instances: a.instances,
        vcpus: a.vcpus,
        memory_mib: a.memory_mib,
        volume_gib: a.volume_gib,
        snapshots: a.snapshots,
        floating_ips: a.floating_ips,
        networks: a.networks,
        security_groups: a.security_groups,
    };
    if req == UpdateQuotasRequest::default() {
        return Err(CliError::usage(
            "give at least one limit to change, e.g. --instances 10 or --vcpus unlimited",
        ));
    }
    Ok(req)
}

/// RESOURCE | USED | LIMIT, one row per quota (pure).
pub fn quota_table(q: &ProjectQuotas) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(vec!["RESOURCE", "USED", "LIMIT"]);
    for r in QuotaResource::ALL {
        let limit = q
            .limits
            .get(r)
            .map_or_else(|| "unlimited".to_string(), |n| n.to_string());
        t.add_row(vec![
            r.as_str().to_string(),
            q.usage.get(r).to_string(),
            limit,
        ]);
    }
    t
}

pub async fn run(client: &Client, out: &Output, cmd: QuotaCmd) -> Result<i32, CliError> {
    let q: Json<ProjectQuotas> = match cmd {
        QuotaCmd::Show => client.get("quotas").await?,
        QuotaCmd::Set(a) => {
            let body = set_request(&a)?;
            client
                .put(&format!("projects/{}/quotas", seg(&a.project_name)), &body)
                .await?
        }
    };
    let defaults = if q.value.defaults {
        " (the defaults)"
    } else {
        ""
    };
    out.note(format!("project `{}`{defaults}", q.value.project));
    out.one(&q, quota_table);
    Ok(0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_counts_or_unlimited() {
        assert_eq!(parse_limit("10"), Ok(10));
        assert_eq!(parse_limit("0"), Ok(0));
        assert_eq!(parse_limit("unlimited"), Ok(-1));
        assert_eq!(parse_limit("-1"), Ok(-1));
        assert!(parse_limit("-2").is_err());
        assert!(parse_limit("ten").is_err());
    }

    #[test]
    fn set_needs_a_limit_and_the_table_says_unlimited() {
        let mut a = SetArgs {
            project_name: "p1".into(),
            instances: None,
            vcpus: None,
            memory_mib: None,
            volume_gib: None,
            snapshots: None,
            floating_ips: None,
            networks: None,
            security_groups: None,
        };
        assert!(set_request(&a).is_err());
        a.instances = Some(5);
        a.vcpus = Some(-1);
        let r = set_request(&a).unwrap();
        assert_eq!(
            (r.instances, r.vcpus, r.networks),
            (Some(5), Some(-1), None)
        );

        let q = ProjectQuotas {
            project: "p1".into(),
            limits: kumo_types::QuotaLimits {
                instances: Some(5),
                ..Default::default()
            },
            usage: kumo_types::QuotaUsage {
                instances: 2,
                ..Default::default()
            },
            defaults: false,
        };
        let t = quota_table(&q).to_string();
        let row = t.lines().find(|l| l.contains("instances")).unwrap();
        assert!(row.contains('2') && row.contains('5'), "{t}");
        assert!(
            t.lines()
                .find(|l| l.contains("vcpus"))
                .unwrap()
                .contains("unlimited"),
            "{t}"
        );
    }
}
