//! SigV4 against AWS's published test vectors, plus the ways a signature can
//! be malformed, missing or wrong.

#![allow(clippy::unwrap_used)]

use chrono::{DateTime, Duration, Utc};
use kumo_ec2::sigv4::{self, Authorization, SigningParams};
use kumo_ec2::{Request, parse_request, verify};

/// The AWS SigV4 test suite's credentials and clock.
const AKID: &str = "AKIDEXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const SCOPE: &str = "AKIDEXAMPLE/20150830/us-east-1/service/aws4_request";

fn suite_time() -> DateTime<Utc> {
    "2015-08-30T12:36:00Z".parse().unwrap()
}

fn suite_request(method: &str, target: &str) -> Request {
    Request::new(method, target)
        .with_header("Host", "example.amazonaws.com")
        .with_header("X-Amz-Date", "20150830T123600Z")
}

fn authorize(req: Request, signed: &str, signature: &str) -> Request {
    req.with_header(
        "Authorization",
        &format!(
            "AWS4-HMAC-SHA256 Credential={SCOPE}, SignedHeaders={signed}, Signature={signature}"
        ),
    )
}

/// The published vectors: (name, request, signed headers, signature).
fn vectors() -> Vec<(&'static str, Request, &'static str, &'static str)> {
    vec![
        (
            "get-vanilla",
            suite_request("GET", "/"),
            "host;x-amz-date",
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        ),
        (
            "get-vanilla-query-order-key-case",
            suite_request("GET", "/?Param2=value2&Param1=value1"),
            "host;x-amz-date",
            "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
        ),
        (
            "get-vanilla-utf8-query",
            suite_request("GET", "/?%E1%88%B4=bar"),
            "host;x-amz-date",
            "2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04",
        ),
        (
            "get-unreserved",
            suite_request(
                "GET",
                "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
            ),
            "host;x-amz-date",
            "07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f",
        ),
        (
            "get-header-key-duplicate",
            suite_request("GET", "/")
                .with_header("My-Header1", "value2")
                .with_header("My-Header1", "value2")
                .with_header("My-Header1", "value1"),
            "host;my-header1;x-amz-date",
            "c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea",
        ),
        (
            "post-vanilla",
            suite_request("POST", "/"),
            "host;x-amz-date",
            "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
        ),
        (
            "post-header-key-sort",
            suite_request("POST", "/").with_header("My-Header1", "value1"),
            "host;my-header1;x-amz-date",
            "c5410059b04c1ee005303aed430f6e6645f61f4dc9e1461ec8f8916fdf18852c",
        ),
        (
            "post-header-value-case",
            suite_request("POST", "/").with_header("My-Header1", "VALUE1"),
            "host;my-header1;x-amz-date",
            "cdbc9802e29d2942e5e10b5bccfdd67c5f22c7c4e8ae67b53629efa58b974b7d",
        ),
        (
            "post-x-www-form-urlencoded",
            suite_request("POST", "/")
                .with_header("Content-Type", "application/x-www-form-urlencoded")
                .with_body("Param1=value1"),
            "content-type;host;x-amz-date",
            "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a",
        ),
    ]
}

#[test]
fn aws_test_suite_vectors_verify() {
    for (name, req, signed, signature) in vectors() {
        let req = authorize(req, signed, signature);
        assert_eq!(verify(&req, SECRET, suite_time()), Ok(()), "{name}");
        assert_eq!(
            verify(&req, "wrong", suite_time()).unwrap_err().code(),
            "SignatureDoesNotMatch",
            "{name}"
        );
    }
}

#[test]
fn aws_test_suite_canonical_requests() {
    let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    let req = authorize(
        suite_request("GET", "/"),
        "host;x-amz-date",
        "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
    );
    let auth = Authorization::from_request(&req).unwrap();
    let canonical = sigv4::canonical_request(&req, &auth).unwrap();
    assert_eq!(
        canonical,
        format!(
            "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n{empty}"
        )
    );
    assert_eq!(
        sigv4::string_to_sign(&auth.amz_date(), &auth.credential.scope(), &canonical),
        "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n\
         bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63"
    );
    // The duplicate-header vector joins values with commas, in order.
    let (_, req, signed, signature) = vectors()
        .into_iter()
        .find(|v| v.0 == "get-header-key-duplicate")
        .unwrap();
    let req = authorize(req, signed, signature);
    let auth = Authorization::from_request(&req).unwrap();
    let canonical = sigv4::canonical_request(&req, &auth).unwrap();
    assert!(
        canonical.contains("\nmy-header1:value2,value2,value1\n"),
        "{canonical}"
    );
}

#[test]
fn sign_reproduces_the_vectors() {
    for (name, mut req, signed, signature) in vectors() {
        req.headers.retain(|(n, _)| n != "X-Amz-Date");
        let params = SigningParams {
            access_key_id: AKID,
            secret_access_key: SECRET,
            region: "us-east-1",
            service: "service",
            time: suite_time(),
        };
        sigv4::sign(&mut req, &params).unwrap();
        let auth = req.header("authorization").unwrap();
        assert_eq!(
            auth,
            format!(
                "AWS4-HMAC-SHA256 Credential={SCOPE}, SignedHeaders={signed}, Signature={signature}"
            ),
            "{name}"
        );
    }
}

#[test]
fn iam_list_users_documented_example() {
    // The worked example in AWS's SigV4 documentation: a query-protocol GET.
    let req = Request::new("GET", "/?Action=ListUsers&Version=2010-05-08")
        .with_header("Host", "iam.amazonaws.com")
        .with_header(
            "Content-Type",
            "application/x-www-form-urlencoded; charset=utf-8",
        )
        .with_header("X-Amz-Date", "20150830T123600Z")
        .with_header(
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date, \
             Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7",
        );
    let auth = Authorization::from_request(&req).unwrap();
    let canonical = sigv4::canonical_request(&req, &auth).unwrap();
    let sts = sigv4::string_to_sign(&auth.amz_date(), &auth.credential.scope(), &canonical);
    assert!(
        sts.ends_with("\nf536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59"),
        "{sts}"
    );
    assert_eq!(verify(&req, SECRET, suite_time()), Ok(()));
}

#[test]
fn the_date_header_works_when_x_amz_date_is_absent() {
    let placeholder = Request::new("GET", "/?Action=DescribeRegions&Version=2016-11-15")
        .with_header("Host", "kumo.example")
        .with_header("Date", "Sun, 30 Aug 2015 12:36:00 GMT");
    let header = |signature: &str| {
        format!(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/ec2/aws4_request, \
             SignedHeaders=date;host, Signature={signature}"
        )
    };
    let unsigned = placeholder
        .clone()
        .with_header("Authorization", &header("00"));
    let auth = Authorization::from_request(&unsigned).unwrap();
    assert_eq!(auth.time_source, "date");
    assert_eq!(auth.amz_date(), "20150830T123600Z");
    let canonical = sigv4::canonical_request(&unsigned, &auth).unwrap();
    assert!(
        canonical.contains("\ndate:Sun, 30 Aug 2015 12:36:00 GMT\n"),
        "{canonical}"
    );
    let sts = sigv4::string_to_sign(&auth.amz_date(), &auth.credential.scope(), &canonical);
    let key = sigv4::signing_key(SECRET, "20150830", "us-east-1", "ec2");
    let signed = placeholder.with_header("Authorization", &header(&hmac_hex(&key, &sts)));
    assert_eq!(verify(&signed, SECRET, suite_time()), Ok(()));
    assert_eq!(
        verify(&unsigned, SECRET, suite_time()).unwrap_err().code(),
        "SignatureDoesNotMatch"
    );
}

fn hmac_hex(key: &[u8], data: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(data.as_bytes());
    sigv4::hex(&mac.finalize().into_bytes())
}

fn signed_ec2(body: &str) -> Request {
    let mut req = Request::new("POST", "/")
        .with_header("Host", "kumo.example:8080")
        .with_header(
            "Content-Type",
            "application/x-www-form-urlencoded; charset=utf-8",
        )
        .with_body(body);
    let params = SigningParams {
        access_key_id: "AKIAKUMO",
        secret_access_key: "s3cret",
        region: "kumo-1",
        service: "ec2",
        time: suite_time(),
    };
    sigv4::sign(&mut req, &params).unwrap();
    req
}

#[test]
fn sign_then_parse_and_verify_round_trips() {
    let req = signed_ec2("Action=DescribeInstances&Version=2016-11-15&InstanceId.1=i-1");
    let p = parse_request(&req).unwrap();
    assert_eq!(p.access_key_id, "AKIAKUMO");
    assert_eq!(p.region, "kumo-1");
    assert_eq!(p.action, "DescribeInstances");
    assert_eq!(p.verify(&req, "s3cret", suite_time()), Ok(()));
    // user-agent is never signed, content-type is.
    assert!(p.auth.signed_headers.contains(&"content-type".to_owned()));
    let ua = req.clone().with_header("User-Agent", "x");
    let p = parse_request(&ua).unwrap();
    assert_eq!(p.verify(&ua, "s3cret", suite_time()), Ok(()));
}

#[test]
fn presign_then_verify_round_trips() {
    let mut req = Request::new("GET", "/?Action=GetCallerIdentity&Version=2011-06-15")
        .with_header("Host", "kumo.example");
    let params = SigningParams {
        access_key_id: "AKIAKUMO",
        secret_access_key: "s3cret",
        region: "us-east-1",
        service: "sts",
        time: suite_time(),
    };
    sigv4::presign(&mut req, &params, 60).unwrap();
    assert!(
        req.query
            .contains("X-Amz-Credential=AKIAKUMO%2F20150830%2Fus-east-1%2Fsts%2Faws4_request")
    );
    let p = parse_request(&req).unwrap();
    assert_eq!(p.service.as_str(), "sts");
    assert_eq!(p.params.finish(), Ok(()));
    assert_eq!(p.verify(&req, "s3cret", suite_time()), Ok(()));
    assert_eq!(
        p.verify(&req, "s3cret", suite_time() + Duration::seconds(61))
            .unwrap_err()
            .code(),
        "RequestExpired"
    );
    // A presigned URL is not valid before it was signed (beyond the skew).
    assert_eq!(
        p.verify(&req, "s3cret", suite_time() - Duration::minutes(16))
            .unwrap_err()
            .code(),
        "SignatureDoesNotMatch"
    );
}

#[test]
fn a_body_hash_header_must_match_the_body() {
    let body = "Action=DescribeInstances&Version=2016-11-15";
    let good = sigv4::hex(&sha2_digest(body.as_bytes()));
    // Honoured when it is the body's hash...
    let mut req = Request::new("POST", "/")
        .with_header("Host", "kumo.example")
        .with_header("X-Amz-Content-Sha256", &good)
        .with_body(body);
    let params = SigningParams {
        access_key_id: "AKIAKUMO",
        secret_access_key: "s3cret",
        region: "kumo-1",
        service: "ec2",
        time: suite_time(),
    };
    sigv4::sign(&mut req, &params).unwrap();
    assert_eq!(verify(&req, "s3cret", suite_time()), Ok(()));
    // ...refused when it is not (UNSIGNED-PAYLOAD included): the parameters
    // are in the body and must be covered.
    let mut req = Request::new("POST", "/")
        .with_header("Host", "kumo.example")
        .with_header("X-Amz-Content-Sha256", "UNSIGNED-PAYLOAD")
        .with_body(body);
    assert_eq!(
        sigv4::sign(&mut req, &params).unwrap_err().message(),
        "The provided 'x-amz-content-sha256' header does not match what was computed."
    );
}

fn sha2_digest(data: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(data).to_vec()
}

// ---------------------------------------------------------------------- malformed

fn with_auth(value: &str) -> Request {
    suite_request("POST", "/").with_header("Authorization", value)
}

#[test]
fn missing_authentication_is_missing_authentication_token() {
    let req = Request::new("POST", "/")
        .with_header("Host", "kumo.example")
        .with_body("Action=DescribeInstances&Version=2016-11-15");
    let err = parse_request(&req).unwrap_err();
    assert_eq!(err.code(), "MissingAuthenticationToken");
    assert_eq!(err.message(), "Request is missing Authentication Token");
    assert_eq!(err.http_status(), 403);
}

#[test]
fn missing_parts_are_listed_like_aws() {
    let err =
        parse_request(&with_auth(&format!("AWS4-HMAC-SHA256 Credential={SCOPE}"))).unwrap_err();
    assert_eq!(err.code(), "IncompleteSignature");
    assert_eq!(
        err.message(),
        format!(
            "Authorization header requires 'Signature' parameter. \
             Authorization header requires 'SignedHeaders' parameter. \
             Authorization=AWS4-HMAC-SHA256 Credential={SCOPE}"
        )
    );
    // No date at all.
    let req = Request::new("POST", "/")
        .with_header("Host", "h")
        .with_header(
            "Authorization",
            &format!("AWS4-HMAC-SHA256 Credential={SCOPE}, SignedHeaders=host, Signature=00"),
        );
    let err = parse_request(&req).unwrap_err();
    assert!(
        err.message().starts_with(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."
        ),
        "{}",
        err.message()
    );
}

#[test]
fn a_part_without_equals_is_named() {
    let value = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/ec2/aws4_request, \
                 SignedHeaders=host;x-amz-date, Signature";
    let err = parse_request(&with_auth(value)).unwrap_err();
    assert_eq!(err.code(), "IncompleteSignature");
    assert_eq!(
        err.message(),
        format!(
            "'Signature' not a valid key=value pair (missing equal-sign) in Authorization header: '{value}'."
        )
    );
}

#[test]
fn a_malformed_credential_is_incomplete_signature() {
    let err = parse_request(&with_auth(
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1, SignedHeaders=host;x-amz-date, Signature=00",
    ))
    .unwrap_err();
    assert_eq!(err.code(), "IncompleteSignature");
    assert_eq!(
        err.message(),
        "Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, \
         got 'AKIDEXAMPLE/20150830/us-east-1'"
    );
    assert_eq!(err.http_status(), 400);
}

#[test]
fn a_bad_terminator_or_scope_date_cannot_match() {
    let err = parse_request(&with_auth(
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/ec2/aws5_request, SignedHeaders=host;x-amz-date, Signature=00",
    ))
    .unwrap_err();
    assert_eq!(err.code(), "SignatureDoesNotMatch");
    assert_eq!(
        err.message(),
        "Credential should be scoped with a valid terminator: 'aws4_request', not 'aws5_request'."
    );
    let err = parse_request(&with_auth(
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150831/us-east-1/ec2/aws4_request, SignedHeaders=host;x-amz-date, Signature=00",
    ))
    .unwrap_err();
    assert_eq!(err.code(), "SignatureDoesNotMatch");
    assert_eq!(
        err.message(),
        "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: \
         '20150831' != '20150830', from 'x-amz-date'."
    );
}

#[test]
fn other_algorithms_and_services_are_refused() {
    let err = parse_request(&with_auth("AWS AKIDEXAMPLE:c2lnbmF0dXJl")).unwrap_err();
    assert_eq!(err.code(), "IncompleteSignature");
    let err = parse_request(&with_auth(
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-date, Signature=00",
    ))
    .unwrap_err();
    assert_eq!(err.code(), "SignatureDoesNotMatch");
    assert!(err.message().contains("not 's3'"), "{}", err.message());
}

#[test]
fn host_must_be_signed_and_signed_headers_present() {
    let err = parse_request(&with_auth(
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/ec2/aws4_request, SignedHeaders=x-amz-date, Signature=00",
    ))
    .unwrap_err();
    assert_eq!(err.code(), "IncompleteSignature");
    assert!(err.message().contains("'Host'"));

    let req = with_auth(
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/ec2/aws4_request, SignedHeaders=host;my-header;x-amz-date, Signature=00",
    );
    let err = verify(&req, SECRET, suite_time()).unwrap_err();
    assert_eq!(err.code(), "SignatureDoesNotMatch");
    assert!(err.message().contains("'my-header'"), "{}", err.message());
}

#[test]
fn a_bad_date_or_garbage_signature_is_refused() {
    let req = Request::new("GET", "/")
        .with_header("Host", "example.amazonaws.com")
        .with_header("X-Amz-Date", "2015-08-30T12:36:00Z")
        .with_header(
            "Authorization",
            &format!(
                "AWS4-HMAC-SHA256 Credential={SCOPE}, SignedHeaders=host;x-amz-date, Signature=00"
            ),
        );
    let err = Authorization::from_request(&req).unwrap_err();
    assert_eq!(err.code(), "IncompleteSignature");
    assert_eq!(
        err.message(),
        "Date must be in ISO-8601 'basic format'. Got '2015-08-30T12:36:00Z'."
    );
    let req = authorize(suite_request("GET", "/"), "host;x-amz-date", "not-hex");
    assert_eq!(
        verify(&req, SECRET, suite_time()).unwrap_err().code(),
        "SignatureDoesNotMatch"
    );
}

#[test]
fn presigned_parameters_must_be_complete_and_alone() {
    let req = Request::new(
        "GET",
        "/?Action=GetCallerIdentity&Version=2011-06-15&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date=20150830T123600Z",
    )
    .with_header("Host", "h");
    let err = parse_request(&req).unwrap_err();
    assert_eq!(err.code(), "IncompleteSignature");
    assert!(
        err.message()
            .starts_with("Query-string authentication version 4 requires")
    );

    let both = req
        .clone()
        .with_header("Authorization", "AWS4-HMAC-SHA256 Credential=x");
    let err = parse_request(&both).unwrap_err();
    assert_eq!(err.code(), "IncompleteSignature");
    assert!(err.message().starts_with("Only one auth mechanism allowed"));

    let expires = Request::new(
        "GET",
        "/?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=A%2F20150830%2Fus-east-1%2Fsts%2Faws4_request\
         &X-Amz-Date=20150830T123600Z&X-Amz-Expires=604801&X-Amz-SignedHeaders=host&X-Amz-Signature=00",
    )
    .with_header("Host", "h");
    let err = parse_request(&expires).unwrap_err();
    assert_eq!(err.code(), "IncompleteSignature");
    assert!(err.message().contains("604800"), "{}", err.message());
}
