//! `ModifyVolume` and `DescribeVolumesModifications` through the real router on a real store with
//! one host and no agent: the host's report of the new size is made by hand.

#![allow(clippy::unwrap_used)]

mod ec2_support;
mod support;

use ec2_support::*;
use kumo_server::app::scope::Scope;
use kumo_server::app::{quota, volume};
use kumo_types::{UpdateQuotasRequest, VolumeState, VolumeStatus};

fn one(xml: &str, name: &str) -> String {
    texts(xml, name).into_iter().next().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volumes_grow_change_label_and_report_their_modification() {
    let e = env().await;
    let app = &e.app;
    let body = ok(
        app,
        &e.alice,
        "CreateVolume",
        &[("AvailabilityZone", "kumo-1a"), ("Size", "1")],
    )
    .await;
    let vol = one(&body, "volumeId");
    let v = vol.as_str();

    // Never modified: EC2's own error for a named volume.
    fails(
        app,
        &e.alice,
        "DescribeVolumesModifications",
        &[("VolumeId.1", v)],
        400,
        "InvalidVolumeModification.NotFound",
    )
    .await;
    // Bad requests change nothing.
    let m = fails(
        app,
        &e.alice,
        "ModifyVolume",
        &[("VolumeId", v), ("Size", "1")],
        400,
        "InvalidParameterCombination",
    )
    .await;
    assert!(m.contains("Nothing to modify"), "{m}");
    fails(
        app,
        &e.alice,
        "ModifyVolume",
        &[("VolumeId", v), ("Iops", "5000")],
        400,
        "InvalidParameterValue",
    )
    .await;
    fails(
        app,
        &e.alice,
        "ModifyVolume",
        &[("VolumeId", v), ("Size", "70000")],
        400,
        "InvalidParameterValue",
    )
    .await;
    fails(
        app,
        &e.alice,
        "ModifyVolume",
        &[("Size", "2")],
        400,
        "MissingParameter",
    )
    .await;
    fails(
        app,
        &e.alice,
        "ModifyVolume",
        &[("VolumeId", "vol-0123456789abcdef0"), ("Size", "2")],
        400,
        "InvalidVolume.NotFound",
    )
    .await;
    // Another project's volume does not exist for bob; a reader may not modify.
    fails(
        app,
        &e.bob,
        "ModifyVolume",
        &[("VolumeId", v), ("Size", "2")],
        400,
        "InvalidVolume.NotFound",
    )
    .await;
    fails(
        app,
        &e.rita,
        "ModifyVolume",
        &[("VolumeId", v), ("Size", "2")],
        403,
        "UnauthorizedOperation",
    )
    .await;
    fails(
        app,
        &e.alice,
        "ModifyVolume",
        &[("VolumeId", v), ("Size", "2"), ("DryRun", "true")],
        412,
        "DryRunOperation",
    )
    .await;
    let d = ok(app, &e.alice, "DescribeVolumes", &[("VolumeId.1", v)]).await;
    assert_eq!(one(&d, "size"), "1", "{d}");

    // Grow: the record and the quota change at once; the modification waits for the host.
    let body = ok(
        app,
        &e.alice,
        "ModifyVolume",
        &[("VolumeId", v), ("Size", "3")],
    )
    .await;
    assert_eq!(one(&body, "modificationState"), "modifying", "{body}");
    assert_eq!(
        (one(&body, "originalSize"), one(&body, "targetSize")),
        ("1".into(), "3".into())
    );
    assert_eq!(one(&body, "targetVolumeType"), "gp2", "{body}");
    let d = ok(app, &e.alice, "DescribeVolumes", &[("VolumeId.1", v)]).await;
    assert_eq!(one(&d, "size"), "3", "{d}");
    let usage = quota::usage(app, "p1").await.unwrap();
    assert_eq!(usage.volume_gib, 3, "{usage:?}");
    let m = fails(
        app,
        &e.alice,
        "ModifyVolume",
        &[("VolumeId", v), ("Size", "4")],
        400,
        "IncorrectModificationState",
    )
    .await;
    assert!(m.contains("3 GiB"), "{m}");
    let d = ok(
        app,
        &e.alice,
        "DescribeVolumesModifications",
        &[("VolumeId.1", v)],
    )
    .await;
    assert_eq!(one(&d, "modificationState"), "modifying", "{d}");
    assert!(texts(&d, "endTime").is_empty(), "{d}");

    // The host reports the new size: completed, with an end time that stays.
    volume::report_status(
        app,
        v,
        VolumeStatus {
            state: VolumeState::Available,
            message: None,
            size_bytes: 3 << 30,
            plugged_into: None,
        },
    )
    .await
    .unwrap();
    let d = ok(app, &e.alice, "DescribeVolumesModifications", &[]).await;
    assert_eq!(one(&d, "modificationState"), "completed", "{d}");
    assert_eq!(one(&d, "progress"), "100", "{d}");
    let end = one(&d, "endTime");
    assert!(!end.is_empty(), "{d}");
    let again = ok(
        app,
        &e.alice,
        "DescribeVolumesModifications",
        &[
            ("Filter.1.Name", "modification-state"),
            ("Filter.1.Value.1", "completed"),
        ],
    )
    .await;
    assert_eq!(one(&again, "endTime"), end, "{again}");
    let none = ok(
        app,
        &e.alice,
        "DescribeVolumesModifications",
        &[
            ("Filter.1.Name", "modification-state"),
            ("Filter.1.Value.1", "modifying"),
        ],
    )
    .await;
    assert!(texts(&none, "volumeId").is_empty(), "{none}");
    // Bob lists no modifications of alice's.
    let bobs = ok(app, &e.bob, "DescribeVolumesModifications", &[]).await;
    assert!(texts(&bobs, "volumeId").is_empty(), "{bobs}");

    // Volumes never shrink.
    let m = fails(
        app,
        &e.alice,
        "ModifyVolume",
        &[("VolumeId", v), ("Size", "2")],
        400,
        "InvalidParameterValue",
    )
    .await;
    assert!(m.contains("smaller"), "{m}");
    // The label changes when both map onto the same kumo volume type (here: the default).
    let body = ok(
        app,
        &e.alice,
        "ModifyVolume",
        &[("VolumeId", v), ("VolumeType", "gp3")],
    )
    .await;
    assert_eq!(one(&body, "modificationState"), "completed", "{body}");
    assert_eq!(one(&body, "originalVolumeType"), "gp2", "{body}");
    let d = ok(app, &e.alice, "DescribeVolumes", &[("VolumeId.1", v)]).await;
    assert_eq!(one(&d, "volumeType"), "gp3", "{d}");
    assert_eq!(one(&d, "iops"), "3000", "{d}");

    // The volume GiB quota holds: 3 used, a limit of 5 refuses growing to 10.
    quota::set(
        app,
        &Scope::system(),
        "p1",
        UpdateQuotasRequest {
            volume_gib: Some(5),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let m = fails(
        app,
        &e.alice,
        "ModifyVolume",
        &[("VolumeId", v), ("Size", "10")],
        400,
        "VolumeLimitExceeded",
    )
    .await;
    assert!(m.contains("volume_gib") || m.contains("GiB"), "{m}");
    let d = ok(app, &e.alice, "DescribeVolumes", &[("VolumeId.1", v)]).await;
    assert_eq!(one(&d, "size"), "3", "{d}");
}

/// A resource tagged through EC2 and deleted through `/v1` takes its tags with it (DescribeTags
/// lists live resources only).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resources_deleted_through_v1_leave_no_tags() {
    let e = env().await;
    let app = &e.app;
    let p1 = Scope::within("p1");
    let body = ok(
        app,
        &e.alice,
        "CreateVolume",
        &[
            ("AvailabilityZone", "kumo-1a"),
            ("Size", "1"),
            ("TagSpecification.1.ResourceType", "volume"),
            ("TagSpecification.1.Tag.1.Key", "team"),
            ("TagSpecification.1.Tag.1.Value", "a"),
        ],
    )
    .await;
    let vol = one(&body, "volumeId");
    ok(
        app,
        &e.alice,
        "CreateTags",
        &[
            ("ResourceId.1", e.subnet1.as_str()),
            ("Tag.1.Key", "team"),
            ("Tag.1.Value", "a"),
        ],
    )
    .await;
    let tagged = ok(app, &e.alice, "DescribeTags", &[]).await;
    let mut ids = texts(&tagged, "resourceId");
    ids.sort();
    let mut want = vec![vol.clone(), e.subnet1.clone()];
    want.sort();
    assert_eq!(ids, want, "{tagged}");

    volume::delete(app, &p1, &vol).await.unwrap();
    volume::finalize_delete(app, &vol).await.unwrap();
    kumo_server::app::network::delete_subnet(app, &p1, &e.subnet1)
        .await
        .unwrap();
    let left = ok(app, &e.alice, "DescribeTags", &[]).await;
    assert!(texts(&left, "resourceId").is_empty(), "{left}");
}
