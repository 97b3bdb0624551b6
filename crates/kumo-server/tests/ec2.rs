//! The EC2/STS front end through the real router (`/`, SigV4-signed) on a real store, part 1:
//! authentication (bad signatures, skewed clocks, unknown keys, other regions) and its audit,
//! unknown actions, parameters and filters, pagination. Part 2 is `ec2_compute.rs`.

#![allow(clippy::unwrap_used)]

mod ec2_support;
mod support;

use chrono::{Duration, Utc};
use ec2_support::*;
use kumo_server::identity::Caller;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signatures_clocks_keys_and_regions_are_checked() {
    let e = env().await;
    let app = &e.app;
    // A good signature: the STS identity of the key's user and project.
    let sts = Call {
        service: "sts",
        ..Call::ec2(&e.alice)
    };
    let (s, body) = sts.send(app, "GetCallerIdentity", &[]).await;
    assert_eq!(s, 200, "{body}");
    let account = texts(&body, "Account").pop().unwrap();
    assert_eq!(account.len(), 12);
    assert!(account.bytes().all(|b| b.is_ascii_digit()));
    assert_eq!(
        texts(&body, "Arn"),
        [format!("arn:aws:iam::{account}:user/alice")]
    );

    // The wrong secret.
    let wrong = Call {
        secret: Some("0000000000000000000000000000000000000000"),
        ..Call::ec2(&e.alice)
    };
    let (s, body) = wrong.send(app, "DescribeInstances", &[]).await;
    assert_eq!(s, 403, "{body}");
    assert_eq!(texts(&body, "Code"), ["SignatureDoesNotMatch"]);

    // Signed 20 minutes ago, or 20 minutes in the future.
    for skew in [-20, 20] {
        let skewed = Call {
            time: Utc::now() + Duration::minutes(skew),
            ..Call::ec2(&e.alice)
        };
        let (s, body) = skewed.send(app, "DescribeInstances", &[]).await;
        assert_eq!(
            (s, texts(&body, "Code")),
            (400, vec!["RequestExpired".to_string()])
        );
    }

    // An unknown key: EC2 and STS say it their way.
    let ghost = Key {
        id: "AKIAAAAAAAAAAAAAAAAA".into(),
        secret: "x".into(),
    };
    let (s, body) = Call::ec2(&ghost).send(app, "DescribeInstances", &[]).await;
    assert_eq!(
        (s, texts(&body, "Code")),
        (401, vec!["AuthFailure".to_string()])
    );
    let (s, body) = Call {
        service: "sts",
        ..Call::ec2(&ghost)
    }
    .send(app, "GetCallerIdentity", &[])
    .await;
    assert_eq!(s, 403);
    assert!(
        body.contains("<ErrorResponse"),
        "STS error envelope: {body}"
    );
    assert_eq!(texts(&body, "Code"), ["InvalidClientTokenId"]);

    // Another region.
    let (s, body) = Call {
        region: "us-east-1",
        ..Call::ec2(&e.alice)
    }
    .send(app, "DescribeInstances", &[])
    .await;
    assert_eq!(s, 403);
    assert!(
        body.contains("not &apos;us-east-1&apos;") || body.contains("'us-east-1'"),
        "{body}"
    );

    // Every failure is in the audit log, with its key and code.
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
    let ec2_failures: Vec<_> = records
        .iter()
        .filter(|r| r.api == "ec2" && r.status >= 400)
        .collect();
    assert!(
        ec2_failures.iter().any(|r| {
            r.error_code.as_deref() == Some("SignatureDoesNotMatch")
                && r.credential.as_deref() == Some(e.alice.id.as_str())
        }),
        "{ec2_failures:?}"
    );
    assert!(
        ec2_failures
            .iter()
            .any(|r| r.error_code.as_deref() == Some("AuthFailure"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_actions_and_parameters_are_refused_never_ignored() {
    let e = env().await;
    let app = &e.app;
    let m = fails(
        app,
        &e.alice,
        "FrobnicateInstances",
        &[],
        400,
        "InvalidAction",
    )
    .await;
    assert!(m.contains("FrobnicateInstances"), "{m}");
    let m = fails(
        app,
        &e.alice,
        "DescribeRegions",
        &[("Bogus", "1")],
        400,
        "UnknownParameter",
    )
    .await;
    assert!(m.contains("Bogus"), "{m}");
    // On a create: refused before anything is made.
    let mut p = run_params(&e.subnet1);
    p.push(("Ipv6AddressCount", "1"));
    let m = fails(app, &e.alice, "RunInstances", &p, 400, "UnknownParameter").await;
    assert!(m.contains("Ipv6AddressCount"), "{m}");
    assert_eq!(instance_count(app, "p1").await, 0);
    // A value kumo cannot honour is a clear error.
    let mut p = run_params(&e.subnet1);
    p.push(("Monitoring.Enabled", "true"));
    let m = fails(app, &e.alice, "RunInstances", &p, 400, "Unsupported").await;
    assert!(m.contains("Monitoring.Enabled"), "{m}");
    // An unsupported filter.
    fails(
        app,
        &e.alice,
        "DescribeInstances",
        &[
            ("Filter.1.Name", "no-such-filter"),
            ("Filter.1.Value.1", "x"),
        ],
        400,
        "InvalidParameterValue",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagination_follows_tokens_within_ec2_bounds() {
    let e = env().await;
    let app = &e.app;
    let mut p = run_params(&e.subnet1);
    p.retain(|(k, _)| *k != "MaxCount");
    p.push(("MaxCount", "7"));
    let body = ok(app, &e.alice, "RunInstances", &p).await;
    let mut made = texts(&body, "instanceId");
    assert_eq!(made.len(), 7);
    assert_eq!(texts(&body, "reservationId").len(), 1, "one reservation");
    made.sort();
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut q = vec![("MaxResults", "5")];
        if let Some(t) = &token {
            q.push(("NextToken", t.as_str()));
        }
        let body = ok(app, &e.alice, "DescribeInstances", &q).await;
        seen.extend(texts(&body, "instanceId"));
        pages += 1;
        token = texts(&body, "nextToken").pop();
        if token.is_none() {
            break;
        }
    }
    assert_eq!(pages, 2);
    assert_eq!(seen, made, "every instance once, in order");
    fails(
        app,
        &e.alice,
        "DescribeInstances",
        &[("MaxResults", "4")],
        400,
        "InvalidParameterValue",
    )
    .await;
    fails(
        app,
        &e.alice,
        "DescribeInstances",
        &[("MaxResults", "5"), ("InstanceId.1", &made[0])],
        400,
        "InvalidParameterCombination",
    )
    .await;
    fails(
        app,
        &e.alice,
        "DescribeInstances",
        &[("NextToken", "garbage")],
        400,
        "InvalidPaginationToken",
    )
    .await;
}
