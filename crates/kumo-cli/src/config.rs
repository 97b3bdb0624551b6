//! Where the client finds its API URL and token.
//!
//! Precedence, per setting: `--url`/`--token` flag > `KUMO_URL`/`KUMO_TOKEN` environment (clap merges
//! these two, flag first) > the config file > built-in fallback. The config file is `$KUMO_CONFIG`, else
//! `$XDG_CONFIG_HOME/kumo/config.json`, else `~/.config/kumo/config.json`, holding
//! `{"url": "...", "token": "..."}` (both optional). The URL falls back to [`crate::DEFAULT_URL`]; the token
//! falls back to `/var/lib/kumo/admin.token` (the single-host server's bootstrap token) — but only when
//! the URL points at this machine (loopback), so a local admin secret is never sent elsewhere. For
//! `https://` URLs the CA to trust is `--ca-file`/`KUMO_CA_FILE` > the config file's `ca_file` > the
//! server's copy of the cluster CA, `$KUMO_DATA_DIR/tls/ca.pem` (default `/var/lib/kumo/tls/ca.pem`),
//! when readable; without any, the build's built-in roots.
//!
//! The project a command acts in (`X-Kumo-Project`) is `--project`/`KUMO_PROJECT` > the config file's
//! `project` > none ([`project`]).
//!
//! [`resolve`] is pure: [`Sources::from_env`] does all the reading.

use std::path::PathBuf;

use serde::Deserialize;

use crate::{CliError, DEFAULT_URL, GlobalArgs};

/// Where the single-host server writes its bootstrap admin token by default.
pub const ADMIN_TOKEN_PATH: &str = "/var/lib/kumo/admin.token";
/// The server's default data directory (its `tls/ca.pem` is the cluster CA).
pub const DATA_DIR: &str = "/var/lib/kumo";

/// The resolved connection settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub url: String,
    pub token: String,
    /// Where the token came from (for messages).
    pub token_source: String,
    /// The CA certificate to trust for `https://` URLs (then the only one trusted).
    pub ca_file: Option<PathBuf>,
}

/// Contents of the config file.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The project to act in (`X-Kumo-Project`) unless `--project`/`KUMO_PROJECT` says otherwise.
    #[serde(default)]
    pub project: Option<String>,
}

/// Everything [`resolve`] looks at, already read from flags, environment and disk.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// `--url` or `KUMO_URL`.
    pub url: Option<String>,
    /// `--token` or `KUMO_TOKEN`.
    pub token: Option<String>,
    /// The config file path that was consulted.
    pub config_path: Option<PathBuf>,
    /// True when the path came from `$KUMO_CONFIG` (then it must exist).
    pub config_explicit: bool,
    /// The config file's text, if it could be read.
    pub config_text: Option<String>,
    /// The admin token file's text, if it could be read.
    pub admin_token: Option<String>,
    /// `--ca-file` or `KUMO_CA_FILE`.
    pub ca_file: Option<PathBuf>,
    /// The data directory's copy of the cluster CA, if it exists.
    pub data_dir_ca: Option<PathBuf>,
    /// `--project` or `KUMO_PROJECT`.
    pub project: Option<String>,
}

impl Sources {
    /// Read flags/environment (already merged by clap), the config file and the admin token file.
    pub fn from_env(global: &GlobalArgs) -> Sources {
        let env = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let (config_path, config_explicit) = match env("KUMO_CONFIG") {
            Some(p) => (Some(p), true),
            None => (
                default_config_path(env("XDG_CONFIG_HOME"), env("HOME")),
                false,
            ),
        };
        let config_text = config_path
            .as_deref()
            .and_then(|p| std::fs::read_to_string(p).ok());
        let admin_token = std::fs::read_to_string(ADMIN_TOKEN_PATH).ok();
        let data_dir = env("KUMO_DATA_DIR").unwrap_or_else(|| PathBuf::from(DATA_DIR));
        let data_dir_ca =
            Some(data_dir.join("tls").join("ca.pem")).filter(|p| std::fs::File::open(p).is_ok());
        Sources {
            ca_file: global.ca_file.clone().filter(|p| !p.as_os_str().is_empty()),
            data_dir_ca,
            url: global.url.clone().filter(|s| !s.is_empty()),
            token: global.token.clone().filter(|s| !s.is_empty()),
            config_path,
            config_explicit,
            config_text,
            admin_token,
            project: global.project.clone().filter(|s| !s.is_empty()),
        }
    }
}

/// The project to send as `X-Kumo-Project` (pure): `--project`/`KUMO_PROJECT`, else the config
/// file's `project`, else none (the server then uses the token's project or the user's only/first
/// membership).
pub fn project(src: &Sources) -> Option<String> {
    src.project.clone().or_else(|| {
        src.config_text
            .as_deref()
            .and_then(|t| serde_json::from_str::<ConfigFile>(t).ok())
            .and_then(|f| f.project)
            .filter(|p| !p.is_empty())
    })
}

/// `$XDG_CONFIG_HOME/kumo/config.json`, else `$HOME/.config/kumo/config.json`.
pub fn default_config_path(
    xdg_config_home: Option<PathBuf>,
    home: Option<PathBuf>,
) -> Option<PathBuf> {
    xdg_config_home
        .filter(|p| p.is_absolute())
        .or_else(|| home.map(|h| h.join(".config")))
        .map(|base| base.join("kumo").join("config.json"))
}

/// True when `url`'s host is this machine (loopback address or `localhost`).
pub fn is_loopback_url(url: &str) -> bool {
    let Some(rest) = url.split_once("://").map(|(_, r)| r) else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit('@').next().unwrap_or("");
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        host_port.split(':').next().unwrap_or("")
    };
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// Decide the URL and token from the sources (pure).
pub fn resolve(src: &Sources) -> Result<Config, CliError> {
    let shown_path = src.config_path.as_deref().map_or_else(
        || "~/.config/kumo/config.json".into(),
        |p| p.display().to_string(),
    );
    let file = match (&src.config_text, src.config_explicit) {
        (Some(text), _) => serde_json::from_str::<ConfigFile>(text)
            .map_err(|e| CliError::usage(format!("config file {shown_path} is not valid: {e}")))?,
        (None, true) => {
            return Err(CliError::usage(format!(
                "config file {shown_path} (from KUMO_CONFIG) cannot be read"
            )));
        }
        (None, false) => ConfigFile::default(),
    };
    let url = src
        .url
        .clone()
        .or_else(|| file.url.clone().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| DEFAULT_URL.to_string());
    let url = url.trim_end_matches('/').to_string();
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(CliError::usage(format!(
            "API URL `{url}` must start with http:// or https://"
        )));
    }
    let admin = src
        .admin_token
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty() && is_loopback_url(&url));
    let (token, token_source) = if let Some(t) = &src.token {
        (t.clone(), "--token/KUMO_TOKEN".to_string())
    } else if let Some(t) = file.token.clone().filter(|t| !t.is_empty()) {
        (t, shown_path.clone())
    } else if let Some(t) = admin {
        (t.to_string(), ADMIN_TOKEN_PATH.to_string())
    } else {
        return Err(CliError::usage(format!(
            "no API token: pass --token <TOKEN>, set KUMO_TOKEN, or write {{\"url\": \"{url}\", \"token\": \"...\"}} \
             to {shown_path} (a single-host server writes its bootstrap token to {ADMIN_TOKEN_PATH}, \
             which is used automatically for loopback URLs when readable)"
        )));
    };
    Ok(Config {
        url,
        token: token.trim().to_string(),
        token_source,
        ca_file: src
            .ca_file
            .clone()
            .or(file.ca_file)
            .or_else(|| src.data_dir_ca.clone()),
    })
}
