//! Property tests of everything that reads untrusted request text: the router, the JSON body
//! and its typed fields, path ids, and the Queue-Token and Idempotency-Key headers. For any
//! input they answer a value or an `INVALID_REQUEST`-style error, never a panic, and what
//! they accept is exactly what the rules say.

use hyper::Method;
use hyper::header::{HeaderMap, HeaderValue};
use proptest::prelude::*;

use super::request::{JsonObject, QUEUE_TOKEN, idempotency_key, path_id, queue_token};
use super::router;
use crate::identity::{Identity, TokenKey};
use crate::model::{Error, QueueToken};

/// Paths made of plausible and implausible segments, so the router's matches are reached.
fn paths() -> impl Strategy<Value = String> {
    let segment = prop_oneof![
        Just("api".to_string()),
        Just("v1".to_string()),
        Just("queue".to_string()),
        Just("tokens".to_string()),
        Just("me".to_string()),
        Just("concerts".to_string()),
        Just("schedules".to_string()),
        Just("seats".to_string()),
        Just("reservations".to_string()),
        Just("payments".to_string()),
        Just("users".to_string()),
        Just("balance".to_string()),
        Just("charge".to_string()),
        Just("admin".to_string()),
        Just("queue".to_string()),
        "[0-9]{1,25}",
        "-?[0-9+]{0,5}",
        any::<String>(),
    ];
    prop::collection::vec(segment, 0..9).prop_map(|s| format!("/{}", s.join("/")))
}

fn methods() -> impl Strategy<Value = Method> {
    prop_oneof![
        Just(Method::GET),
        Just(Method::POST),
        Just(Method::PUT),
        Just(Method::DELETE),
        Just(Method::HEAD),
        Just(Method::PATCH),
        Just(Method::OPTIONS),
    ]
}

/// JSON values of every kind, nested a little.
fn json() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_string()),
        Just("true".to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| f.to_string()),
        "[0-9]{20,30}",
        any::<String>().prop_map(|s| simd_json::to_string(&s).expect("strings serialize")),
        Just(r#""2026-12-24""#.to_string()),
        Just(r#""19:00:00""#.to_string()),
        Just(r#""2026-12-24T10:00:00Z""#.to_string()),
        Just(r#""9999-12-31T23:59:59Z""#.to_string()),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec(("[a-z]{1,3}", inner), 0..4).prop_map(|kv| {
                let fields: Vec<String> =
                    kv.into_iter().map(|(k, v)| format!("{k:?}:{v}")).collect();
                format!("{{{}}}", fields.join(","))
            }),
        ]
    })
}

fn is_client_error(e: &Error) -> bool {
    super::response::status(e).is_client_error()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn the_router_answers_every_method_and_path(method in methods(), path in paths()) {
        let matched = router::resolve(&method, &path);
        if let Err(e) = matched.route {
            prop_assert!(is_client_error(&e), "{path}: {e:?}");
        }
    }

    #[test]
    fn path_ids_are_canonical_positive_integers(segment in "[0-9+-]{0,22}|.{0,8}") {
        match path_id(&segment, "id") {
            Ok(n) => {
                prop_assert!(n > 0);
                prop_assert_eq!(segment.trim_start_matches('0'), n.to_string());
            }
            Err(e) => prop_assert!(is_client_error(&e)),
        }
    }

    #[test]
    fn any_body_is_parsed_or_refused(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        if let Err(e) = JsonObject::parse(bytes) {
            prop_assert!(is_client_error(&e));
        }
    }

    #[test]
    fn typed_fields_take_exactly_what_they_say(value in json()) {
        let body = format!(r#"{{"f":{value}}}"#);
        // Numbers past f64's range (1e400) are refused as invalid JSON: a client error, too.
        let obj = match JsonObject::parse(body.into_bytes()) {
            Ok(obj) => obj,
            Err(e) => {
                prop_assert!(is_client_error(&e));
                return Ok(());
            }
        };
        match obj.id("f") {
            Ok(id) => prop_assert!(id > 0 && value.trim() == id.to_string(), "{value}"),
            Err(e) => prop_assert!(is_client_error(&e)),
        }
        match obj.id_list("f", 4) {
            Ok(ids) => {
                prop_assert!((1..=4).contains(&ids.len()));
                let mut distinct = ids.clone();
                distinct.sort_unstable();
                distinct.dedup();
                prop_assert_eq!(distinct.len(), ids.len(), "ids repeat");
            }
            Err(e) => prop_assert!(is_client_error(&e)),
        }
        match obj.text("f", 10) {
            Ok(text) => prop_assert!(!text.trim().is_empty() && text.chars().count() <= 10),
            Err(e) => prop_assert!(is_client_error(&e)),
        }
        if let Ok(at) = obj.instant("f") {
            prop_assert!(super::request::INSTANTS.contains(&at.timestamp()), "{at}");
        }
        for result in [
            obj.date("f").map(drop),
            obj.time_of_day("f").map(drop),
            obj.opt_bool("f").map(drop),
            obj.opt_positive("f", 1000).map(drop),
            obj.opt_array("f").map(drop),
        ] {
            if let Err(e) = result {
                prop_assert!(is_client_error(&e));
            }
        }
    }

    #[test]
    fn only_tokens_seatrush_sealed_open(text in ".{0,90}|[0-9.]{1,30}[.][A-Za-z0-9_-]{22}") {
        let key = TokenKey::new(&["property-secret"]).unwrap();
        let mut headers = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_str(&text) {
            headers.insert(QUEUE_TOKEN, value);
            match queue_token(&headers, &key) {
                Ok(token) => prop_assert_eq!(key.seal(token), text.trim()),
                Err(e) => prop_assert!(is_client_error(&e)),
            }
        }
    }

    #[test]
    fn a_sealed_token_changed_anywhere_does_not_open(
        schedule_id in 1..=i64::MAX as u64,
        sequence in 1..=i64::MAX as u64,
        user_id in 1..=i64::MAX as u64,
        at in 0usize..200,
        to in "[A-Za-z0-9._~-]",
    ) {
        let key = TokenKey::new(&["property-secret"]).unwrap();
        let token = QueueToken { schedule_id, sequence, user_id };
        let sealed = key.seal(token);
        prop_assert_eq!(key.open(&sealed).unwrap(), token);
        let at = at % sealed.len();
        let mut changed = sealed.clone();
        changed.replace_range(at..at + 1, &to);
        if changed != sealed {
            prop_assert!(matches!(key.open(&changed), Err(Error::QueueTokenInvalid)), "{changed}");
        }
    }

    #[test]
    fn an_identity_changed_anywhere_does_not_verify(
        user_id in 1..=i64::MAX as u64,
        at in 0usize..400,
        to in "[A-Za-z0-9._-]",
    ) {
        let identity = Identity::shared_secrets(&["property-secret"]).unwrap();
        let signed = identity.sign(user_id, 600).unwrap();
        prop_assert_eq!(identity.verify(&signed).unwrap().user_id(), user_id);
        let at = at % signed.len();
        let mut changed = signed.clone();
        changed.replace_range(at..at + 1, &to);
        if changed != signed {
            // Base64url's last character carries spare bits: a change there may decode to
            // the same bytes, which is the same token, not a forgery.
            match identity.verify(&changed) {
                Ok(caller) => prop_assert_eq!(caller.user_id(), user_id),
                Err(e) => prop_assert!(matches!(e, Error::AuthInvalid)),
            }
        }
    }

    #[test]
    fn arbitrary_bearer_text_is_never_an_identity(text in ".{0,300}") {
        let identity = Identity::shared_secrets(&["property-secret"]).unwrap();
        prop_assert!(matches!(identity.verify(&text), Err(Error::AuthInvalid)));
    }

    #[test]
    fn idempotency_keys_are_1_to_64_printable_characters(text in ".{0,80}") {
        let mut headers = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_str(&text) {
            headers.insert("idempotency-key", value);
            match idempotency_key(&headers) {
                Ok(Some(key)) => prop_assert!(
                    (1..=64).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic())
                ),
                Ok(None) => prop_assert!(false, "a present header is not None"),
                Err(e) => prop_assert!(is_client_error(&e)),
            }
        }
    }
}
