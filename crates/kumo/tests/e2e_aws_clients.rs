//! Real AWS clients against a real `kumo server`, unchanged: PyPI's current boto3 and aws CLI (the
//! venv `scripts/setup.sh` makes from `scripts/aws-requirements.txt`) and Debian's older
//! python3-boto3 run the scripts in `tests/ec2/`, which replay the calls Terraform's AWS provider
//! makes to create, read, update and destroy each resource (docs/aws-terraform-calls.md) — Terraform
//! itself cannot be installed on these machines, so they are its stand-in. One test per resource and
//! client, each on its own server, so a failure names both; plus another project's key seeing
//! nothing, and quotas refusing creates through EC2.
//!
//! Each test: a server in a private netns, the tiny image imported (public), a project `tf` with a
//! member `tf-user` and an access key made with the kumo CLI, then the script with
//! `KUMO_EC2_ENDPOINT` = the server's base URL (the aws CLI: `AWS_ENDPOINT_URL_EC2`/`_STS`). The
//! script prints every request as sent and every answer's error code; on failure the test prints it
//! all, with the server log's tail.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{Cloud, KUMO, tail};

const VENV: &str = "/opt/kumo-aws-venv";
const DEBIAN_PYTHON: &str = "/usr/bin/python3";
const REGION: &str = "kumo-1";

#[derive(Clone, Copy, Debug)]
enum Client {
    /// PyPI's boto3, pinned in scripts/aws-requirements.txt.
    Boto3,
    /// Debian 12's python3-boto3 (1.26).
    DebianBoto3,
    /// PyPI's aws CLI (v1), pinned in scripts/aws-requirements.txt.
    AwsCli,
}

fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ec2")
}

/// The interpreter or binary of `client`, checked: a missing client fails naming its package.
fn client_program(client: Client) -> PathBuf {
    let (program, probe, package): (PathBuf, &[&str], &str) = match client {
        Client::Boto3 => (
            Path::new(VENV).join("bin/python"),
            &["-c", "import boto3"],
            "boto3 from PyPI in /opt/kumo-aws-venv (run scripts/setup.sh: scripts/aws-requirements.txt)",
        ),
        Client::DebianBoto3 => (
            PathBuf::from(DEBIAN_PYTHON),
            &["-c", "import boto3"],
            "the Debian package python3-boto3 (apt-get install python3-boto3, or scripts/setup.sh)",
        ),
        Client::AwsCli => (
            Path::new(VENV).join("bin/aws"),
            &["--version"],
            "awscli from PyPI in /opt/kumo-aws-venv (run scripts/setup.sh: scripts/aws-requirements.txt)",
        ),
    };
    let ok = Command::new(&program)
        .args(probe)
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "{client:?}: {} does not work — install {package}",
        program.display()
    );
    program
}

/// A project with a member and its access key, made through the kumo CLI.
struct Tenant {
    project: String,
    key_id: String,
    secret: String,
}

fn tenant(cloud: &Cloud, project: &str) -> Tenant {
    let (key_id, secret) = cloud.member_access_key(project);
    Tenant {
        project: project.to_string(),
        key_id,
        secret,
    }
}

/// A server with the tiny image, an external network for Elastic IPs (a cloud admin's, shared by
/// every project; the VPCs of the scripts use 198.19.0.0/17) and the project `tf`.
fn start() -> (Cloud, Tenant) {
    let cloud = Cloud::start();
    cloud.import_tiny();
    cloud.external_network();
    let t = tenant(&cloud, "tf");
    (cloud, t)
}

/// The environment every script gets: nothing of the caller's AWS configuration leaks in.
fn command(cloud: &Cloud, t: &Tenant, program: &Path) -> Command {
    let mut cmd = Command::new(program);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("AWS_") {
            cmd.env_remove(&k);
        }
    }
    cmd.current_dir(scripts())
        .env("AWS_ACCESS_KEY_ID", &t.key_id)
        .env("AWS_SECRET_ACCESS_KEY", &t.secret)
        .env("AWS_DEFAULT_REGION", REGION)
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("KUMO_EC2_ENDPOINT", cloud.url())
        .env("KUMO_BIN", KUMO)
        .env("KUMO_URL", cloud.url())
        .env("KUMO_TOKEN", &cloud.token)
        .env("KUMO_PROJECT", &t.project)
        .env_remove("KUMO_CONFIG")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null());
    cmd
}

fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Run `script` (with `args`) with `client`; returns its output, failing the test on a non-zero exit.
fn run(cloud: &Cloud, t: &Tenant, client: Client, script: &str, args: &[&str]) -> String {
    run_with(cloud, t, client, script, args, &[])
}

fn run_with(
    cloud: &Cloud,
    t: &Tenant,
    client: Client,
    script: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> String {
    let program = client_program(client);
    let mut cmd = match client {
        Client::AwsCli => {
            kumo_testutil::require("jq", "jq");
            let mut c = command(cloud, t, Path::new("/bin/bash"));
            c.arg(script)
                .env("AWS_CLI", &program)
                .env("AWS_ENDPOINT_URL_EC2", cloud.url())
                .env("AWS_ENDPOINT_URL_STS", cloud.url());
            c
        }
        Client::Boto3 | Client::DebianBoto3 => {
            let mut c = command(cloud, t, &program);
            c.arg(script);
            c
        }
    };
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run the client script");
    let text = output_text(&out);
    assert!(
        out.status.success(),
        "{script} with {client:?} failed ({}):\n{text}\n--- server log tail ---\n{}",
        out.status,
        tail(&cloud.server_log(), 60)
    );
    text
}

fn replay(client: Client, script: &str) {
    let (cloud, t) = start();
    let out = run(&cloud, &t, client, script, &[]);
    assert!(out.lines().any(|l| l.trim() == "OK"), "{out}");
}

macro_rules! replays {
    ($($name:ident: $client:ident $script:literal;)*) => {$(
        #[test]
        fn $name() {
            replay(Client::$client, $script);
        }
    )*};
}

replays! {
    terraform_vpc_boto3: Boto3 "tf_vpc.py";
    terraform_vpc_debian_boto3: DebianBoto3 "tf_vpc.py";
    terraform_subnet_boto3: Boto3 "tf_subnet.py";
    terraform_subnet_debian_boto3: DebianBoto3 "tf_subnet.py";
    terraform_security_group_boto3: Boto3 "tf_security_group.py";
    terraform_security_group_debian_boto3: DebianBoto3 "tf_security_group.py";
    terraform_key_pair_boto3: Boto3 "tf_key_pair.py";
    terraform_key_pair_debian_boto3: DebianBoto3 "tf_key_pair.py";
    terraform_instance_boots_boto3: Boto3 "tf_instance.py";
    terraform_instance_boots_debian_boto3: DebianBoto3 "tf_instance.py";
    terraform_ebs_volume_and_attachment_boto3: Boto3 "tf_ebs_volume.py";
    terraform_ebs_volume_and_attachment_debian_boto3: DebianBoto3 "tf_ebs_volume.py";
    terraform_eip_boto3: Boto3 "tf_eip.py";
    terraform_eip_debian_boto3: DebianBoto3 "tf_eip.py";
    aws_cli_builds_and_tears_down_a_stack: AwsCli "cli_stack.sh";
}

/// What project `tf` creates through EC2, project `other`'s key neither sees nor touches.
#[test]
fn another_projects_key_sees_nothing() {
    let (cloud, t) = start();
    let other = tenant(&cloud, "other");
    let out = run_with(
        &cloud,
        &t,
        Client::Boto3,
        "isolation.py",
        &[],
        &[
            ("KUMO_OTHER_ACCESS_KEY_ID", &other.key_id),
            ("KUMO_OTHER_SECRET_ACCESS_KEY", &other.secret),
        ],
    );
    assert!(out.lines().any(|l| l.trim() == "OK"), "{out}");
}

/// With the project's quotas lowered to what it already uses, every EC2 create beyond them fails
/// with EC2's limit code and makes nothing.
#[test]
fn quota_exceeded_through_ec2() {
    let (cloud, t) = start();
    let quotas = || {
        let out = cloud.ok(&["--json", "--project", &t.project, "quota", "show"]);
        let q: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
        assert!(q["usage"].is_object(), "kumo quota show --json: {out}");
        q
    };
    let before = quotas();
    let out = run(&cloud, &t, Client::Boto3, "quota.py", &["setup"]);
    let ids: Vec<String> = out
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("IDS "))
        .unwrap_or_else(|| panic!("quota.py setup printed no ids:\n{out}"))
        .split_whitespace()
        .map(str::to_string)
        .collect();
    // Every limit down to what the project uses now: the next create of each kind is one too many.
    let usage = quotas()["usage"].clone();
    assert!(usage["networks"].as_u64() >= Some(1), "{usage}");
    let mut set = vec!["quota".to_string(), "set".to_string(), t.project.clone()];
    for r in [
        "instances",
        "networks",
        "security_groups",
        "volume_gib",
        "floating_ips",
        "snapshots",
    ] {
        set.push(format!("--{}", r.replace('_', "-")));
        set.push(usage[r].as_u64().unwrap_or_default().to_string());
    }
    cloud.ok(&set.iter().map(String::as_str).collect::<Vec<_>>());
    let mut args = vec!["check"];
    args.extend(ids.iter().map(String::as_str));
    let out = run(&cloud, &t, Client::Boto3, "quota.py", &args);
    assert!(out.lines().any(|l| l.trim() == "OK"), "{out}");
    // The refused creates counted nothing, and the teardown gave everything back.
    let after = quotas();
    assert_eq!(
        after["usage"], before["usage"],
        "usage after the teardown: {after}"
    );
}

/// Terraform itself, where it is installed (not on CI machines: this test is ignored there): the
/// shipped example applies, plans clean (no drift: every field reads back as written), grows its data
/// volume (an in-place update), plans clean again, and destroys.
/// Needs `terraform` on PATH and the `hashicorp/aws` provider in a filesystem mirror
/// (`KUMO_TF_PLUGIN_MIRROR`, default `/opt/tf-plugins`). Run with `--run-ignored only`; on failure it
/// prints every EC2 call that failed, from the provider's debug log.
#[test]
#[ignore = "needs terraform and the hashicorp/aws provider in a local mirror (not installable on CI)"]
fn terraform_applies_the_example() {
    let mirror =
        std::env::var("KUMO_TF_PLUGIN_MIRROR").unwrap_or_else(|_| "/opt/tf-plugins".to_string());
    kumo_testutil::require("terraform", "terraform (HashiCorp; not in Debian)");
    assert!(
        Path::new(&mirror)
            .join("registry.terraform.io/hashicorp/aws")
            .is_dir(),
        "no hashicorp/aws provider under {mirror} (set KUMO_TF_PLUGIN_MIRROR)"
    );
    let (cloud, t) = start();
    let dir = tempfile::tempdir().expect("tempdir");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/terraform/main.tf");
    std::fs::copy(&example, dir.path().join("main.tf")).expect("copy the example");
    let rc = dir.path().join("terraformrc");
    std::fs::write(
        &rc,
        format!(
            "provider_installation {{\n  filesystem_mirror {{\n    path = \"{mirror}\"\n  }}\n}}\n"
        ),
    )
    .expect("write terraformrc");
    let log = dir.path().join("terraform.log");
    let tf = |args: &[&str]| -> Output {
        let mut cmd = command(&cloud, &t, Path::new("terraform"));
        cmd.current_dir(dir.path())
            .args(args)
            .env("TF_CLI_CONFIG_FILE", &rc)
            .env("TF_IN_AUTOMATION", "1")
            .env("TF_LOG", "DEBUG")
            .env("TF_LOG_PATH", &log)
            .env("TF_VAR_kumo_endpoint", cloud.url())
            .env("CHECKPOINT_DISABLE", "1");
        cmd.output().expect("run terraform")
    };
    let failed_calls = || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let mut calls = Vec::new();
        let mut last_request = String::new();
        for line in text.lines() {
            if let Some(body) = line.trim_start().strip_prefix("| Action=") {
                last_request = format!("Action={body}");
            } else if let Some(code) = line.split("<Code>").nth(1) {
                calls.push(format!(
                    "{last_request}\n    -> {}",
                    code.split("</Code>").next().unwrap_or_default()
                ));
            }
        }
        calls.join("\n")
    };
    for step in [
        &["init", "-no-color", "-input=false"][..],
        &["apply", "-no-color", "-input=false", "-auto-approve"],
        &["plan", "-no-color", "-input=false", "-detailed-exitcode"],
        // An update: the attached data volume grows online (ModifyVolume, then the waiter).
        &[
            "apply",
            "-no-color",
            "-input=false",
            "-auto-approve",
            "-var",
            "data_volume_gib=2",
        ],
        &[
            "plan",
            "-no-color",
            "-input=false",
            "-detailed-exitcode",
            "-var",
            "data_volume_gib=2",
        ],
        &[
            "destroy",
            "-no-color",
            "-input=false",
            "-auto-approve",
            "-var",
            "data_volume_gib=2",
        ],
    ] {
        let out = tf(step);
        assert!(
            out.status.success(),
            "terraform {step:?} failed ({}):\n{}\n--- EC2 calls that failed ---\n{}\n--- server log tail ---\n{}",
            out.status,
            output_text(&out),
            failed_calls(),
            tail(&cloud.server_log(), 40)
        );
    }
}
