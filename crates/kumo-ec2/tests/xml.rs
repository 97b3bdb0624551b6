//! Golden EC2 and STS documents, and escaping.

#![allow(clippy::unwrap_used)]

use chrono::{DateTime, Utc};
use kumo_ec2::xml::{self, XmlWriter};
use kumo_ec2::{Ec2Error, ResourceKind, Service};

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

#[test]
fn escaping_text_and_attributes() {
    assert_eq!(
        xml::escape_text("a & b < c > \"q\" 'x'"),
        "a &amp; b &lt; c &gt; \"q\" 'x'"
    );
    assert_eq!(xml::escape_attr("a\"b<&"), "a&quot;b&lt;&amp;");
    // Line endings survive; characters XML 1.0 cannot carry are replaced.
    assert_eq!(xml::escape_text("l1\r\nl2\tx"), "l1&#13;\nl2\tx");
    assert_eq!(
        xml::escape_text("bell\u{7}nul\u{0}"),
        "bell\u{FFFD}nul\u{FFFD}"
    );
    assert_eq!(
        xml::escape_text("caf\u{e9} \u{1F600}"),
        "caf\u{e9} \u{1F600}"
    );
    assert_eq!(xml::escape_attr("a\nb\tc"), "a&#10;b&#9;c");
}

#[test]
fn timestamps_have_milliseconds_and_z() {
    assert_eq!(
        xml::format_timestamp(&t("2026-11-25T19:00:00Z")),
        "2026-11-25T19:00:00.000Z"
    );
    assert_eq!(
        xml::format_timestamp(&t("2026-11-25T19:00:00.123456Z")),
        "2026-11-25T19:00:00.123Z"
    );
}

#[test]
fn ec2_response_golden() {
    let body = xml::ec2_response("DescribeInstances", "req-1", |w| {
        w.set("reservationSet", ["r-1"], |w, id| {
            w.text("reservationId", id).text("ownerId", "000000000000");
            w.empty("groupSet");
            w.set("instancesSet", [("i-1", "web & <db>")], |w, (id, name)| {
                w.text("instanceId", id)
                    .node("instanceState", |w| {
                        w.int("code", 16).text("name", "running");
                    })
                    .timestamp("launchTime", &t("2026-11-25T19:00:00Z"))
                    .bool("ebsOptimized", false)
                    .opt_text("privateIpAddress", None)
                    .set("tagSet", [("Name", name)], |w, (k, v)| {
                        w.text("key", k).text("value", v);
                    });
            });
        });
    });
    assert_eq!(
        body,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <DescribeInstancesResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\">\
         <requestId>req-1</requestId>\
         <reservationSet><item>\
         <reservationId>r-1</reservationId><ownerId>000000000000</ownerId><groupSet/>\
         <instancesSet><item>\
         <instanceId>i-1</instanceId>\
         <instanceState><code>16</code><name>running</name></instanceState>\
         <launchTime>2026-11-25T19:00:00.000Z</launchTime>\
         <ebsOptimized>false</ebsOptimized>\
         <tagSet><item><key>Name</key><value>web &amp; &lt;db&gt;</value></item></tagSet>\
         </item></instancesSet>\
         </item></reservationSet>\
         </DescribeInstancesResponse>"
    );
}

#[test]
fn an_empty_set_is_an_empty_element() {
    let body = xml::ec2_response("DescribeVpcs", "r", |w| {
        w.set("vpcSet", Vec::<&str>::new(), |w, v| {
            w.text("vpcId", v);
        });
    });
    assert!(body.ends_with("<requestId>r</requestId><vpcSet/></DescribeVpcsResponse>"));
}

#[test]
fn writer_fragments_compose() {
    let mut inner = XmlWriter::new();
    inner.text("a", "1");
    let mut outer = XmlWriter::new();
    outer.node("x", |w| {
        w.fragment(&inner).bool("b", true);
    });
    assert_eq!(outer.as_str(), "<x><a>1</a><b>true</b></x>");
    assert_eq!(outer.into_string(), "<x><a>1</a><b>true</b></x>");
}

#[test]
fn ec2_error_golden() {
    let err = Ec2Error::not_found(ResourceKind::Instance, "i-<1>");
    assert_eq!(
        xml::ec2_error(&err, "7a62c49f-347e-4fc4-9331-6e8eEXAMPLE"),
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <Response><Errors><Error>\
         <Code>InvalidInstanceID.NotFound</Code>\
         <Message>The instance ID 'i-&lt;1&gt;' does not exist</Message>\
         </Error></Errors>\
         <RequestID>7a62c49f-347e-4fc4-9331-6e8eEXAMPLE</RequestID></Response>"
    );
    assert_eq!(Service::Ec2.error_xml(&err, "x"), xml::ec2_error(&err, "x"));
}

#[test]
fn sts_response_golden() {
    let body = xml::sts_response("GetCallerIdentity", "r-2", |w| {
        w.text("Arn", "arn:aws:iam::000000000000:user/alice")
            .text("UserId", "AIDAKUMO")
            .text("Account", "000000000000");
    });
    assert_eq!(
        body,
        "<GetCallerIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
         <GetCallerIdentityResult>\
         <Arn>arn:aws:iam::000000000000:user/alice</Arn>\
         <UserId>AIDAKUMO</UserId>\
         <Account>000000000000</Account>\
         </GetCallerIdentityResult>\
         <ResponseMetadata><RequestId>r-2</RequestId></ResponseMetadata>\
         </GetCallerIdentityResponse>"
    );
}

#[test]
fn sts_error_golden_sender_and_receiver() {
    let err = Ec2Error::invalid_client_token_id();
    assert_eq!(
        xml::sts_error(&err, "r-3"),
        "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
         <Error><Type>Sender</Type><Code>InvalidClientTokenId</Code>\
         <Message>The security token included in the request is invalid.</Message></Error>\
         <RequestId>r-3</RequestId></ErrorResponse>"
    );
    let internal = Service::Sts.error_xml(&Ec2Error::internal_error(), "r-4");
    assert!(internal.contains("<Type>Receiver</Type><Code>InternalError</Code>"));
}

#[test]
fn awsquery_lists_use_member() {
    let body = xml::sts_response("ListThings", "r", |w| {
        w.list("Things", "member", ["a", "b"], |w, v| {
            w.text("Name", v);
        });
    });
    assert!(body.contains(
        "<ListThingsResult><Things><member><Name>a</Name></member>\
         <member><Name>b</Name></member></Things></ListThingsResult>"
    ));
}

#[test]
fn content_type_is_xml() {
    assert_eq!(xml::CONTENT_TYPE, "text/xml;charset=UTF-8");
}
