//! A small XML writer and the EC2 / STS response envelopes.
//!
//! # EC2 (`ec2` protocol)
//!
//! ```xml
//! <?xml version="1.0" encoding="UTF-8"?>
//! <DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
//!   <requestId>…</requestId>
//!   <reservationSet><item>…</item></reservationSet>
//! </DescribeInstancesResponse>
//! ```
//!
//! Members use their `locationName` (lower camel case: `instanceId`,
//! `instancesSet`); lists are a wrapper element holding one `<item>` per
//! element; booleans are `true`/`false`; timestamps ISO 8601 with milliseconds
//! (`2026-11-25T19:00:00.000Z`). botocore's `EC2QueryParser` reads
//! `requestId` into `ResponseMetadata.RequestId`.
//!
//! Errors (botocore reads the first `Errors/Error`, and `RequestID` — note the
//! capital D — as the request id):
//!
//! ```xml
//! <?xml version="1.0" encoding="UTF-8"?>
//! <Response><Errors><Error><Code>…</Code><Message>…</Message></Error></Errors><RequestID>…</RequestID></Response>
//! ```
//!
//! # STS (`query` protocol)
//!
//! Results are wrapped in `<{Action}Result>` (the operation's
//! `resultWrapper`) and followed by `<ResponseMetadata><RequestId>`; errors
//! are `<ErrorResponse><Error><Type>Sender|Receiver</Type><Code/><Message/></Error><RequestId/></ErrorResponse>`.
//!
//! # Escaping
//!
//! Text escapes `&`, `<`, `>` (and `"` in attributes); a carriage return is
//! written as `&#13;` so parsers do not normalise it away; characters XML 1.0
//! cannot carry at all (most C0 controls) become U+FFFD.

use chrono::{DateTime, SecondsFormat, Utc};

use crate::error::Ec2Error;

/// The EC2 namespace for API version 2016-11-15.
pub const EC2_XMLNS: &str = "http://ec2.amazonaws.com/doc/2016-11-15/";
/// The STS namespace for API version 2011-06-15.
pub const STS_XMLNS: &str = "https://sts.amazonaws.com/doc/2011-06-15/";
/// The `Content-Type` of every response, success or error.
pub const CONTENT_TYPE: &str = "text/xml;charset=UTF-8";
/// The XML declaration EC2 starts its documents with.
pub const DECLARATION: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";

/// Escape character data.
pub fn escape_text(s: &str) -> String {
    escape(s, false)
}

/// Escape an attribute value (for double quotes).
pub fn escape_attr(s: &str) -> String {
    escape(s, true)
}

fn escape(s: &str, attr: bool) -> String {
    let mut out = String::with_capacity(s.len());
    escape_into(&mut out, s, attr);
    out
}

/// Append `s` escaped to `out` (text as it is when it is plain printable ASCII, the common case).
fn escape_into(out: &mut String, s: &str, attr: bool) {
    if s.bytes()
        .all(|b| (0x20..0x7f).contains(&b) && !matches!(b, b'&' | b'<' | b'>' | b'"'))
    {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if attr => out.push_str("&quot;"),
            '\r' => out.push_str("&#13;"),
            '\t' if attr => out.push_str("&#9;"),
            '\n' if attr => out.push_str("&#10;"),
            '\t' | '\n' => out.push(c),
            c if is_xml_char(c) => out.push(c),
            _ => out.push('\u{FFFD}'),
        }
    }
}

/// Whether XML 1.0 allows `c` in a document.
fn is_xml_char(c: char) -> bool {
    matches!(c, '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
}

/// Whether `name` is a plain XML element name (ASCII letters, digits, `_`,
/// `-`, `.`, not starting with a digit, `-` or `.`). Element names come from
/// code, never from users; this guards against typos in debug builds.
fn is_element_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// `2026-11-25T19:00:00.000Z`: ISO 8601, UTC, milliseconds, as EC2 writes it.
pub fn format_timestamp(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Builds an XML fragment. Element names come from code and must be plain
/// names; text is escaped.
#[derive(Debug, Default, Clone)]
pub struct XmlWriter {
    buf: String,
}

impl XmlWriter {
    /// An empty fragment.
    pub fn new() -> Self {
        Self::default()
    }

    fn open(&mut self, name: &str) {
        debug_assert!(is_element_name(name), "bad element name {name:?}");
        self.buf.push('<');
        self.buf.push_str(name);
        self.buf.push('>');
    }

    fn close(&mut self, name: &str) {
        self.buf.push_str("</");
        self.buf.push_str(name);
        self.buf.push('>');
    }

    /// `<name>text</name>`.
    pub fn text(&mut self, name: &str, text: &str) -> &mut Self {
        self.open(name);
        escape_into(&mut self.buf, text, false);
        self.close(name);
        self
    }

    /// `<name>text</name>`, or nothing when `None` (absent members are
    /// omitted, not empty).
    pub fn opt_text(&mut self, name: &str, text: Option<&str>) -> &mut Self {
        if let Some(text) = text {
            self.text(name, text);
        }
        self
    }

    /// `<name>true</name>` / `<name>false</name>`.
    pub fn bool(&mut self, name: &str, value: bool) -> &mut Self {
        self.text(name, if value { "true" } else { "false" })
    }

    /// An integer.
    pub fn int(&mut self, name: &str, value: i64) -> &mut Self {
        use std::fmt::Write as _;
        self.open(name);
        let _ = write!(self.buf, "{value}");
        self.close(name);
        self
    }

    /// A timestamp in EC2's form, see [`format_timestamp`].
    pub fn timestamp(&mut self, name: &str, t: &DateTime<Utc>) -> &mut Self {
        self.text(name, &format_timestamp(t))
    }

    /// `<name/>`.
    pub fn empty(&mut self, name: &str) -> &mut Self {
        debug_assert!(is_element_name(name), "bad element name {name:?}");
        self.buf.push('<');
        self.buf.push_str(name);
        self.buf.push_str("/>");
        self
    }

    /// `<name>…</name>` with children written by `f`.
    pub fn node(&mut self, name: &str, f: impl FnOnce(&mut XmlWriter)) -> &mut Self {
        self.open(name);
        f(self);
        self.close(name);
        self
    }

    /// An EC2 list: `<name><item>…</item>…</name>`, each item's children
    /// written by `f`. An empty list is `<name/>`.
    pub fn set<T>(
        &mut self,
        name: &str,
        items: impl IntoIterator<Item = T>,
        f: impl FnMut(&mut XmlWriter, T),
    ) -> &mut Self {
        self.list(name, "item", items, f)
    }

    /// A list whose elements are called `item_name` (`item` in EC2, `member`
    /// in awsquery services such as STS). An empty list is `<name/>`.
    pub fn list<T>(
        &mut self,
        name: &str,
        item_name: &str,
        items: impl IntoIterator<Item = T>,
        mut f: impl FnMut(&mut XmlWriter, T),
    ) -> &mut Self {
        let mut items = items.into_iter().peekable();
        if items.peek().is_none() {
            return self.empty(name);
        }
        self.open(name);
        for item in items {
            self.node(item_name, |w| f(w, item));
        }
        self.close(name);
        self
    }

    /// Splice an already-built fragment.
    pub fn fragment(&mut self, other: &XmlWriter) -> &mut Self {
        self.buf.push_str(&other.buf);
        self
    }

    /// Make room for `additional` more bytes (a large listing grows its buffer once).
    pub fn reserve(&mut self, additional: usize) {
        self.buf.reserve(additional);
    }

    /// The text built so far.
    pub fn as_str(&self) -> &str {
        &self.buf
    }

    /// The finished fragment.
    pub fn into_string(self) -> String {
        self.buf
    }
}

/// The root element name for `action`: `{action}Response`. Only ASCII
/// letters and digits of `action` are kept, so even an action name taken
/// straight from a request cannot break the document.
fn response_root(action: &str) -> String {
    let mut root: String = action.chars().filter(char::is_ascii_alphanumeric).collect();
    if !root.starts_with(|c: char| c.is_ascii_alphabetic()) {
        root.insert_str(0, "Unknown");
    }
    root.push_str("Response");
    root
}

/// An EC2 success response for `action`: `<{action}Response xmlns=…>
/// <requestId>…</requestId>` followed by what `body` writes.
pub fn ec2_response(action: &str, request_id: &str, body: impl FnOnce(&mut XmlWriter)) -> String {
    let root = response_root(action);
    let mut w = XmlWriter::new();
    w.buf.push_str(DECLARATION);
    w.buf
        .push_str(&format!("<{root} xmlns=\"{}\">", escape_attr(EC2_XMLNS)));
    w.text("requestId", request_id);
    body(&mut w);
    w.close(&root);
    w.into_string()
}

/// The EC2 error document for `err`.
pub fn ec2_error(err: &Ec2Error, request_id: &str) -> String {
    let mut w = XmlWriter::new();
    w.buf.push_str(DECLARATION);
    w.node("Response", |w| {
        w.node("Errors", |w| {
            w.node("Error", |w| {
                w.text("Code", err.code()).text("Message", err.message());
            });
        })
        .text("RequestID", request_id);
    });
    w.into_string()
}

/// An STS success response for `action`: `<{action}Response xmlns=…>
/// <{action}Result>` what `result` writes `</{action}Result>
/// <ResponseMetadata><RequestId>…</RequestId></ResponseMetadata>`.
pub fn sts_response(action: &str, request_id: &str, result: impl FnOnce(&mut XmlWriter)) -> String {
    let root = response_root(action);
    let result_name = format!("{}Result", root.trim_end_matches("Response"));
    let mut w = XmlWriter::new();
    w.buf
        .push_str(&format!("<{root} xmlns=\"{}\">", escape_attr(STS_XMLNS)));
    w.node(&result_name, result);
    w.node("ResponseMetadata", |w| {
        w.text("RequestId", request_id);
    });
    w.close(&root);
    w.into_string()
}

/// The STS (awsquery) error document for `err`.
pub fn sts_error(err: &Ec2Error, request_id: &str) -> String {
    let mut w = XmlWriter::new();
    w.buf.push_str(&format!(
        "<ErrorResponse xmlns=\"{}\">",
        escape_attr(STS_XMLNS)
    ));
    w.node("Error", |w| {
        w.text(
            "Type",
            if err.is_server_fault() {
                "Receiver"
            } else {
                "Sender"
            },
        )
        .text("Code", err.code())
        .text("Message", err.message());
    });
    w.text("RequestId", request_id);
    w.close("ErrorResponse");
    w.into_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(is_element_name("reservationSet"));
        assert!(is_element_name("a.b-c_d1"));
        assert!(!is_element_name("1a"));
        assert!(!is_element_name("a b"));
        assert!(!is_element_name(""));
        assert!(!is_element_name("a<"));
    }

    #[test]
    fn response_roots_are_always_names() {
        assert_eq!(
            response_root("DescribeInstances"),
            "DescribeInstancesResponse"
        );
        assert_eq!(response_root("Bad<x a=\"1\">"), "Badxa1Response");
        assert_eq!(response_root("1Up"), "Unknown1UpResponse");
        assert_eq!(response_root(""), "UnknownResponse");
        assert!(is_element_name(&response_root("<&>")));
    }

    #[test]
    fn xml_chars() {
        assert!(is_xml_char('a'));
        assert!(is_xml_char('\u{1F600}'));
        assert!(!is_xml_char('\u{0}'));
        assert!(!is_xml_char('\u{1B}'));
        assert!(!is_xml_char('\u{FFFE}'));
    }
}
