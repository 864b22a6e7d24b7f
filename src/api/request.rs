//! Request input at the edge: the capped body, and strict JSON field parsing into domain
//! values. A bad value is `400 INVALID_REQUEST` naming the field; unknown fields are ignored.

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_LENGTH, HeaderMap};
use simd_json::{OwnedValue, StaticNode};

use crate::identity::TokenKey;
use crate::model::{Error, QueueToken};

/// Bodies over 64 KiB are refused.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Ids are positive JSON integers that fit MySQL's signed BIGINT range.
const MAX_ID: u64 = i64::MAX as u64;

/// Reads the whole body, refusing more than [`MAX_BODY_BYTES`] whether announced or streamed.
pub async fn read_body(headers: &HeaderMap, body: Incoming) -> Result<Vec<u8>, Error> {
    let announced = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(Error::PayloadTooLarge);
    }
    match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => Ok(collected.to_bytes().to_vec()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(Error::PayloadTooLarge),
        Err(_) => Err(Error::invalid("body", "the request body could not be read")),
    }
}

/// A parsed JSON object body.
pub struct JsonObject(Box<simd_json::owned::Object>);

thread_local! {
    /// simd-json's scratch space, reused across requests instead of zero-allocated per parse.
    static PARSE_BUFFERS: std::cell::RefCell<simd_json::Buffers> =
        std::cell::RefCell::new(simd_json::Buffers::default());
}

/// Unix seconds of the instants seatrush stores: `UNIX_TIMESTAMP` is NULL outside them.
pub const INSTANTS: std::ops::RangeInclusive<i64> = 0..=i32::MAX as i64;

impl JsonObject {
    pub fn parse(mut body: Vec<u8>) -> Result<Self, Error> {
        let parsed = PARSE_BUFFERS
            .with(|b| simd_json::to_owned_value_with_buffers(&mut body, &mut b.borrow_mut()));
        match parsed {
            Ok(OwnedValue::Object(obj)) => Ok(Self(obj)),
            Ok(_) => Err(Error::invalid("body", "the body must be a JSON object")),
            Err(_) => Err(Error::invalid("body", "the body is not valid JSON")),
        }
    }

    fn get(&self, field: &str) -> Option<&OwnedValue> {
        self.0
            .get(field)
            .filter(|v| !matches!(v, OwnedValue::Static(StaticNode::Null)))
    }

    /// Whether the body names the field at all (even as null).
    pub fn names(&self, field: &str) -> bool {
        self.0.contains_key(field)
    }

    fn required(&self, field: &str) -> Result<&OwnedValue, Error> {
        self.get(field)
            .ok_or_else(|| Error::invalid(field, format!("{field} is required")))
    }

    /// A positive integer id.
    pub fn id(&self, field: &str) -> Result<u64, Error> {
        positive_int(self.required(field)?, field, MAX_ID)
    }

    /// A non-empty array of distinct positive integer ids, at most `max` of them; a bad
    /// element is named by its index (`seatIds[1]`).
    pub fn id_list(&self, field: &str, max: usize) -> Result<Vec<u64>, Error> {
        let OwnedValue::Array(items) = self.required(field)? else {
            return Err(Error::invalid(
                field,
                format!("{field} must be an array of ids"),
            ));
        };
        if items.is_empty() || items.len() > max {
            return Err(Error::invalid(
                field,
                format!("{field} must list 1 to {max} ids"),
            ));
        }
        let mut ids = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let at = format!("{field}[{i}]");
            let id = positive_int(item, &at, MAX_ID)?;
            if ids.contains(&id) {
                return Err(Error::invalid(at, format!("{field} must not repeat an id")));
            }
            ids.push(id);
        }
        Ok(ids)
    }

    /// An optional positive integer no larger than `max`.
    pub fn opt_positive(&self, field: &str, max: u64) -> Result<Option<u64>, Error> {
        self.get(field)
            .map(|v| positive_int(v, field, max))
            .transpose()
    }

    pub fn opt_string(&self, field: &str) -> Result<Option<&str>, Error> {
        match self.get(field) {
            None => Ok(None),
            Some(OwnedValue::String(s)) => Ok(Some(s)),
            Some(_) => Err(Error::invalid(field, format!("{field} must be a string"))),
        }
    }

    pub fn opt_bool(&self, field: &str) -> Result<Option<bool>, Error> {
        match self.get(field) {
            None => Ok(None),
            Some(OwnedValue::Static(StaticNode::Bool(b))) => Ok(Some(*b)),
            Some(_) => Err(Error::invalid(field, format!("{field} must be a boolean"))),
        }
    }

    /// A string of at most `max_chars` characters (as sent), not all white space, trimmed.
    pub fn text(&self, field: &str, max_chars: usize) -> Result<String, Error> {
        let sent = self.string(field)?;
        let s = sent.trim();
        if s.is_empty() || sent.chars().count() > max_chars {
            return Err(Error::invalid(
                field,
                format!("{field} must be 1 to {max_chars} characters"),
            ));
        }
        Ok(s.to_string())
    }

    fn string(&self, field: &str) -> Result<&str, Error> {
        match self.required(field)? {
            OwnedValue::String(s) => Ok(s),
            _ => Err(Error::invalid(field, format!("{field} must be a string"))),
        }
    }

    /// `YYYY-MM-DD`.
    pub fn date(&self, field: &str) -> Result<NaiveDate, Error> {
        NaiveDate::parse_from_str(self.string(field)?, "%Y-%m-%d")
            .map_err(|_| Error::invalid(field, format!("{field} must be a date YYYY-MM-DD")))
    }

    /// `HH:mm:ss`.
    pub fn time_of_day(&self, field: &str) -> Result<NaiveTime, Error> {
        NaiveTime::parse_from_str(self.string(field)?, "%H:%M:%S")
            .map_err(|_| Error::invalid(field, format!("{field} must be a time HH:mm:ss")))
    }

    /// An ISO 8601 instant with an offset, e.g. `2026-12-24T19:00:00.000Z`.
    /// An ISO 8601 date-time within [`INSTANTS`], the range MariaDB's time functions cover.
    pub fn instant(&self, field: &str) -> Result<DateTime<Utc>, Error> {
        let t = DateTime::parse_from_rfc3339(self.string(field)?)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| Error::invalid(field, format!("{field} must be an ISO 8601 date-time")))?;
        if !INSTANTS.contains(&t.timestamp()) {
            return Err(Error::invalid(
                field,
                format!("{field} must be from 1970-01-01T00:00:00Z to 2038-01-19T03:14:07Z"),
            ));
        }
        Ok(t)
    }

    /// An optional array (elements are checked by the caller, which names them `field[i]`).
    pub fn opt_array(&self, field: &str) -> Result<Option<&[OwnedValue]>, Error> {
        match self.get(field) {
            None => Ok(None),
            Some(OwnedValue::Array(items)) => Ok(Some(items.as_slice())),
            Some(_) => Err(Error::invalid(field, format!("{field} must be an array"))),
        }
    }

    /// Wraps an array element that must itself be an object.
    pub fn element(value: &OwnedValue, field: &str) -> Result<JsonObject, Error> {
        match value {
            OwnedValue::Object(obj) => Ok(JsonObject(obj.clone())),
            _ => Err(Error::invalid(field, format!("{field} must be an object"))),
        }
    }
}

/// Only JSON integers count: strings, floats (even `3.0`), zero and negatives are refused.
fn positive_int(value: &OwnedValue, field: &str, max: u64) -> Result<u64, Error> {
    let n = match value {
        OwnedValue::Static(StaticNode::U64(n)) => Some(*n),
        OwnedValue::Static(StaticNode::I64(n)) => u64::try_from(*n).ok(),
        _ => None,
    };
    match n {
        Some(n) if n > 0 && n <= max => Ok(n),
        _ => Err(Error::invalid(
            field,
            format!("{field} must be an integer from 1 to {max}"),
        )),
    }
}

/// The `Idempotency-Key` header, if any: 1 to 64 printable ASCII characters.
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Error> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let bad = || Error::invalid("Idempotency-Key", "must be 1 to 64 printable characters");
    let key = value.to_str().map_err(|_| bad())?;
    if key.is_empty() || key.len() > 64 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad());
    }
    Ok(Some(key.to_string()))
}

/// The Bearer token of the `Authorization` header: `401 AUTH_REQUIRED` when there is none
/// or its scheme is not `Bearer` (the scheme's case does not matter).
pub fn bearer(headers: &HeaderMap) -> Result<&str, Error> {
    let value = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or(Error::AuthRequired)?;
    match value.trim().split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => Ok(token.trim()),
        _ => Err(Error::AuthRequired),
    }
}

/// The `Queue-Token` header.
pub const QUEUE_TOKEN: &str = "queue-token";

/// The Queue-Token, opened with `key`: one seatrush did not sign (forged, mangled, or a v1
/// UUID) is `401 QUEUE_TOKEN_INVALID` before any Redis call, counted in
/// `seatrush_queue_tokens_forged_total`.
pub fn queue_token(headers: &HeaderMap, key: &TokenKey) -> Result<QueueToken, Error> {
    let raw = headers.get(QUEUE_TOKEN).ok_or(Error::QueueTokenMissing)?;
    let text = raw.to_str().map_err(|_| Error::QueueTokenInvalid)?.trim();
    if text.is_empty() {
        return Err(Error::QueueTokenMissing);
    }
    key.open(text).inspect_err(|_| {
        metrics::counter!("seatrush_queue_tokens_forged_total").increment(1);
    })
}

/// A path segment that must be a positive integer id.
pub fn path_id(segment: &str, field: &str) -> Result<u64, Error> {
    match segment.parse::<u64>() {
        Ok(n) if n > 0 && n <= MAX_ID && !segment.starts_with('+') => Ok(n),
        _ => Err(Error::invalid(
            field,
            format!("{field} must be a positive integer"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(json: &str) -> JsonObject {
        JsonObject::parse(json.as_bytes().to_vec()).unwrap()
    }

    fn field_of(err: Error) -> String {
        match err {
            Error::InvalidRequest { field, .. } => field,
            other => panic!("expected INVALID_REQUEST, got {other:?}"),
        }
    }

    #[test]
    fn ids_must_be_positive_json_integers() {
        assert_eq!(obj(r#"{"userId": 7}"#).id("userId").unwrap(), 7);
        for bad in [
            r#""7""#,
            "7.0",
            "-1",
            "0",
            "true",
            "null",
            "9223372036854775808",
        ] {
            let body = format!(r#"{{"userId": {bad}}}"#);
            assert_eq!(
                field_of(obj(&body).id("userId").unwrap_err()),
                "userId",
                "{bad}"
            );
        }
        assert_eq!(field_of(obj("{}").id("userId").unwrap_err()), "userId");
    }

    #[test]
    fn text_is_trimmed_not_blank_and_counted_as_sent() {
        assert_eq!(obj(r#"{"t": " Live \n"}"#).text("t", 10).unwrap(), "Live");
        // U+0085 and U+3000 are white space (Unicode White_Space), as the document's pattern says.
        for blank in [r#""""#, r#"" \t ""#, r#""\u0085""#, r#""\u3000""#] {
            let body = format!(r#"{{"t": {blank}}}"#);
            assert_eq!(field_of(obj(&body).text("t", 10).unwrap_err()), "t");
        }
        // The document's maxLength counts the string as sent, white space included.
        let padded = format!(r#"{{"t": " {} "}}"#, "x".repeat(9));
        assert_eq!(field_of(obj(&padded).text("t", 10).unwrap_err()), "t");
    }

    #[test]
    fn integers_past_64_bits_are_json_too() {
        // An unknown field holding one is ignored like any other unknown field.
        let body = obj(r#"{"userId": 7, "extra": 351313633264820617216, "more": -1e300}"#);
        assert_eq!(body.id("userId").unwrap(), 7);
        // In a known field it is an out-of-range value, named as such, not a parse error.
        let body = obj(r#"{"userId": 351313633264820617216}"#);
        assert_eq!(field_of(body.id("userId").unwrap_err()), "userId");
    }

    #[test]
    fn id_lists_are_non_empty_distinct_and_name_the_bad_element() {
        assert_eq!(obj(r#"{"s": [3, 1]}"#).id_list("s", 4).unwrap(), vec![3, 1]);
        for (json, field) in [
            (r#"{"s": []}"#, "s"),
            (r#"{"s": 3}"#, "s"),
            (r#"{"s": [1, 2, 3, 4, 5]}"#, "s"),
            (r#"{"s": [1, "2"]}"#, "s[1]"),
            (r#"{"s": [1, 0]}"#, "s[1]"),
            (r#"{"s": [1, 2, 1]}"#, "s[2]"),
            (r#"{}"#, "s"),
        ] {
            assert_eq!(
                field_of(obj(json).id_list("s", 4).unwrap_err()),
                field,
                "{json}"
            );
        }
    }

    #[test]
    fn bodies_that_are_not_objects_name_the_body() {
        for bad in ["", "[1]", "{", "12", r#""x""#] {
            let err = JsonObject::parse(bad.as_bytes().to_vec()).err().unwrap();
            assert_eq!(field_of(err), "body", "{bad}");
        }
    }

    #[test]
    fn idempotency_keys_are_short_printable_words() {
        use hyper::header::HeaderValue;
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert("idempotency-key", HeaderValue::from_str(v).unwrap());
            h
        };
        assert_eq!(idempotency_key(&HeaderMap::new()).unwrap(), None);
        assert_eq!(
            idempotency_key(&with("order-42")).unwrap().as_deref(),
            Some("order-42")
        );
        for bad in ["", "has space", &"x".repeat(65)] {
            assert_eq!(
                field_of(idempotency_key(&with(bad)).unwrap_err()),
                "Idempotency-Key",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn missing_blank_and_unsigned_tokens_are_told_apart() {
        use hyper::header::HeaderValue;
        let key = TokenKey::new(&["s"]).unwrap();
        let with = |value: Option<&str>| {
            let mut h = HeaderMap::new();
            if let Some(v) = value {
                h.insert(QUEUE_TOKEN, HeaderValue::from_str(v).unwrap());
            }
            queue_token(&h, &key)
        };
        assert!(matches!(with(None), Err(Error::QueueTokenMissing)));
        assert!(matches!(with(Some(" ")), Err(Error::QueueTokenMissing)));
        for bad in ["abc", "0f8fad5b-d9cb-469f-a165-70867728950e", "1.2.3.xyz"] {
            assert!(
                matches!(with(Some(bad)), Err(Error::QueueTokenInvalid)),
                "{bad}"
            );
        }
        let token = QueueToken {
            schedule_id: 1,
            sequence: 2,
            user_id: 3,
        };
        assert_eq!(with(Some(&key.seal(token))).unwrap(), token);
    }

    #[test]
    fn only_a_bearer_scheme_carries_an_identity() {
        use hyper::header::HeaderValue;
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
            h
        };
        assert_eq!(bearer(&with("Bearer abc.def.ghi")).unwrap(), "abc.def.ghi");
        assert_eq!(bearer(&with("bearer  x.y.z ")).unwrap(), "x.y.z");
        assert!(matches!(
            bearer(&HeaderMap::new()),
            Err(Error::AuthRequired)
        ));
        for bad in ["Basic dXNlcjpwdw==", "Bearer", "abc.def.ghi", ""] {
            assert!(
                matches!(bearer(&with(bad)), Err(Error::AuthRequired)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn path_ids_refuse_signs_zero_and_words() {
        assert_eq!(path_id("42", "scheduleId").unwrap(), 42);
        for bad in ["0", "-3", "+3", "abc", "", "1.5", "99999999999999999999"] {
            assert_eq!(
                field_of(path_id(bad, "scheduleId").unwrap_err()),
                "scheduleId"
            );
        }
    }

    #[test]
    fn dates_and_times_are_strict() {
        let o = obj(
            r#"{"d": "2026-12-24", "t": "19:00:00", "i": "2026-12-24T19:00:00.000Z", "bad": "24/12/2026"}"#,
        );
        assert_eq!(o.date("d").unwrap().to_string(), "2026-12-24");
        assert_eq!(o.time_of_day("t").unwrap().to_string(), "19:00:00");
        assert_eq!(o.instant("i").unwrap().timestamp(), 1_798_138_800);
        assert_eq!(field_of(o.date("bad").unwrap_err()), "bad");
        assert_eq!(field_of(o.instant("d").unwrap_err()), "d");
    }
}
