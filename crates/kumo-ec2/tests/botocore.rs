//! Requests signed by real botocore (see `fixtures/gen.py` for how they were
//! made) must parse to what botocore serialised and verify with the secret
//! they were signed with — and with nothing else.

#![allow(clippy::unwrap_used)]

use chrono::{DateTime, Duration, Utc};
use kumo_ec2::{Parsed, Request, Service, parse_request};
use serde_json::Value;

const FIXTURES: [(&str, &str); 8] = [
    (
        "ec2_describe_instances",
        include_str!("fixtures/ec2_describe_instances.json"),
    ),
    (
        "ec2_run_instances",
        include_str!("fixtures/ec2_run_instances.json"),
    ),
    (
        "ec2_describe_spot_price_history",
        include_str!("fixtures/ec2_describe_spot_price_history.json"),
    ),
    (
        "ec2_describe_vpcs_empty_list",
        include_str!("fixtures/ec2_describe_vpcs_empty_list.json"),
    ),
    (
        "ec2_create_tags",
        include_str!("fixtures/ec2_create_tags.json"),
    ),
    (
        "sts_get_caller_identity",
        include_str!("fixtures/sts_get_caller_identity.json"),
    ),
    (
        "ec2_presigned_describe_instances",
        include_str!("fixtures/ec2_presigned_describe_instances.json"),
    ),
    (
        "sts_presigned_get_caller_identity",
        include_str!("fixtures/sts_presigned_get_caller_identity.json"),
    ),
];

struct Fixture {
    name: &'static str,
    json: Value,
    request: Request,
}

impl Fixture {
    fn load(name: &'static str, text: &str) -> Self {
        let json: Value = serde_json::from_str(text).unwrap();
        let s = |key: &str| json[key].as_str().unwrap().to_owned();
        let headers = json["headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                (
                    h[0].as_str().unwrap().to_owned(),
                    h[1].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let request = Request {
            method: s("method"),
            path: s("path"),
            query: s("query"),
            headers,
            body: s("body").into_bytes(),
        };
        Self {
            name,
            json,
            request,
        }
    }

    fn all() -> Vec<Self> {
        FIXTURES.iter().map(|(n, t)| Self::load(n, t)).collect()
    }

    fn one(name: &str) -> Self {
        Self::all().into_iter().find(|f| f.name == name).unwrap()
    }

    fn secret(&self) -> &str {
        self.json["secret_access_key"].as_str().unwrap()
    }

    fn now(&self) -> DateTime<Utc> {
        self.json["now"].as_str().unwrap().parse().unwrap()
    }

    fn expect(&self, key: &str) -> &str {
        self.json["expect"][key].as_str().unwrap()
    }

    fn parsed(&self) -> Parsed {
        parse_request(&self.request).unwrap_or_else(|e| panic!("{}: {e}", self.name))
    }
}

#[test]
fn every_fixture_parses_to_what_botocore_serialised() {
    for f in Fixture::all() {
        let p = f.parsed();
        assert_eq!(p.service.as_str(), f.expect("service"), "{}", f.name);
        assert_eq!(p.region, f.expect("region"), "{}", f.name);
        assert_eq!(p.action, f.expect("action"), "{}", f.name);
        assert_eq!(p.version, f.expect("version"), "{}", f.name);
        assert_eq!(
            p.access_key_id,
            f.json["access_key_id"].as_str().unwrap(),
            "{}",
            f.name
        );
        // Every parameter botocore sent is there with its decoded value...
        let expected = f.json["expect"]["params"].as_array().unwrap();
        let root = p.params.root();
        for pair in expected {
            let (k, v) = (pair[0].as_str().unwrap(), pair[1].as_str().unwrap());
            assert_eq!(root.opt_str(k).as_deref(), Some(v), "{}: {k}", f.name);
        }
        // ...and nothing else (the presign parameters are not operation input).
        assert_eq!(p.params.finish(), Ok(()), "{}", f.name);
    }
}

#[test]
fn every_fixture_verifies_with_its_secret_and_clock() {
    for f in Fixture::all() {
        let p = f.parsed();
        p.verify(&f.request, f.secret(), f.now())
            .unwrap_or_else(|e| panic!("{}: {e}", f.name));
        // A few minutes of clock difference either way is fine.
        let later = f.now() + Duration::minutes(4);
        assert_eq!(
            p.verify(&f.request, f.secret(), later),
            Ok(()),
            "{}",
            f.name
        );
        let earlier = f.now() - Duration::minutes(14);
        assert_eq!(
            p.verify(&f.request, f.secret(), earlier),
            Ok(()),
            "{}",
            f.name
        );
    }
}

#[test]
fn a_wrong_secret_never_verifies() {
    for f in Fixture::all() {
        let p = f.parsed();
        let err = p.verify(&f.request, "not-the-secret", f.now()).unwrap_err();
        assert_eq!(err.code(), "SignatureDoesNotMatch", "{}", f.name);
        assert_eq!(err.http_status(), 403);
        assert!(
            err.message()
                .starts_with("The request signature we calculated")
        );
    }
}

#[test]
fn tampering_with_the_body_breaks_the_signature() {
    let mut f = Fixture::one("ec2_run_instances");
    let body = String::from_utf8(f.request.body.clone()).unwrap();
    f.request.body = body.replace("MaxCount=2", "MaxCount=9").into_bytes();
    let p = f.parsed();
    assert_eq!(p.params.root().opt_str("MaxCount").as_deref(), Some("9"));
    assert_eq!(
        p.verify(&f.request, f.secret(), f.now())
            .unwrap_err()
            .code(),
        "SignatureDoesNotMatch"
    );
}

#[test]
fn tampering_with_a_signed_header_breaks_the_signature() {
    let mut f = Fixture::one("ec2_describe_instances");
    for (name, value) in &mut f.request.headers {
        if name.eq_ignore_ascii_case("host") {
            *value = "evil.example:8080".to_owned();
        }
    }
    let p = f.parsed();
    assert_eq!(
        p.verify(&f.request, f.secret(), f.now())
            .unwrap_err()
            .code(),
        "SignatureDoesNotMatch"
    );
}

#[test]
fn unsigned_headers_may_change() {
    let mut f = Fixture::one("ec2_describe_instances");
    f.request
        .headers
        .retain(|(n, _)| !n.eq_ignore_ascii_case("user-agent"));
    f.request
        .headers
        .push(("User-Agent".into(), "something else".into()));
    f.request
        .headers
        .push(("X-Forwarded-For".into(), "10.0.0.1".into()));
    let p = f.parsed();
    assert_eq!(p.verify(&f.request, f.secret(), f.now()), Ok(()));
}

#[test]
fn header_signed_requests_expire_after_fifteen_minutes() {
    let f = Fixture::one("ec2_describe_instances");
    let p = f.parsed();
    let late = f.now() + Duration::minutes(15) + Duration::seconds(1);
    let err = p.verify(&f.request, f.secret(), late).unwrap_err();
    assert_eq!(err.code(), "RequestExpired");
    assert_eq!(err.message(), "Request has expired.");
    assert_eq!(err.http_status(), 400);
    // Exactly fifteen minutes is still inside the window.
    let edge = f.now() + Duration::minutes(15);
    assert_eq!(p.verify(&f.request, f.secret(), edge), Ok(()));
    // A request signed more than fifteen minutes in the future is refused too.
    let early = f.now() - Duration::minutes(16);
    let err = p.verify(&f.request, f.secret(), early).unwrap_err();
    assert_eq!(err.code(), "RequestExpired");
    assert_eq!(
        err.message(),
        "Signature not yet current: 20261125T190000Z is still later than \
         20261125T185900Z (20261125T184400Z + 15 min.)"
    );
}

#[test]
fn sts_reports_skew_as_signature_expired() {
    let f = Fixture::one("sts_get_caller_identity");
    let p = f.parsed();
    assert_eq!(p.service, Service::Sts);
    let late = f.now() + Duration::minutes(20);
    let err = p.verify(&f.request, f.secret(), late).unwrap_err();
    assert_eq!(err.code(), "SignatureDoesNotMatch");
    assert_eq!(
        err.message(),
        "Signature expired: 20261125T190000Z is now earlier than \
         20261125T190500Z (20261125T192000Z - 15 min.)"
    );
}

#[test]
fn presigned_urls_last_until_x_amz_expires() {
    let f = Fixture::one("ec2_presigned_describe_instances");
    assert_eq!(f.json["expires"], 300);
    let p = f.parsed();
    // Inside the 300 s validity, and long after the 15-minute header window
    // would have closed for a longer-lived URL.
    let inside = f.now() + Duration::seconds(300);
    assert_eq!(p.verify(&f.request, f.secret(), inside), Ok(()));
    let after = f.now() + Duration::seconds(301);
    let err = p.verify(&f.request, f.secret(), after).unwrap_err();
    assert_eq!(err.code(), "RequestExpired");

    let sts = Fixture::one("sts_presigned_get_caller_identity");
    let p = sts.parsed();
    let inside = sts.now() + Duration::seconds(899);
    assert_eq!(p.verify(&sts.request, sts.secret(), inside), Ok(()));
    let after = sts.now() + Duration::seconds(901);
    assert_eq!(
        p.verify(&sts.request, sts.secret(), after)
            .unwrap_err()
            .code(),
        "RequestExpired"
    );
}

#[test]
fn presigned_urls_cannot_have_their_parameters_changed() {
    let mut f = Fixture::one("ec2_presigned_describe_instances");
    f.request.query = f
        .request
        .query
        .replace("i-0123456789abcdef0", "i-0000000000000000f");
    let p = f.parsed();
    assert_eq!(
        p.verify(&f.request, f.secret(), f.now())
            .unwrap_err()
            .code(),
        "SignatureDoesNotMatch"
    );
    // botocore signs presigned URLs for the operation's method (POST); the
    // method is part of what is signed.
    let mut f = Fixture::one("ec2_presigned_describe_instances");
    assert_eq!(f.request.method, "POST");
    f.request.method = "GET".to_owned();
    let p = f.parsed();
    assert_eq!(
        p.verify(&f.request, f.secret(), f.now())
            .unwrap_err()
            .code(),
        "SignatureDoesNotMatch"
    );
    // Nor their expiry.
    let mut f = Fixture::one("ec2_presigned_describe_instances");
    f.request.query = f
        .request
        .query
        .replace("X-Amz-Expires=300", "X-Amz-Expires=3000");
    let p = f.parsed();
    assert_eq!(
        p.verify(&f.request, f.secret(), f.now())
            .unwrap_err()
            .code(),
        "SignatureDoesNotMatch"
    );
}

#[test]
fn run_instances_reads_through_typed_getters() {
    let f = Fixture::one("ec2_run_instances");
    let p = f.parsed();
    let params = &p.params;
    let root = params.root();
    assert_eq!(root.str("ImageId").unwrap(), "ami-0abcdef1234567890");
    assert_eq!(root.i64("MinCount", 1..=1000).unwrap(), 1);
    assert_eq!(root.i64("MaxCount", 1..=1000).unwrap(), 2);
    assert_eq!(root.str("KeyName").unwrap(), "my key");
    assert_eq!(
        root.opt_enum("InstanceType", &["t3.micro", "t3.small"])
            .unwrap(),
        Some("t3.micro")
    );
    assert_eq!(params.id_list("SecurityGroupId").unwrap(), ["sg-1", "sg-2"]);
    assert_eq!(
        root.opt_blob("UserData").unwrap().unwrap(),
        "#!/bin/sh\necho hello w\u{f6}rld\n".as_bytes()
    );
    let bdms = root.list("BlockDeviceMapping").unwrap();
    assert_eq!(bdms.len(), 1);
    assert_eq!(bdms[0].str("DeviceName").unwrap(), "/dev/sda1");
    let ebs = bdms[0].child("Ebs");
    assert_eq!(ebs.i64("VolumeSize", 1..=16384).unwrap(), 20);
    assert_eq!(ebs.opt_bool("DeleteOnTermination").unwrap(), Some(true));
    assert_eq!(
        ebs.opt_enum("VolumeType", &["gp2", "gp3", "standard"])
            .unwrap(),
        Some("gp3")
    );
    let specs = params.tag_specifications().unwrap();
    assert_eq!(specs.len(), 2);
    assert_eq!(specs[0].resource_type.as_deref(), Some("instance"));
    assert_eq!(specs[0].tags.len(), 2);
    assert_eq!(specs[0].tags[0].key, "Name");
    assert_eq!(specs[0].tags[0].value.as_deref(), Some("web 1"));
    assert_eq!(specs[0].tags[1].value.as_deref(), Some("prod/eu+1"));
    assert_eq!(specs[1].resource_type.as_deref(), Some("volume"));
    assert_eq!(specs[1].tags[0].value.as_deref(), Some(""));
    assert_eq!(params.client_token().unwrap().as_deref(), Some("token-123"));
    assert!(params.dry_run().unwrap());
    assert_eq!(params.finish(), Ok(()));
}

#[test]
fn describe_instances_filters_and_paging() {
    let f = Fixture::one("ec2_describe_instances");
    let p = f.parsed();
    let params = &p.params;
    assert_eq!(
        params.id_list("InstanceId").unwrap(),
        ["i-0123456789abcdef0", "i-0fedcba9876543210"]
    );
    let filters = params.filters().unwrap();
    assert_eq!(filters.len(), 2);
    assert_eq!(filters[0].name, "instance-state-name");
    assert_eq!(filters[0].values, ["running", "pending"]);
    assert_eq!(filters[1].name, "tag:Name");
    assert_eq!(filters[1].values, ["web server & co", "caf\u{e9} <1>"]);
    assert_eq!(params.max_results(5..=1000).unwrap(), Some(10));
    assert_eq!(params.next_token().as_deref(), Some("tok/+="));
    assert_eq!(params.finish(), Ok(()));
}

#[test]
fn partial_reads_leave_unknown_parameters() {
    let f = Fixture::one("ec2_describe_instances");
    let p = f.parsed();
    let _ = p.params.filters().unwrap();
    let err = p.params.finish().unwrap_err();
    assert_eq!(err.code(), "UnknownParameter");
    assert_eq!(
        err.message(),
        "The parameter InstanceId.1 is not recognized"
    );
    assert_eq!(
        p.params.unread(),
        ["InstanceId.1", "InstanceId.2", "MaxResults", "NextToken"]
    );
}

#[test]
fn timestamps_parse_with_and_without_fractions() {
    let f = Fixture::one("ec2_describe_spot_price_history");
    let p = f.parsed();
    let root = p.params.root();
    let start = root.opt_timestamp("StartTime").unwrap().unwrap();
    let end = root.opt_timestamp("EndTime").unwrap().unwrap();
    assert_eq!(start.to_rfc3339(), "2026-11-25T18:00:00+00:00");
    assert_eq!((end - start).num_milliseconds(), 30 * 60 * 1000 + 250);
    assert_eq!(p.params.id_list("InstanceType").unwrap(), ["t3.micro"]);
    assert_eq!(p.params.finish(), Ok(()));
}

#[test]
fn an_empty_list_is_simply_absent() {
    let f = Fixture::one("ec2_describe_vpcs_empty_list");
    let p = f.parsed();
    assert!(p.params.is_empty());
    assert_eq!(p.params.id_list("VpcId").unwrap(), Vec::<String>::new());
    assert_eq!(p.params.finish(), Ok(()));
}

#[test]
fn create_tags_keeps_an_empty_value() {
    let f = Fixture::one("ec2_create_tags");
    let p = f.parsed();
    assert_eq!(
        p.params.id_list("ResourceId").unwrap(),
        ["i-0123456789abcdef0"]
    );
    let tags = p.params.tags().unwrap();
    assert_eq!(tags.len(), 1);
    assert_eq!(tags[0].key, "k");
    assert_eq!(tags[0].value.as_deref(), Some(""));
    assert_eq!(p.params.finish(), Ok(()));
}
