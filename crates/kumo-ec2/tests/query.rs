//! The ec2 query format: decoding, the parameter tree, typed getters and
//! consumed-parameter tracking.

#![allow(clippy::unwrap_used)]

use chrono::{DateTime, Utc};
use kumo_ec2::sigv4::{self, SigningParams};
use kumo_ec2::{Params, Request, parse_request};

fn params(pairs: &[(&str, &str)]) -> Params {
    Params::from_pairs(pairs.iter().map(|(k, v)| (*k, *v))).unwrap()
}

fn form(body: &[u8]) -> Request {
    Request::new("POST", "/")
        .with_header(
            "Content-Type",
            "application/x-www-form-urlencoded; charset=utf-8",
        )
        .with_body(body.to_vec())
}

fn now() -> DateTime<Utc> {
    "2026-11-25T19:00:00Z".parse().unwrap()
}

/// A request signed for `service`, as a client would send it.
fn signed(service: &str, target: &str, body: &str) -> Request {
    let mut req = Request::new("POST", target)
        .with_header("Host", "kumo.example")
        .with_header(
            "Content-Type",
            "application/x-www-form-urlencoded; charset=utf-8",
        )
        .with_body(body);
    let params = SigningParams {
        access_key_id: "AKIAKUMO",
        secret_access_key: "s3cret",
        region: "kumo-1",
        service,
        time: now(),
    };
    sigv4::sign(&mut req, &params).unwrap();
    req
}

#[test]
fn sparse_and_out_of_order_indexes_come_back_in_numeric_order() {
    let p = params(&[
        ("InstanceId.3", "c"),
        ("InstanceId.10", "j"),
        ("InstanceId.1", "a"),
        ("InstanceId.2", "b"),
    ]);
    assert_eq!(p.id_list("InstanceId").unwrap(), ["a", "b", "c", "j"]);
    assert_eq!(p.finish(), Ok(()));
}

#[test]
fn nested_lists_and_structures() {
    let p = params(&[
        ("Filter.2.Name", "tag:env"),
        ("Filter.2.Value.2", "dev"),
        ("Filter.2.Value.1", "prod"),
        ("Filter.1.Name", "vpc-id"),
        ("Filter.1.Value.1", "vpc-1"),
        ("BlockDeviceMapping.1.DeviceName", "/dev/sdb"),
        ("BlockDeviceMapping.1.Ebs.VolumeSize", "8"),
        ("BlockDeviceMapping.1.Ebs.Encrypted", "false"),
    ]);
    let filters = p.filters().unwrap();
    assert_eq!(filters.len(), 2);
    assert_eq!(
        (filters[0].name.as_str(), filters[0].values.as_slice()),
        ("vpc-id", &["vpc-1".to_owned()][..])
    );
    assert_eq!(filters[1].values, ["prod", "dev"]);
    let bdm = &p.root().list("BlockDeviceMapping").unwrap()[0];
    assert_eq!(bdm.name(), "BlockDeviceMapping.1");
    let ebs = bdm.child("Ebs");
    assert_eq!(
        ebs.path("VolumeSize"),
        "BlockDeviceMapping.1.Ebs.VolumeSize"
    );
    assert_eq!(ebs.i64("VolumeSize", 1..=16384).unwrap(), 8);
    // Not read yet: finish names it with its full path.
    let err = p.finish().unwrap_err();
    assert_eq!(err.code(), "UnknownParameter");
    assert_eq!(
        err.message(),
        "The parameter BlockDeviceMapping.1.DeviceName is not recognized"
    );
    assert_eq!(bdm.str("DeviceName").unwrap(), "/dev/sdb");
    assert_eq!(ebs.opt_bool("Encrypted").unwrap(), Some(false));
    assert_eq!(p.finish(), Ok(()));
}

#[test]
fn things_that_are_not_list_indexes_are_never_read() {
    let p = params(&[
        ("InstanceId.1", "a"),
        ("InstanceId.0", "zero"),
        ("InstanceId.01", "leading zero"),
        ("InstanceId.x", "letters"),
        ("InstanceIdentifier", "another name"),
    ]);
    assert_eq!(p.id_list("InstanceId").unwrap(), ["a"]);
    assert_eq!(
        p.unread(),
        [
            "InstanceId.0",
            "InstanceId.01",
            "InstanceId.x",
            "InstanceIdentifier"
        ]
    );
    assert_eq!(
        p.finish().unwrap_err().message(),
        "The parameter InstanceId.0 is not recognized"
    );
}

#[test]
fn a_list_element_with_unexpected_members_is_reported() {
    // `Filter.1.Values.1` is the plain-query spelling, not the ec2 one.
    let p = params(&[("Filter.1.Name", "n"), ("Filter.1.Values.1", "v")]);
    let filters = p.filters().unwrap();
    assert!(filters[0].values.is_empty());
    assert_eq!(
        p.finish().unwrap_err().message(),
        "The parameter Filter.1.Values.1 is not recognized"
    );
    // A missing required member is named with its full path.
    let p = params(&[("Filter.1.Value.1", "v")]);
    let err = p.filters().unwrap_err();
    assert_eq!(err.code(), "MissingParameter");
    assert_eq!(
        err.message(),
        "The request must contain the parameter Filter.1.Name"
    );
}

#[test]
fn duplicate_names_are_refused() {
    let err = Params::from_request(&form(b"DryRun=true&DryRun=false")).unwrap_err();
    assert_eq!(err.code(), "InvalidParameterValue");
    assert_eq!(
        err.message(),
        "The parameter DryRun is specified more than once"
    );
    // Also across the query string and the body.
    let req = Request::new("POST", "/?ImageId=ami-1")
        .with_header("Content-Type", "application/x-www-form-urlencoded")
        .with_body("ImageId=ami-2");
    assert_eq!(
        Params::from_request(&req).unwrap_err().code(),
        "InvalidParameterValue"
    );
}

#[test]
fn query_and_body_are_merged() {
    let req = Request::new("POST", "/?Action=DescribeVpcs&VpcId.1=vpc-q")
        .with_header("Content-Type", "application/x-www-form-urlencoded")
        .with_body("VpcId.2=vpc-b&Version=2016-11-15");
    let mut p = Params::from_request(&req).unwrap();
    assert_eq!(p.take("Action").as_deref(), Some("DescribeVpcs"));
    assert_eq!(p.take("Version").as_deref(), Some("2016-11-15"));
    assert_eq!(p.id_list("VpcId").unwrap(), ["vpc-q", "vpc-b"]);
    assert_eq!(p.finish(), Ok(()));
}

#[test]
fn plus_and_percent_twenty_are_spaces_and_percent_two_b_is_a_plus() {
    let p = Params::from_request(&form(b"A=x+y%20z&B=1%2B1&C=%26%3D%3F&D=caf%C3%A9&E=")).unwrap();
    let root = p.root();
    assert_eq!(root.opt_str("A").as_deref(), Some("x y z"));
    assert_eq!(root.opt_str("B").as_deref(), Some("1+1"));
    assert_eq!(root.opt_str("C").as_deref(), Some("&=?"));
    assert_eq!(root.opt_str("D").as_deref(), Some("caf\u{e9}"));
    assert_eq!(root.opt_str("E").as_deref(), Some(""));
    assert_eq!(p.finish(), Ok(()));
}

#[test]
fn names_are_decoded_too() {
    let p = Params::from_request(&form(b"Tag.1.Key=a%2Bb&Filter%2E1%2EName=x")).unwrap();
    assert_eq!(p.root().opt_str("Filter.1.Name").as_deref(), Some("x"));
    assert_eq!(p.tags().unwrap()[0].key, "a+b");
}

#[test]
fn non_utf8_is_refused() {
    let err = Params::from_request(&form(b"Name=%FF%FE")).unwrap_err();
    assert_eq!(err.code(), "MalformedQueryString");
    let err = Params::from_request(&form(b"Name=\xff")).unwrap_err();
    assert_eq!(err.code(), "MalformedQueryString");
    let err = Params::from_request(&Request::new("GET", "/?%C3=x")).unwrap_err();
    assert_eq!(err.code(), "MalformedQueryString");
    let err = Params::from_request(&form(b"Name=%E")).unwrap_err();
    assert_eq!(err.code(), "MalformedQueryString");
}

#[test]
fn only_form_bodies_are_accepted() {
    let req = Request::new("POST", "/")
        .with_header("Content-Type", "application/json")
        .with_body("{}");
    let err = Params::from_request(&req).unwrap_err();
    assert_eq!(err.code(), "MalformedQueryString");
    assert!(err.message().contains("application/json"));
    // Without a content type, a body is read as a form.
    let req = Request::new("POST", "/").with_body("A=1");
    assert_eq!(
        Params::from_request(&req)
            .unwrap()
            .root()
            .opt_str("A")
            .as_deref(),
        Some("1")
    );
}

#[test]
fn presign_parameters_are_not_operation_parameters() {
    let req = Request::new(
        "GET",
        "/?Action=X&X-Amz-Algorithm=a&X-Amz-Credential=c&X-Amz-Date=d&X-Amz-Expires=1\
         &X-Amz-SignedHeaders=host&X-Amz-Signature=s&X-Amz-Security-Token=t",
    );
    let mut p = Params::from_request(&req).unwrap();
    assert_eq!(p.take("Action").as_deref(), Some("X"));
    assert!(p.is_empty());
}

#[test]
fn empty_lists_and_empty_values() {
    // The plain query protocol's empty list marker.
    let p = params(&[("SecurityGroupId", "")]);
    assert!(p.id_list("SecurityGroupId").unwrap().is_empty());
    assert_eq!(p.finish(), Ok(()));
    // A scalar where a list belongs.
    let p = params(&[("SecurityGroupId", "sg-1")]);
    let err = p.id_list("SecurityGroupId").unwrap_err();
    assert_eq!(err.code(), "InvalidParameterValue");
    assert!(
        err.message().contains("SecurityGroupId.1"),
        "{}",
        err.message()
    );
    // Empty scalars are present-but-empty, and invalid where a type is needed.
    let p = params(&[("Description", ""), ("DryRun", ""), ("MaxCount", "")]);
    assert_eq!(p.root().str("Description").unwrap(), "");
    assert_eq!(p.dry_run().unwrap_err().code(), "InvalidParameterValue");
    assert_eq!(
        p.root().i64("MaxCount", 1..=10).unwrap_err().code(),
        "InvalidParameterValue"
    );
}

#[test]
fn typed_getters_name_the_parameter_and_what_is_allowed() {
    let p = params(&[
        ("MaxCount", "0"),
        ("MinCount", "two"),
        ("DryRun", "yes"),
        ("InstanceType", "t9.huge"),
        ("StartTime", "yesterday"),
        ("UserData", "not base64!"),
        ("Monitoring.Enabled", "TRUE"),
    ]);
    let root = p.root();
    let e = root.i64("MaxCount", 1..=1000).unwrap_err();
    assert_eq!(
        e.message(),
        "Value (0) for parameter MaxCount is invalid. Expected an integer from 1 to 1000."
    );
    let e = root.i64("MinCount", 1..=1000).unwrap_err();
    assert_eq!(
        e.message(),
        "Value (two) for parameter MinCount is invalid. Expected an integer from 1 to 1000."
    );
    let e = p.dry_run().unwrap_err();
    assert_eq!(
        e.message(),
        "Value (yes) for parameter DryRun is invalid. Expected true or false."
    );
    let e = root
        .enum_value("InstanceType", &["t3.micro", "t3.small"])
        .unwrap_err();
    assert_eq!(e.code(), "InvalidParameterValue");
    assert_eq!(
        e.message(),
        "Value (t9.huge) for parameter InstanceType is invalid. Allowed values: t3.micro, t3.small."
    );
    assert_eq!(
        root.opt_timestamp("StartTime").unwrap_err().code(),
        "InvalidParameterValue"
    );
    assert!(
        root.opt_blob("UserData")
            .unwrap_err()
            .message()
            .ends_with("Expected base64.")
    );
    assert_eq!(
        root.child("Monitoring").opt_bool("Enabled").unwrap(),
        Some(true)
    );
    let e = root.str("ImageId").unwrap_err();
    assert_eq!(e.code(), "MissingParameter");
    assert_eq!(
        e.message(),
        "The request must contain the parameter ImageId"
    );
    assert_eq!(
        root.enum_value("Tenancy", &["default"]).unwrap_err().code(),
        "MissingParameter"
    );
    // Absent optional values are simply absent.
    assert_eq!(root.opt_i64("Nope", 0..=1).unwrap(), None);
    assert_eq!(root.opt_bool("Nope").unwrap(), None);
    assert_eq!(root.opt_enum("Nope", &["a"]).unwrap(), None);
}

#[test]
fn long_values_are_shortened_in_messages() {
    let long = "x".repeat(500);
    let p = params(&[("MaxCount", long.as_str())]);
    let e = p.root().i64("MaxCount", 1..=2).unwrap_err();
    assert!(e.message().len() < 200, "{}", e.message());
    assert!(e.message().contains("…"));
}

#[test]
fn has_and_not_both_do_not_consume() {
    let p = params(&[
        ("GroupName", "web"),
        ("SubnetId", "subnet-1"),
        ("Filter.1.Name", "x"),
    ]);
    let root = p.root();
    assert!(root.has("GroupName"));
    assert!(root.has("Filter"));
    assert!(!root.has("Filt"));
    let e = root.not_both("GroupName", "SubnetId").unwrap_err();
    assert_eq!(e.code(), "InvalidParameterCombination");
    assert_eq!(
        e.message(),
        "The parameter GroupName cannot be used with the parameter SubnetId"
    );
    assert_eq!(root.not_both("GroupName", "VpcId"), Ok(()));
    assert_eq!(p.unread().len(), 3);
}

#[test]
fn client_tokens_are_short_ascii() {
    let long = "t".repeat(65);
    let p = params(&[("ClientToken", long.as_str())]);
    assert_eq!(
        p.client_token().unwrap_err().code(),
        "InvalidParameterValue"
    );
    let p = params(&[("ClientToken", "caf\u{e9}")]);
    assert!(p.client_token().is_err());
    let p = params(&[("ClientToken", &"t".repeat(64))]);
    assert_eq!(p.client_token().unwrap().map(|t| t.len()), Some(64));
    assert_eq!(params(&[]).client_token().unwrap(), None);
}

#[test]
fn tags_without_values_and_specs_without_types() {
    let p = params(&[
        ("Tag.1.Key", "a"),
        ("Tag.2.Key", "b"),
        ("Tag.2.Value", "2"),
        ("TagSpecification.1.Tag.1.Key", "k"),
    ]);
    let tags = p.tags().unwrap();
    assert_eq!(tags[0].value, None);
    assert_eq!(tags[1].value.as_deref(), Some("2"));
    let specs = p.tag_specifications().unwrap();
    assert_eq!(specs[0].resource_type, None);
    assert_eq!(specs[0].tags[0].key, "k");
    assert_eq!(p.finish(), Ok(()));
    let p = params(&[("Tag.1.Value", "v")]);
    assert_eq!(
        p.tags().unwrap_err().message(),
        "The request must contain the parameter Tag.1.Key"
    );
}

#[test]
fn paging_helpers() {
    let p = params(&[("MaxResults", "1001"), ("NextToken", "abc")]);
    let e = p.max_results(5..=1000).unwrap_err();
    assert_eq!(e.code(), "InvalidParameterValue");
    assert_eq!(p.next_token().as_deref(), Some("abc"));
    assert_eq!(params(&[]).max_results(5..=1000).unwrap(), None);
}

#[test]
fn params_can_be_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Params>();
    assert_send_sync::<kumo_ec2::Parsed>();
}

// ------------------------------------------------------------- whole requests

#[test]
fn action_and_version_are_checked_per_service() {
    let p = parse_request(&signed(
        "ec2",
        "/",
        "Action=DescribeVpcs&Version=2016-11-15",
    ))
    .unwrap();
    assert_eq!(
        (p.action.as_str(), p.version.as_str()),
        ("DescribeVpcs", "2016-11-15")
    );
    assert!(p.params.is_empty());

    let err = parse_request(&signed(
        "ec2",
        "/",
        "Action=DescribeVpcs&Version=2015-10-01",
    ))
    .unwrap_err();
    assert_eq!(err.code(), "NoSuchVersion");
    assert_eq!(
        err.message(),
        "The requested version (2015-10-01) of service AmazonEC2 does not exist"
    );
    // The STS version is not the EC2 one.
    let err = parse_request(&signed(
        "sts",
        "/",
        "Action=GetCallerIdentity&Version=2016-11-15",
    ))
    .unwrap_err();
    assert_eq!(err.code(), "NoSuchVersion");
    let p = parse_request(&signed(
        "sts",
        "/",
        "Action=GetCallerIdentity&Version=2011-06-15",
    ))
    .unwrap();
    assert_eq!(p.service, kumo_ec2::Service::Sts);

    let err = parse_request(&signed("ec2", "/", "Version=2016-11-15")).unwrap_err();
    assert_eq!(err.code(), "MissingAction");
    let err = parse_request(&signed("ec2", "/", "Action=&Version=2016-11-15")).unwrap_err();
    assert_eq!(err.code(), "MissingAction");
    let err = parse_request(&signed("ec2", "/", "Action=DescribeVpcs")).unwrap_err();
    assert_eq!(err.code(), "MissingParameter");
    assert_eq!(
        err.message(),
        "The request must contain the parameter Version"
    );
}

#[test]
fn get_requests_carry_parameters_in_the_query() {
    let req = signed(
        "ec2",
        "/?Action=DescribeVpcs&Version=2016-11-15&VpcId.1=vpc-1",
        "",
    );
    let p = parse_request(&req).unwrap();
    assert_eq!(p.params.id_list("VpcId").unwrap(), ["vpc-1"]);
    assert_eq!(p.verify(&req, "s3cret", now()), Ok(()));
}

#[test]
fn authentication_errors_come_before_parameter_errors() {
    // Undecodable parameters, but no authentication: the caller learns only that.
    let req = form(b"Name=%FF");
    assert_eq!(
        parse_request(&req).unwrap_err().code(),
        "MissingAuthenticationToken"
    );
}
