//! The EC2 front end's compute actions through the real router on a real store with one host and
//! no agent (instances are records only: they stay `pending`; deletions are finalized by hand):
//! another project's instances, authorization by role, terminated tombstones, `DryRun`,
//! `ClientToken`, quotas, protection attributes, tags and filters, key pairs, images and the
//! cloud's own descriptions.

#![allow(clippy::unwrap_used)]

mod ec2_support;
mod support;

use ec2_support::*;
use kumo_server::app::instance;
use kumo_server::app::quota;
use kumo_server::app::scope::Scope;
use kumo_server::identity::Caller;
use kumo_types::UpdateQuotasRequest;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_run_describe_and_stay_in_their_project() {
    let e = env().await;
    let app = &e.app;
    let id = run_one(
        app,
        &e.alice,
        &e.subnet1,
        &[
            ("TagSpecification.1.ResourceType", "instance"),
            ("TagSpecification.1.Tag.1.Key", "Name"),
            ("TagSpecification.1.Tag.1.Value", "web-1"),
            ("Placement.AvailabilityZone", ""),
            ("EbsOptimized", "false"),
        ],
    )
    .await;
    let body = ok(app, &e.alice, "DescribeInstances", &[("InstanceId.1", &id)]).await;
    assert_eq!(texts(&body, "instanceId"), std::slice::from_ref(&id));
    assert_eq!(texts(&body, "name"), ["pending"]);
    assert_eq!(texts(&body, "subnetId")[0], e.subnet1);
    assert_eq!(texts(&body, "availabilityZone"), ["kumo-1a"]);
    assert_eq!(texts(&body, "rootDeviceType"), ["ebs"]);
    assert!(
        texts(&body, "privateIpAddress")[0].starts_with("10.1.0."),
        "{body}"
    );
    assert!(texts(&body, "vpcId")[0].starts_with("vpc-"), "{body}");
    assert_eq!(texts(&body, "value"), ["web-1"]);

    // Tag filters.
    let by_tag = |v: &'static str| [("Filter.1.Name", "tag:Name"), ("Filter.1.Value.1", v)];
    let body = ok(app, &e.alice, "DescribeInstances", &by_tag("web-*")).await;
    assert_eq!(texts(&body, "instanceId"), std::slice::from_ref(&id));
    let body = ok(app, &e.alice, "DescribeInstances", &by_tag("db-*")).await;
    assert!(texts(&body, "instanceId").is_empty(), "{body}");

    // Another project: not there at all.
    let m = fails(
        app,
        &e.bob,
        "DescribeInstances",
        &[("InstanceId.1", &id)],
        400,
        "InvalidInstanceID.NotFound",
    )
    .await;
    assert!(m.contains(&id), "{m}");
    fails(
        app,
        &e.bob,
        "TerminateInstances",
        &[("InstanceId.1", &id)],
        400,
        "InvalidInstanceID.NotFound",
    )
    .await;
    fails(
        app,
        &e.bob,
        "CreateTags",
        &[("ResourceId.1", &id), ("Tag.1.Key", "x")],
        400,
        "InvalidInstanceID.NotFound",
    )
    .await;
    let body = ok(app, &e.bob, "DescribeInstances", &[]).await;
    assert!(texts(&body, "instanceId").is_empty(), "{body}");
    // Nor can bob launch into p1's subnet.
    fails(
        app,
        &e.bob,
        "RunInstances",
        &run_params(&e.subnet1),
        400,
        "InvalidSubnetID.NotFound",
    )
    .await;

    // A reader describes but does not change.
    ok(app, &e.rita, "DescribeInstances", &[("InstanceId.1", &id)]).await;
    fails(
        app,
        &e.rita,
        "TerminateInstances",
        &[("InstanceId.1", &id)],
        403,
        "UnauthorizedOperation",
    )
    .await;

    // Terminate: shutting down, then (once the agent would have finished) terminated for an hour.
    let body = ok(
        app,
        &e.alice,
        "TerminateInstances",
        &[("InstanceId.1", &id)],
    )
    .await;
    assert_eq!(texts(&body, "name"), ["shutting-down", "pending"], "{body}");
    instance::finalize_delete(app, &id).await.unwrap();
    let body = ok(app, &e.alice, "DescribeInstances", &[("InstanceId.1", &id)]).await;
    assert_eq!(texts(&body, "code")[0], "48", "{body}");
    assert_eq!(texts(&body, "name"), ["terminated"]);
    assert_eq!(
        texts(&body, "value"),
        ["web-1"],
        "tags stay with the tombstone"
    );
    // The audit log has the launch and the termination, with the instance as their target.
    let records = kumo_server::audit::list(
        app,
        &Caller::system(),
        &kumo_server::audit::AuditQuery {
            limit: Some(1000),
            ..Default::default()
        },
    )
    .await
    .unwrap()
    .items;
    for action in ["RunInstances", "TerminateInstances"] {
        assert!(
            records.iter().any(|r| r.api == "ec2"
                && r.action == action
                && r.status == 200
                && r.user.as_deref() == Some("alice")
                && r.target == [id.clone()]),
            "{action} audited"
        );
    }
    assert!(
        records.iter().any(|r| r.action == "TerminateInstances"
            && r.error_code.as_deref() == Some("UnauthorizedOperation")),
        "the reader's refusal is audited"
    );
    assert!(
        !records
            .iter()
            .any(|r| r.action == "DescribeInstances" && r.status == 200),
        "reads are not audited"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_runs_client_tokens_and_quotas() {
    let e = env().await;
    let app = &e.app;
    let mut p = run_params(&e.subnet1);
    p.push(("DryRun", "true"));
    let m = fails(app, &e.alice, "RunInstances", &p, 412, "DryRunOperation").await;
    assert!(m.contains("DryRun flag is set"), "{m}");
    assert_eq!(
        instance_count(app, "p1").await,
        0,
        "a dry run makes nothing"
    );
    // A reader's dry run is refused as the real call would be.
    fails(
        app,
        &e.rita,
        "RunInstances",
        &p,
        403,
        "UnauthorizedOperation",
    )
    .await;

    // The same token twice: one instance, the same answer.
    let token = [("ClientToken", "terraform-20261125190000")];
    let first = run_one(app, &e.alice, &e.subnet1, &token).await;
    let again = run_one(app, &e.alice, &e.subnet1, &token).await;
    assert_eq!(first, again);
    assert_eq!(instance_count(app, "p1").await, 1);
    // The same token with other arguments.
    let mut other = run_params(&e.subnet1);
    other.extend_from_slice(&token);
    other.push(("InstanceType", "micro"));
    other.retain(|(k, v)| !(*k == "InstanceType" && *v == "nano"));
    fails(
        app,
        &e.alice,
        "RunInstances",
        &other,
        400,
        "IdempotentParameterMismatch",
    )
    .await;
    // The token is the project's: bob's identical request is his own launch.
    let bobs = run_one(app, &e.bob, &e.subnet2, &token).await;
    assert_ne!(bobs, first);

    // p2 may hold two instances: bob's second fits, his third does not, and nothing is made.
    quota::set(
        app,
        &Scope::system(),
        "p2",
        UpdateQuotasRequest {
            instances: Some(2),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    run_one(app, &e.bob, &e.subnet2, &[]).await;
    let m = fails(
        app,
        &e.bob,
        "RunInstances",
        &run_params(&e.subnet2),
        400,
        "InstanceLimitExceeded",
    )
    .await;
    assert!(m.contains("p2"), "{m}");
    assert_eq!(instance_count(app, "p2").await, 2);
    // MinCount=1 MaxCount=3 with room for none; then with room for one: one is made.
    quota::set(
        app,
        &Scope::system(),
        "p2",
        UpdateQuotasRequest {
            instances: Some(3),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let mut p = run_params(&e.subnet2);
    p.retain(|(k, _)| *k != "MaxCount");
    p.push(("MaxCount", "3"));
    let body = ok(app, &e.bob, "RunInstances", &p).await;
    assert_eq!(texts(&body, "instanceId").len(), 1, "{body}");
    // MinCount=2 with room for none: refused, nothing made.
    p.retain(|(k, _)| *k != "MinCount");
    p.push(("MinCount", "2"));
    fails(
        app,
        &e.bob,
        "RunInstances",
        &p,
        400,
        "InstanceLimitExceeded",
    )
    .await;
    assert_eq!(instance_count(app, "p2").await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attributes_protect_and_tags_filter() {
    let e = env().await;
    let app = &e.app;
    let id = run_one(
        app,
        &e.alice,
        &e.subnet1,
        &[
            ("DisableApiTermination", "true"),
            ("UserData", "IyEvYmluL3NoCmVjaG8gaGkK"),
        ],
    )
    .await;
    let attr = |a: &'static str| [("InstanceId", id.clone()), ("Attribute", a.to_string())];
    let q = attr("disableApiTermination");
    let qs: Vec<(&str, &str)> = q.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let body = ok(app, &e.alice, "DescribeInstanceAttribute", &qs).await;
    assert_eq!(texts(&body, "value"), ["true"]);
    let q = attr("userData");
    let qs: Vec<(&str, &str)> = q.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let body = ok(app, &e.alice, "DescribeInstanceAttribute", &qs).await;
    assert_eq!(
        texts(&body, "value"),
        ["IyEvYmluL3NoCmVjaG8gaGkK"],
        "exactly as given"
    );
    let m = fails(
        app,
        &e.alice,
        "TerminateInstances",
        &[("InstanceId.1", &id)],
        400,
        "OperationNotPermitted",
    )
    .await;
    assert!(m.contains("disableApiTermination"), "{m}");
    // kumo's own API honours it too.
    assert!(
        instance::delete(app, &Scope::within("p1"), &id)
            .await
            .is_err()
    );
    ok(
        app,
        &e.alice,
        "ModifyInstanceAttribute",
        &[("InstanceId", &id), ("DisableApiStop.Value", "true")],
    )
    .await;
    fails(
        app,
        &e.alice,
        "StopInstances",
        &[("InstanceId.1", &id), ("Force", "false")],
        400,
        "OperationNotPermitted",
    )
    .await;

    // Tags: create, describe with filters, delete.
    ok(
        app,
        &e.alice,
        "CreateTags",
        &[
            ("ResourceId.1", &id),
            ("Tag.1.Key", "env"),
            ("Tag.1.Value", "prod"),
            ("Tag.2.Key", "team"),
            ("Tag.2.Value", "db"),
        ],
    )
    .await;
    let body = ok(
        app,
        &e.alice,
        "DescribeTags",
        &[
            ("Filter.1.Name", "resource-id"),
            ("Filter.1.Value.1", &id),
            ("Filter.2.Name", "key"),
            ("Filter.2.Value.1", "e*"),
        ],
    )
    .await;
    assert_eq!(texts(&body, "key"), ["env"]);
    assert_eq!(texts(&body, "resourceType"), ["instance"]);
    let body = ok(
        app,
        &e.alice,
        "DescribeInstances",
        &[("Filter.1.Name", "tag-key"), ("Filter.1.Value.1", "team")],
    )
    .await;
    assert_eq!(texts(&body, "instanceId"), std::slice::from_ref(&id));
    ok(
        app,
        &e.alice,
        "DeleteTags",
        &[("ResourceId.1", &id), ("Tag.1.Key", "team")],
    )
    .await;
    let body = ok(
        app,
        &e.alice,
        "DescribeTags",
        &[("Filter.1.Name", "resource-id"), ("Filter.1.Value.1", &id)],
    )
    .await;
    assert_eq!(texts(&body, "key"), ["env"]);
    // bob sees none of p1's tags.
    let body = ok(app, &e.bob, "DescribeTags", &[]).await;
    assert!(texts(&body, "key").is_empty(), "{body}");
    // Termination after the protection is lifted.
    ok(
        app,
        &e.alice,
        "ModifyInstanceAttribute",
        &[
            ("InstanceId", &id),
            ("DisableApiTermination.Value", "false"),
        ],
    )
    .await;
    ok(
        app,
        &e.alice,
        "TerminateInstances",
        &[("InstanceId.1", &id)],
    )
    .await;

    // A guest that powers itself off: stopped by default; terminated with the `terminate`
    // shutdown behaviour, even under termination protection (as on EC2).
    let stopped = kumo_types::InstanceStatus {
        state: kumo_types::InstanceState::Stopped,
        ..Default::default()
    };
    let plain = run_one(app, &e.alice, &e.subnet1, &[]).await;
    instance::report_status(app, &plain, stopped.clone())
        .await
        .unwrap();
    let body = ok(
        app,
        &e.alice,
        "DescribeInstances",
        &[("InstanceId.1", &plain)],
    )
    .await;
    assert_eq!(texts(&body, "name"), ["stopped"], "{body}");
    assert!(body.contains("Client.InstanceInitiatedShutdown"), "{body}");
    let doomed = run_one(
        app,
        &e.alice,
        &e.subnet1,
        &[("DisableApiTermination", "true")],
    )
    .await;
    ok(
        app,
        &e.alice,
        "ModifyInstanceAttribute",
        &[
            ("InstanceId", &doomed),
            ("InstanceInitiatedShutdownBehavior.Value", "terminate"),
        ],
    )
    .await;
    let q = [
        ("InstanceId", doomed.as_str()),
        ("Attribute", "instanceInitiatedShutdownBehavior"),
    ];
    let body = ok(app, &e.alice, "DescribeInstanceAttribute", &q).await;
    assert_eq!(texts(&body, "value"), ["terminate"]);
    instance::report_status(app, &doomed, stopped)
        .await
        .unwrap();
    let body = ok(
        app,
        &e.alice,
        "DescribeInstances",
        &[("InstanceId.1", &doomed)],
    )
    .await;
    assert_eq!(texts(&body, "name"), ["shutting-down"], "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_pairs_images_and_the_cloud() {
    let e = env().await;
    let app = &e.app;
    let material = base64_encode(KEY.as_bytes());
    let body = ok(
        app,
        &e.alice,
        "ImportKeyPair",
        &[
            ("KeyName", "deployer"),
            ("PublicKeyMaterial", &material),
            ("TagSpecification.1.ResourceType", "key-pair"),
            ("TagSpecification.1.Tag.1.Key", "v"),
            ("TagSpecification.1.Tag.1.Value", "one"),
        ],
    )
    .await;
    let key_id = texts(&body, "keyPairId").pop().unwrap();
    assert!(key_id.starts_with("key-"));
    fails(
        app,
        &e.alice,
        "ImportKeyPair",
        &[("KeyName", "deployer"), ("PublicKeyMaterial", &material)],
        400,
        "InvalidKeyPair.Duplicate",
    )
    .await;
    let body = ok(
        app,
        &e.alice,
        "DescribeKeyPairs",
        &[("KeyName.1", "deployer")],
    )
    .await;
    assert_eq!(texts(&body, "keyPairId"), std::slice::from_ref(&key_id));
    assert_eq!(texts(&body, "keyType"), ["ed25519"]);
    assert_eq!(texts(&body, "value"), ["one"]);
    fails(
        app,
        &e.bob,
        "DescribeKeyPairs",
        &[("KeyName.1", "deployer")],
        400,
        "InvalidKeyPair.NotFound",
    )
    .await;
    let body = ok(app, &e.alice, "CreateKeyPair", &[("KeyName", "made")]).await;
    let private = texts(&body, "keyMaterial").pop().unwrap();
    assert!(
        private.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"),
        "{body}"
    );
    // Launch with the key; delete it (a missing key deletes fine, as on EC2).
    run_one(app, &e.alice, &e.subnet1, &[("KeyName", "deployer")]).await;
    fails(
        app,
        &e.alice,
        "RunInstances",
        &[run_params(&e.subnet1), vec![("KeyName", "nope")]].concat(),
        400,
        "InvalidKeyPair.NotFound",
    )
    .await;
    ok(app, &e.alice, "DeleteKeyPair", &[("KeyName", "made")]).await;
    ok(app, &e.alice, "DeleteKeyPair", &[("KeyName", "made")]).await;

    // Images: the public one is another project's (owner alias amazon) for p1.
    let body = ok(
        app,
        &e.alice,
        "DescribeImages",
        &[
            ("Owner.1", "amazon"),
            ("Filter.1.Name", "name"),
            ("Filter.1.Value.1", "ti*"),
            ("IncludeDeprecated", "false"),
        ],
    )
    .await;
    assert_eq!(texts(&body, "imageId"), ["ami-00000000000000001"]);
    assert_eq!(texts(&body, "rootDeviceName"), ["/dev/xvda"]);
    let body = ok(app, &e.alice, "DescribeImages", &[("Owner.1", "self")]).await;
    assert!(texts(&body, "imageId").is_empty(), "{body}");
    fails(
        app,
        &e.alice,
        "DescribeImages",
        &[("ImageId.1", "ami-0000000000000dead")],
        400,
        "InvalidAMIID.NotFound",
    )
    .await;
    fails(
        app,
        &e.alice,
        "RunInstances",
        &[
            ("ImageId", "ami-0000000000000dead"),
            ("MinCount", "1"),
            ("MaxCount", "1"),
            ("SubnetId", &e.subnet1),
        ],
        400,
        "InvalidAMIID.NotFound",
    )
    .await;

    // A project's own image: tagged, found with Owner=self, deregistered with its tags; another
    // project's public image is not the caller's to deregister.
    let img: kumo_types::Image = serde_json::from_value(serde_json::json!({
        "id": "ami-00000000000000002", "name": "golden", "project": "p1", "kind": "kernel_initrd",
        "size_bytes": 1, "virtual_size_bytes": 0, "sha256": "x", "pool": "local",
        "created_at": "2026-11-25T18:00:00.000Z"
    }))
    .unwrap();
    app.kv()
        .put(
            &kumo_server::storeutil::keys::image(&img.id),
            kumo_server::storeutil::encode(&img).unwrap(),
        )
        .await
        .unwrap();
    app.kv()
        .put(
            &kumo_server::storeutil::keys::name("images", "p1", "golden"),
            img.id.as_bytes().to_vec(),
        )
        .await
        .unwrap();
    ok(
        app,
        &e.alice,
        "CreateTags",
        &[
            ("ResourceId.1", &img.id),
            ("Tag.1.Key", "tier"),
            ("Tag.1.Value", "gold"),
        ],
    )
    .await;
    let body = ok(
        app,
        &e.alice,
        "DescribeImages",
        &[
            ("Owner.1", "self"),
            ("Filter.1.Name", "tag:tier"),
            ("Filter.1.Value.1", "gold"),
        ],
    )
    .await;
    assert_eq!(texts(&body, "imageId"), std::slice::from_ref(&img.id));
    fails(
        app,
        &e.alice,
        "DeregisterImage",
        &[("ImageId", "ami-00000000000000001")],
        403,
        "UnauthorizedOperation",
    )
    .await;
    ok(app, &e.alice, "DeregisterImage", &[("ImageId", &img.id)]).await;
    fails(
        app,
        &e.alice,
        "DescribeImages",
        &[("ImageId.1", &img.id)],
        400,
        "InvalidAMIID.NotFound",
    )
    .await;
    let body = ok(app, &e.alice, "DescribeTags", &[]).await;
    assert!(
        !body.contains(&img.id),
        "the image's tags went with it: {body}"
    );

    // Regions, zones, account attributes, instance types (with the AWS-named aliases).
    let body = ok(app, &e.alice, "DescribeRegions", &[]).await;
    assert_eq!(texts(&body, "regionName"), ["kumo-1"]);
    let body = ok(
        app,
        &e.alice,
        "DescribeAvailabilityZones",
        &[
            ("Filter.1.Name", "state"),
            ("Filter.1.Value.1", "available"),
        ],
    )
    .await;
    assert_eq!(texts(&body, "zoneName"), ["kumo-1a"]);
    let body = ok(
        app,
        &e.alice,
        "DescribeAccountAttributes",
        &[("AttributeName.1", "supported-platforms")],
    )
    .await;
    assert_eq!(texts(&body, "attributeValue"), ["VPC"]);
    let body = ok(
        app,
        &e.alice,
        "DescribeInstanceTypes",
        &[("InstanceType.1", "nano"), ("InstanceType.2", "t3.micro")],
    )
    .await;
    assert_eq!(texts(&body, "instanceType"), ["nano", "t3.micro"]);
    assert_eq!(
        texts(&body, "burstablePerformanceSupported"),
        ["false", "false"]
    );
    assert_eq!(texts(&body, "sizeInMiB"), ["256", "512"]);
    fails(
        app,
        &e.alice,
        "DescribeInstanceTypes",
        &[("InstanceType.1", "m5.24xlarge")],
        400,
        "InvalidInstanceType",
    )
    .await;
    // An alias launches the kumo type and reads back as asked.
    let id = run_one(app, &e.alice, &e.subnet1, &[]).await;
    let _ = id;
    let mut p = run_params(&e.subnet1);
    p.retain(|(k, _)| *k != "InstanceType");
    p.push(("InstanceType", "t3.micro"));
    let body = ok(app, &e.alice, "RunInstances", &p).await;
    assert_eq!(texts(&body, "instanceType"), ["t3.micro"]);
    let iid = texts(&body, "instanceId").pop().unwrap();
    let (inst, _) = instance::find_in(app, &Scope::within("p1"), &iid)
        .await
        .unwrap();
    assert_eq!(inst.instance_type, "micro");
}

/// A security group of one VPC cannot go onto an instance in another VPC's subnet (EC2's
/// `InvalidParameter`); nothing is made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_instances_refuses_a_group_of_another_vpc() {
    let e = env().await;
    let app = &e.app;
    let vpc = texts(
        &ok(app, &e.alice, "CreateVpc", &[("CidrBlock", "10.9.0.0/16")]).await,
        "vpcId",
    )
    .remove(0);
    let sg = texts(
        &ok(
            app,
            &e.alice,
            "CreateSecurityGroup",
            &[
                ("GroupName", "web"),
                ("GroupDescription", "web"),
                ("VpcId", vpc.as_str()),
            ],
        )
        .await,
        "groupId",
    )
    .remove(0);
    let mut p = run_params(&e.subnet1);
    p.push(("SecurityGroupId.1", sg.as_str()));
    let m = fails(app, &e.alice, "RunInstances", &p, 400, "InvalidParameter").await;
    assert!(m.contains(&sg) && m.contains(&e.subnet1), "{m}");
    assert_eq!(instance_count(app, "p1").await, 0);
    // In a subnet of its own VPC it is fine.
    let sub = texts(
        &ok(
            app,
            &e.alice,
            "CreateSubnet",
            &[("VpcId", vpc.as_str()), ("CidrBlock", "10.9.1.0/24")],
        )
        .await,
        "subnetId",
    )
    .remove(0);
    run_one(app, &e.alice, &sub, &[("SecurityGroupId.1", sg.as_str())]).await;
}
