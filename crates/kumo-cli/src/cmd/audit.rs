//! `kumo audit list|export|verify|prune`: the hash-chained audit log.

use std::io::Write;

use clap::{Args, Subcommand};
use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{ContentArrangement, Table};
use kumo_types::{AuditPruneRequest, AuditPruned, AuditRecord, AuditVerification};

use crate::CliError;
use crate::client::{Client, encode_query};
use crate::render::Output;

#[derive(Debug, Clone, Subcommand)]
pub enum AuditCmd {
    /// List records (oldest first).
    List(AuditFilter),
    /// Every matching record as JSON lines, on stdout.
    Export(AuditFilter),
    /// Recompute the hash chain; exits 1 when it is broken.
    Verify,
    /// Remove the oldest records (export them first): those up to --through-seq and/or older than
    /// --before. The chain is verified from the last removed record's hash from then on.
    Prune(PruneArgs),
}

#[derive(Debug, Clone, Args, Default)]
pub struct PruneArgs {
    /// Remove records up to and including this sequence number.
    #[arg(long)]
    pub through_seq: Option<u64>,
    /// RFC 3339 time: remove records older than it.
    #[arg(long)]
    pub before: Option<String>,
}

#[derive(Debug, Clone, Args, Default)]
pub struct AuditFilter {
    /// RFC 3339 time: records at or after it.
    #[arg(long)]
    pub since: Option<String>,
    /// RFC 3339 time: records before it.
    #[arg(long)]
    pub until: Option<String>,
    #[arg(long)]
    pub user: Option<String>,
    /// At most this many records (list only).
    #[arg(long)]
    pub limit: Option<usize>,
}

/// The query string for a filter and the project (`--project`; project admins see their own
/// project's records anyway) (pure).
pub fn query(f: &AuditFilter, project: &Option<String>) -> String {
    let mut parts = Vec::new();
    for (k, v) in [
        ("since", &f.since),
        ("until", &f.until),
        ("user", &f.user),
        ("project", project),
    ] {
        if let Some(v) = v {
            parts.push(format!("{k}={}", encode_query(v)));
        }
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

pub fn records_table(items: &[AuditRecord]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(vec![
            "SEQ", "TIME", "USER", "PROJECT", "SOURCE", "ACTION", "TARGET", "STATUS",
        ]);
    for r in items {
        let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        let status = match &r.error_code {
            Some(c) => format!("{} {c}", r.status),
            None => r.status.to_string(),
        };
        t.add_row(vec![
            r.seq.to_string(),
            r.time.clone(),
            dash(&r.user),
            dash(&r.project),
            dash(&r.source),
            r.action.clone(),
            r.target.join("/"),
            status,
        ]);
    }
    t
}

pub async fn run(
    client: &Client,
    out: &Output,
    cmd: AuditCmd,
    project: Option<String>,
) -> Result<i32, CliError> {
    match cmd {
        AuditCmd::List(f) => {
            let l = client
                .list_max::<AuditRecord>(&format!("audit{}", query(&f, &project)), f.limit)
                .await?;
            out.list(&l, records_table);
        }
        AuditCmd::Export(f) => {
            if f.limit.is_some() {
                return Err(CliError::usage("export takes no --limit"));
            }
            let (bytes, _) = client
                .get_bytes(
                    &format!("audit/export{}", query(&f, &project)),
                    "content-type",
                )
                .await?;
            std::io::stdout()
                .write_all(&bytes)
                .map_err(|e| CliError::Other(anyhow::anyhow!("writing stdout: {e}")))?;
        }
        AuditCmd::Verify => {
            let v = client.get::<AuditVerification>("audit/verify").await?;
            if out.json {
                println!("{}", v.raw.trim_end());
            } else if v.value.ok {
                let pruned = match v.value.pruned_through {
                    0 => String::new(),
                    n => format!(" (records 1-{n} pruned)"),
                };
                println!(
                    "audit chain intact: {} records, head {}{pruned}",
                    v.value.checked, v.value.head_hash
                );
            } else {
                println!(
                    "AUDIT CHAIN BROKEN at record {}: {}",
                    v.value
                        .first_broken_seq
                        .map_or("?".into(), |s| s.to_string()),
                    v.value.message.clone().unwrap_or_default()
                );
            }
            return Ok(if v.value.ok { 0 } else { 1 });
        }
        AuditCmd::Prune(a) => {
            if a.through_seq.is_none() && a.before.is_none() {
                return Err(CliError::usage("give --through-seq, --before or both"));
            }
            let req = AuditPruneRequest {
                through_seq: a.through_seq,
                before: a.before,
            };
            let p = client
                .post::<_, AuditPruned>("audit/prune", Some(&req), None)
                .await?;
            if out.json {
                println!("{}", p.raw.trim_end());
            } else {
                println!(
                    "pruned {} records; records 1-{} are gone, anchor {}",
                    p.value.pruned, p.value.pruned_through, p.value.anchor_hash
                );
            }
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_become_a_query() {
        assert_eq!(query(&AuditFilter::default(), &None), "");
        let f = AuditFilter {
            since: Some("2026-01-01T00:00:00+01:00".into()),
            user: Some("bob".into()),
            ..Default::default()
        };
        assert_eq!(
            query(&f, &Some("p".into())),
            "?since=2026-01-01T00%3A00%3A00%2B01%3A00&user=bob&project=p"
        );
    }
}
