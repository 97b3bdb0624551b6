//! `kumo cluster status` (the control plane's servers) and `kumo cluster join-token
//! create|list|show|delete`: one-time tokens that let a host's agent join.

use clap::Subcommand;
use kumo_types::{ClusterStatus, CreateJoinTokenRequest, JoinToken, JoinTokenCreated};

use crate::CliError;
use crate::client::{Client, Json, seg};
use crate::render::Output;
use crate::render::cluster as r;

#[derive(Debug, Clone, Subcommand)]
pub enum ClusterCmd {
    /// The control plane's live servers, and which one leads (runs the reconcilers).
    Status,
    /// One-time tokens with which a host's agent joins the cluster and gets its certificate.
    #[command(subcommand, name = "join-token")]
    JoinToken(JoinTokenCmd),
}

#[derive(Debug, Clone, Subcommand)]
pub enum JoinTokenCmd {
    /// Create a join token. Its secret is shown only now, with the CA fingerprint to pin.
    Create {
        /// How long the token stays valid: `90s`, `30m`, `1h`, `7d` (at most 30 days).
        #[arg(long, default_value = "1h", value_parser = parse_ttl)]
        ttl: u64,
        #[arg(long)]
        description: Option<String>,
    },
    /// List join tokens (valid, expired, used).
    List,
    /// Show one join token.
    Show { id: String },
    /// Delete a join token.
    Delete { id: String },
}

/// `90s`, `30m`, `1h`, `7d` or plain seconds → seconds (pure).
pub fn parse_ttl(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected a duration like 90s, 30m, 1h or 7d"))?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{s:?}: the unit must be s, m, h or d")),
    };
    n.checked_mul(mult)
        .filter(|v| *v > 0)
        .ok_or_else(|| format!("{s:?}: must be at least 1s"))
}

pub async fn run(client: &Client, out: &Output, cmd: ClusterCmd) -> Result<i32, CliError> {
    let cmd = match cmd {
        ClusterCmd::Status => {
            let s: Json<ClusterStatus> = client.get("cluster/status").await?;
            out.one_tables(&s, r::cluster_status);
            return Ok(0);
        }
        ClusterCmd::JoinToken(cmd) => cmd,
    };
    match cmd {
        JoinTokenCmd::Create { ttl, description } => {
            let req = CreateJoinTokenRequest {
                ttl_seconds: Some(ttl),
                description,
            };
            let c: Json<JoinTokenCreated> =
                client.post("cluster/join-tokens", Some(&req), None).await?;
            out.one(&c, r::join_token_created);
            out.note(format!(
                "Join a host with it (once, before it expires):\n  kumo agent --server https://<server>:<tls-port> \
                 --join-token {} --ca-fingerprint {} --host-name <name>",
                c.value.token, c.value.ca_fingerprint
            ));
        }
        JoinTokenCmd::List => out.list(
            &client.list::<JoinToken>("cluster/join-tokens").await?,
            r::join_tokens_table,
        ),
        JoinTokenCmd::Show { id } => out.one(
            &client
                .get::<JoinToken>(&format!("cluster/join-tokens/{}", seg(&id)))
                .await?,
            r::join_token_detail,
        ),
        JoinTokenCmd::Delete { id } => {
            client
                .delete_empty(&format!("cluster/join-tokens/{}", seg(&id)))
                .await?;
            out.note(format!("join token `{id}` deleted"));
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::parse_ttl;

    #[test]
    fn ttls() {
        assert_eq!(parse_ttl("90s"), Ok(90));
        assert_eq!(parse_ttl("30m"), Ok(1800));
        assert_eq!(parse_ttl("1h"), Ok(3600));
        assert_eq!(parse_ttl("7d"), Ok(604_800));
        assert_eq!(parse_ttl("600"), Ok(600));
        for bad in ["", "h", "1w", "0s", "-1h", "1.5h"] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
    }
}
