//! The etcd gateway's JSON shapes and their decoding (pure; unit-tested).
//!
//! Zero values are omitted by the gateway, so every field defaults; int64s arrive as strings.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::{EventKind, KeyValue, Result, Revision, StoreError, WatchEvent};

fn de_i64<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<i64, D::Error> {
    match Value::deserialize(d)? {
        Value::String(s) => s.parse().map_err(serde::de::Error::custom),
        Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| serde::de::Error::custom("int64 out of range")),
        Value::Null => Ok(0),
        other => Err(serde::de::Error::custom(format!(
            "expected an int64, got {other}"
        ))),
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub(super) struct Header {
    #[serde(deserialize_with = "de_i64")]
    pub revision: i64,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub(super) struct RawKv {
    pub key: String,
    pub value: String,
    #[serde(deserialize_with = "de_i64")]
    pub create_revision: i64,
    #[serde(deserialize_with = "de_i64")]
    pub mod_revision: i64,
    #[serde(deserialize_with = "de_i64")]
    pub version: i64,
    #[serde(deserialize_with = "de_i64")]
    pub lease: i64,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub(super) struct RangeResponse {
    pub header: Header,
    pub kvs: Vec<RawKv>,
    pub more: bool,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub(super) struct PutResponse {
    pub prev_kv: Option<RawKv>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub(super) struct DeleteResponse {
    #[serde(deserialize_with = "de_i64")]
    pub deleted: i64,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub(super) struct ResponseOp {
    pub response_range: Option<RangeResponse>,
    pub response_put: Option<PutResponse>,
    pub response_delete_range: Option<DeleteResponse>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub(super) struct TxnResponse {
    pub header: Header,
    pub succeeded: bool,
    pub responses: Vec<ResponseOp>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub(super) struct LeaseResponse {
    #[serde(rename = "ID", deserialize_with = "de_i64")]
    pub id: i64,
    #[serde(rename = "TTL", deserialize_with = "de_i64")]
    pub ttl: i64,
    pub error: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub(super) struct KeepaliveResponse {
    pub result: Option<LeaseResponse>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct RawEvent {
    #[serde(rename = "type")]
    kind: String,
    kv: RawKv,
    prev_kv: Option<RawKv>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct WatchResult {
    created: bool,
    canceled: bool,
    #[serde(deserialize_with = "de_i64")]
    compact_revision: i64,
    cancel_reason: String,
    events: Vec<RawEvent>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct WatchMessage {
    result: Option<WatchResult>,
    error: Option<Value>,
}

fn decode_b64(what: &str, s: &str) -> Result<Vec<u8>> {
    B64.decode(s)
        .map_err(|e| StoreError::Backend(format!("etcd gateway: bad base64 in {what}: {e}")))
}

pub(super) fn decode_kv(raw: &RawKv) -> Result<KeyValue> {
    let key = String::from_utf8(decode_b64("key", &raw.key)?)
        .map_err(|e| StoreError::Backend(format!("etcd key is not UTF-8: {e}")))?;
    Ok(KeyValue {
        key,
        value: decode_b64("value", &raw.value)?,
        create_revision: raw.create_revision,
        mod_revision: raw.mod_revision,
        version: raw.version,
        lease: raw.lease,
    })
}

/// The items one watch message yields: its events, or a terminal error if the watch was canceled
/// (`Compacted` when the start revision `from` had been compacted).
pub(super) fn watch_items(msg: Value, from: Revision) -> Result<Vec<Result<WatchEvent>>> {
    let m: WatchMessage = serde_json::from_value(msg)
        .map_err(|e| StoreError::Backend(format!("etcd gateway: bad watch message: {e}")))?;
    if let Some(err) = m.error {
        return Ok(vec![Err(StoreError::Unavailable(format!(
            "etcd watch failed: {err}"
        )))]);
    }
    let Some(r) = m.result else {
        return Ok(Vec::new());
    };
    if r.compact_revision > 0 {
        return Ok(vec![Err(StoreError::Compacted {
            requested: from,
            oldest: r.compact_revision,
        })]);
    }
    if r.canceled {
        return Ok(vec![Err(StoreError::Unavailable(format!(
            "etcd canceled the watch: {}",
            r.cancel_reason
        )))]);
    }
    let _ = r.created;
    r.events
        .iter()
        .map(|e| {
            let kind = match e.kind.as_str() {
                "" | "PUT" => EventKind::Put,
                "DELETE" => EventKind::Delete,
                other => {
                    return Err(StoreError::Backend(format!(
                        "etcd watch: unknown event type {other}"
                    )));
                }
            };
            Ok(Ok(WatchEvent {
                kind,
                kv: decode_kv(&e.kv)?,
                prev: e.prev_kv.as_ref().map(decode_kv).transpose()?,
            }))
        })
        .collect()
}

/// Splits a byte stream of concatenated JSON values (the gateway's streaming answers) into values.
#[derive(Default)]
pub(super) struct JsonStream {
    buf: Vec<u8>,
}

impl JsonStream {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete value, or `None` if more bytes are needed.
    pub fn next_value(&mut self) -> Result<Option<Value>> {
        let mut it = serde_json::Deserializer::from_slice(&self.buf).into_iter::<Value>();
        match it.next() {
            Some(Ok(v)) => {
                let used = it.byte_offset();
                self.buf.drain(..used);
                Ok(Some(v))
            }
            Some(Err(e)) if e.is_eof() => Ok(None),
            Some(Err(e)) => Err(StoreError::Backend(format!(
                "etcd gateway: bad JSON in stream: {e}"
            ))),
            None => {
                self.buf.clear();
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn json_stream_splits_values_across_chunks() {
        let mut s = JsonStream::default();
        s.push(b"{\"a\":1}\n{\"b\"");
        assert_eq!(
            s.next_value().ok().flatten(),
            Some(serde_json::json!({"a": 1}))
        );
        assert_eq!(s.next_value().ok().flatten(), None);
        s.push(b":2}\n");
        assert_eq!(
            s.next_value().ok().flatten(),
            Some(serde_json::json!({"b": 2}))
        );
        assert_eq!(s.next_value().ok().flatten(), None);
    }

    #[test]
    fn watch_messages_decode_events_and_compaction() {
        let msg = serde_json::json!({"result": {"header": {"revision": "5"}, "events": [
            {"kv": {"key": "Zm9v", "value": "YmFy", "create_revision": "2", "mod_revision": "5", "version": "2"}},
            {"type": "DELETE", "kv": {"key": "Zm9v", "mod_revision": "6"}}
        ]}});
        let items = watch_items(msg, 1).unwrap();
        let evs: Vec<WatchEvent> = items.into_iter().map(|i| i.unwrap()).collect();
        assert_eq!(evs[0].kind, EventKind::Put);
        assert_eq!(evs[0].kv.value, b"bar");
        assert_eq!(evs[0].kv.version, 2);
        assert_eq!(evs[1].kind, EventKind::Delete);
        assert_eq!(evs[1].kv.mod_revision, 6);
        assert!(evs[1].kv.value.is_empty());

        let msg = serde_json::json!({"result": {"canceled": true, "compact_revision": "3"}});
        let items = watch_items(msg, 1).unwrap();
        assert!(matches!(
            items[0],
            Err(StoreError::Compacted {
                requested: 1,
                oldest: 3
            })
        ));
    }
}
