//! `kumo project|user|token|access-key …` and `kumo login`: tenants, users and their credentials.
//! Tables are built here (pure functions, value in, table out).

use std::collections::BTreeMap;

use clap::{Args, Subcommand};
use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{ContentArrangement, Table};
use kumo_types::{
    AccessKey, AccessKeyCreated, ApiToken, CreateAccessKeyRequest, CreateProjectRequest,
    CreateTokenRequest, CreateUserRequest, LoginRequest, Project, ProjectRole, SetPasswordRequest,
    SetRoleRequest, TokenCreated, User, Whoami,
};

use crate::CliError;
use crate::client::{Client, Json, encode_query, seg};
use crate::render::Output;

#[derive(Debug, Clone, Subcommand)]
pub enum ProjectCmd {
    /// Create a project (cloud admins).
    Create {
        name: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List the projects you belong to (cloud admins: all).
    List,
    /// Show one project.
    Show { name: String },
    /// Delete a project without members or resources (cloud admins).
    Delete { name: String },
}

#[derive(Debug, Clone, Subcommand)]
pub enum UserCmd {
    /// Create a user (cloud admins).
    Create(UserCreateArgs),
    /// List users (cloud admins: all; project admins: their project's).
    List,
    /// Show one user.
    Show { name: String },
    /// Delete a user with its tokens and access keys (cloud admins).
    Delete { name: String },
    /// Give a user a role (reader, member or admin) in the project named by `--project`.
    AddRole {
        name: String,
        #[arg(long, value_parser = parse_role)]
        role: ProjectRole,
    },
    /// Take a user's role in the project named by `--project` away.
    RemoveRole { name: String },
    /// Set a user's password (read from stdin, one line).
    SetPassword { name: String },
}

#[derive(Debug, Clone, Args)]
pub struct UserCreateArgs {
    pub name: String,
    /// `project=role`, repeatable (role: reader, member, admin).
    #[arg(long = "role", value_parser = parse_membership)]
    pub roles: Vec<(String, ProjectRole)>,
    /// A cloud admin: every project and the cluster-wide resources.
    #[arg(long)]
    pub cloud_admin: bool,
    /// Read a password from stdin (one line).
    #[arg(long)]
    pub password_stdin: bool,
}

#[derive(Debug, Clone, Subcommand)]
pub enum TokenCmd {
    /// Create an API token (shown once), acting by default in `--project` if given.
    Create {
        /// For another user (cloud admins, or admins of your project; then pinned to it).
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        description: Option<String>,
        /// Lifetime: `90s`, `30m`, `12h`, `30d` (default: no expiry).
        #[arg(long, value_parser = crate::cmd::cluster::parse_ttl)]
        ttl: Option<u64>,
    },
    /// List the tokens you may manage.
    List {
        #[arg(long)]
        user: Option<String>,
    },
    /// Revoke a token by ID.
    Revoke { id: String },
}

#[derive(Debug, Clone, Subcommand)]
pub enum AccessKeyCmd {
    /// Create an access key for the EC2 API in the current project (the secret is shown once).
    Create {
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        description: Option<String>,
    },
    /// List access keys (no secrets).
    List {
        #[arg(long)]
        user: Option<String>,
    },
    /// Delete an access key.
    Delete { id: String },
}

#[derive(Debug, Clone, Args)]
pub struct LoginArgs {
    #[arg(long)]
    pub user: String,
    /// Read the password from stdin (one line) instead of the terminal prompt.
    #[arg(long)]
    pub password_stdin: bool,
    /// Token lifetime (default 12h).
    #[arg(long, value_parser = crate::cmd::cluster::parse_ttl)]
    pub ttl: Option<u64>,
}

/// `reader|member|admin` (pure).
pub fn parse_role(s: &str) -> Result<ProjectRole, String> {
    match s {
        "reader" => Ok(ProjectRole::Reader),
        "member" => Ok(ProjectRole::Member),
        "admin" => Ok(ProjectRole::Admin),
        _ => Err(format!("{s:?}: the role is reader, member or admin")),
    }
}

/// `project=role` (pure).
pub fn parse_membership(s: &str) -> Result<(String, ProjectRole), String> {
    let (p, r) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected project=role"))?;
    if p.is_empty() {
        return Err(format!("{s:?}: the project is empty"));
    }
    Ok((p.to_string(), parse_role(r)?))
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.to_vec());
    t
}

fn detail(rows: Vec<(&str, String)>) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic);
    for (k, v) in rows {
        t.add_row(vec![k.to_string(), v]);
    }
    t
}

fn opt(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "-".into())
}

fn roles(m: &BTreeMap<String, ProjectRole>) -> String {
    if m.is_empty() {
        return "-".into();
    }
    m.iter()
        .map(|(p, r)| format!("{p}={}", r.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn projects_table(items: &[Project]) -> Table {
    let mut t = table(&["NAME", "DESCRIPTION", "CREATED"]);
    for p in items {
        t.add_row(vec![
            p.name.clone(),
            p.description.clone(),
            p.created_at.clone(),
        ]);
    }
    t
}

pub fn project_detail(p: &Project) -> Table {
    detail(vec![
        ("name", p.name.clone()),
        ("description", p.description.clone()),
        ("created", p.created_at.clone()),
    ])
}

pub fn users_table(items: &[User]) -> Table {
    let mut t = table(&["NAME", "ROLES", "CLOUD ADMIN", "PASSWORD", "CREATED"]);
    for u in items {
        t.add_row(vec![
            u.name.clone(),
            roles(&u.memberships),
            if u.cloud_admin { "yes" } else { "no" }.into(),
            if u.has_password { "yes" } else { "no" }.into(),
            u.created_at.clone(),
        ]);
    }
    t
}

pub fn user_detail(u: &User) -> Table {
    detail(vec![
        ("name", u.name.clone()),
        ("roles", roles(&u.memberships)),
        (
            "cloud admin",
            if u.cloud_admin { "yes" } else { "no" }.into(),
        ),
        ("password", if u.has_password { "yes" } else { "no" }.into()),
        ("created", u.created_at.clone()),
    ])
}

pub fn tokens_table(items: &[ApiToken]) -> Table {
    let mut t = table(&["ID", "USER", "PROJECT", "PINNED", "EXPIRES", "DESCRIPTION"]);
    for k in items {
        t.add_row(vec![
            k.id.clone(),
            k.user.clone(),
            opt(&k.project),
            if k.pinned { "yes" } else { "no" }.into(),
            opt(&k.expires_at),
            opt(&k.description),
        ]);
    }
    t
}

pub fn token_created(c: &TokenCreated) -> Table {
    detail(vec![
        ("id", c.api_token.id.clone()),
        ("token", c.token.clone()),
        ("user", c.api_token.user.clone()),
        ("project", opt(&c.api_token.project)),
        ("expires", opt(&c.api_token.expires_at)),
    ])
}

pub fn access_keys_table(items: &[AccessKey]) -> Table {
    let mut t = table(&["ACCESS KEY ID", "USER", "PROJECT", "CREATED", "DESCRIPTION"]);
    for k in items {
        t.add_row(vec![
            k.access_key_id.clone(),
            k.user.clone(),
            k.project.clone(),
            k.created_at.clone(),
            opt(&k.description),
        ]);
    }
    t
}

pub fn access_key_created(k: &AccessKeyCreated) -> Table {
    detail(vec![
        ("access key id", k.access_key_id.clone()),
        ("secret access key", k.secret_access_key.clone()),
        ("user", k.user.clone()),
        ("project", k.project.clone()),
    ])
}

pub fn whoami_detail(w: &Whoami) -> Table {
    detail(vec![
        ("user", w.user.clone()),
        ("project", w.project.clone()),
        ("role", w.role.clone()),
        ("credential", opt(&w.credential)),
    ])
}

/// One line from stdin, without its line end.
fn read_password_line() -> Result<String, CliError> {
    let mut s = String::new();
    std::io::stdin()
        .read_line(&mut s)
        .map_err(|e| CliError::usage(format!("reading the password from stdin: {e}")))?;
    let p = s.trim_end_matches(['\n', '\r']).to_string();
    if p.is_empty() {
        return Err(CliError::usage("no password on stdin"));
    }
    Ok(p)
}

fn who(user: &Option<String>) -> String {
    user.as_deref()
        .map_or(String::new(), |u| format!("?user={}", encode_query(u)))
}

pub async fn run_project(client: &Client, out: &Output, cmd: ProjectCmd) -> Result<i32, CliError> {
    match cmd {
        ProjectCmd::Create { name, description } => {
            let p: Json<Project> = client
                .post(
                    "projects",
                    Some(&CreateProjectRequest { name, description }),
                    None,
                )
                .await?;
            out.one(&p, project_detail);
        }
        ProjectCmd::List => out.list(
            &client.list_unpaged::<Project>("projects").await?,
            projects_table,
        ),
        ProjectCmd::Show { name } => out.one(
            &client
                .get::<Project>(&format!("projects/{}", seg(&name)))
                .await?,
            project_detail,
        ),
        ProjectCmd::Delete { name } => {
            client
                .delete_empty(&format!("projects/{}", seg(&name)))
                .await?;
            out.note(format!("project `{name}` deleted"));
        }
    }
    Ok(0)
}

/// The project `--project`/`KUMO_PROJECT` names, for commands that act on one.
fn required(project: &Option<String>, what: &str) -> Result<String, CliError> {
    project
        .clone()
        .ok_or_else(|| CliError::usage(format!("{what} needs --project <name> (or KUMO_PROJECT)")))
}

pub async fn run_user(
    client: &Client,
    out: &Output,
    cmd: UserCmd,
    project: Option<String>,
) -> Result<i32, CliError> {
    match cmd {
        UserCmd::Create(a) => {
            let password = if a.password_stdin {
                Some(read_password_line()?)
            } else {
                None
            };
            let req = CreateUserRequest {
                name: a.name,
                memberships: a.roles.into_iter().collect(),
                cloud_admin: a.cloud_admin,
                password,
            };
            let u: Json<User> = client.post("users", Some(&req), None).await?;
            out.one(&u, user_detail);
        }
        UserCmd::List => out.list(&client.list_unpaged::<User>("users").await?, users_table),
        UserCmd::Show { name } => out.one(
            &client.get::<User>(&format!("users/{}", seg(&name))).await?,
            user_detail,
        ),
        UserCmd::Delete { name } => {
            client
                .delete_empty(&format!("users/{}", seg(&name)))
                .await?;
            out.note(format!(
                "user `{name}` deleted with its tokens and access keys"
            ));
        }
        UserCmd::AddRole { name, role } => {
            let project = required(&project, "add-role")?;
            let u: Json<User> = client
                .put(
                    &format!("users/{}/roles/{}", seg(&name), seg(&project)),
                    &SetRoleRequest { role },
                )
                .await?;
            out.one(&u, user_detail);
        }
        UserCmd::RemoveRole { name } => {
            let project = required(&project, "remove-role")?;
            let u: Json<User> = client
                .delete(&format!("users/{}/roles/{}", seg(&name), seg(&project)))
                .await?;
            out.one(&u, user_detail);
        }
        UserCmd::SetPassword { name } => {
            let password = read_password_line()?;
            let u: Json<User> = client
                .put(
                    &format!("users/{}/password", seg(&name)),
                    &SetPasswordRequest { password },
                )
                .await?;
            out.one(&u, user_detail);
        }
    }
    Ok(0)
}

pub async fn run_token(
    client: &Client,
    out: &Output,
    cmd: TokenCmd,
    project: Option<String>,
) -> Result<i32, CliError> {
    match cmd {
        TokenCmd::Create {
            user,
            description,
            ttl,
        } => {
            let req = CreateTokenRequest {
                user,
                project,
                description,
                ttl_seconds: ttl,
            };
            let c: Json<TokenCreated> = client.post("tokens", Some(&req), None).await?;
            out.one(&c, token_created);
            out.note(
                "The token is shown only now: keep it (KUMO_TOKEN or the config file's `token`).",
            );
        }
        TokenCmd::List { user } => out.list(
            &client
                .list_unpaged::<ApiToken>(&format!("tokens{}", who(&user)))
                .await?,
            tokens_table,
        ),
        TokenCmd::Revoke { id } => {
            client.delete_empty(&format!("tokens/{}", seg(&id))).await?;
            out.note(format!("token `{id}` revoked"));
        }
    }
    Ok(0)
}

pub async fn run_access_key(
    client: &Client,
    out: &Output,
    cmd: AccessKeyCmd,
) -> Result<i32, CliError> {
    match cmd {
        AccessKeyCmd::Create { user, description } => {
            let req = CreateAccessKeyRequest {
                user,
                project: None,
                description,
            };
            let k: Json<AccessKeyCreated> = client.post("access-keys", Some(&req), None).await?;
            out.one(&k, access_key_created);
            out.note("The secret is shown only now (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY).");
        }
        AccessKeyCmd::List { user } => out.list(
            &client
                .list_unpaged::<AccessKey>(&format!("access-keys{}", who(&user)))
                .await?,
            access_keys_table,
        ),
        AccessKeyCmd::Delete { id } => {
            client
                .delete_empty(&format!("access-keys/{}", seg(&id)))
                .await?;
            out.note(format!("access key `{id}` deleted"));
        }
    }
    Ok(0)
}

pub async fn run_whoami(client: &Client, out: &Output) -> Result<i32, CliError> {
    out.one(&client.get::<Whoami>("whoami").await?, whoami_detail);
    Ok(0)
}

/// `kumo login`: a user name and password for a token (printed; `--json` prints the whole answer).
pub async fn run_login(
    client: &Client,
    out: &Output,
    a: LoginArgs,
    project: Option<String>,
) -> Result<i32, CliError> {
    if !a.password_stdin {
        out.note("Password (one line on stdin):");
    }
    let password = read_password_line()?;
    let req = LoginRequest {
        user: a.user,
        password,
        project,
        ttl_seconds: a.ttl,
    };
    let c: Json<TokenCreated> = client.post("login", Some(&req), None).await?;
    if out.json {
        println!("{}", c.raw.trim_end());
    } else {
        println!("{}", c.value.token);
        out.note(format!(
            "Logged in as `{}`; use it as KUMO_TOKEN or in the config file's `token` (expires {}).",
            c.value.api_token.user,
            opt(&c.value.api_token.expires_at)
        ));
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_and_memberships_parse() {
        assert_eq!(parse_role("member"), Ok(ProjectRole::Member));
        assert!(parse_role("owner").is_err());
        assert_eq!(
            parse_membership("team=admin"),
            Ok(("team".to_string(), ProjectRole::Admin))
        );
        for bad in ["team", "=admin", "team=root"] {
            assert!(parse_membership(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn secrets_appear_only_in_created_tables() {
        let k = AccessKeyCreated {
            access_key_id: "AKIAAAAAAAAAAAAAAAAA".into(),
            secret_access_key: "s".repeat(40),
            user: "u".into(),
            project: "p".into(),
            created_at: "t".into(),
        };
        assert!(access_key_created(&k).to_string().contains(&"s".repeat(40)));
        let listed = AccessKey {
            access_key_id: k.access_key_id.clone(),
            user: "u".into(),
            project: "p".into(),
            description: None,
            created_at: "t".into(),
            created_by: None,
        };
        let t = access_keys_table(&[listed]).to_string();
        assert!(t.contains("AKIAAAAAAAAAAAAAAAAA") && !t.contains("ssss"));
    }
}
