//! `/openapi.json` is the document in `api/openapi.json`, and it describes exactly
//! the routes the router serves, with exactly their methods.

mod common;

use std::collections::BTreeSet;

use common::TestApp;
use hyper::Method;
use seatrush::api::router::{self, UNMATCHED};
use seatrush::model::Error;
use simd_json::prelude::*;

fn document() -> simd_json::OwnedValue {
    let mut text = seatrush::api::OPENAPI.as_bytes().to_vec();
    simd_json::to_owned_value(&mut text).expect("api/openapi.json is JSON")
}

/// The methods the router accepts on a path, from the `Allow` list of its 405 answer.
fn router_methods(path: &str) -> (String, BTreeSet<String>) {
    let matched = router::resolve(&Method::PATCH, path);
    match matched.route {
        Err(Error::MethodNotAllowed { allow }) => (
            matched.template.to_string(),
            allow.split(", ").map(str::to_string).collect(),
        ),
        other => panic!("PATCH {path}: {other:?}"),
    }
}

#[test]
fn every_documented_path_is_routed_with_exactly_its_methods() {
    let doc = document();
    assert_eq!(doc["openapi"].as_str().map(|v| &v[..2]), Some("3."));
    let paths = doc["paths"].as_object().expect("paths");
    assert!(!paths.is_empty());
    for (template, item) in paths.iter() {
        // Any positive id stands in for a path parameter.
        let path: String = template
            .split('/')
            .map(|s| if s.starts_with('{') { "7" } else { s })
            .collect::<Vec<_>>()
            .join("/");
        let (routed, methods) = router_methods(&path);
        assert_eq!(&routed, template, "{path} is routed as {routed}");
        let documented: BTreeSet<String> = item
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| ["get", "put", "post", "delete", "patch"].contains(&k.as_str()))
            .map(|k| k.to_uppercase())
            .collect();
        assert_eq!(documented, methods, "methods of {template}");
    }
}

#[test]
fn every_routed_path_is_documented() {
    // Each route's template is a string literal of the router, starting with '/'.
    let source = include_str!("../src/api/router.rs");
    let doc = document();
    let paths = doc["paths"].as_object().unwrap();
    let templates: BTreeSet<&str> = source
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|s| s.starts_with('/') && *s != UNMATCHED)
        .filter(|s| !router::PAGE_TEMPLATES.contains(s))
        .collect();
    assert!(templates.len() > 15, "{templates:?}");
    for template in templates {
        if router::resolve(&Method::PATCH, template).template != template {
            continue; // a literal that is not a route's template (e.g. a path in a test)
        }
        assert!(
            paths.contains_key(template),
            "{template} is routed but not in api/openapi.json"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_is_served_bare() {
    let app = TestApp::spawn().await;
    let rsp = app.get("/openapi.json", &[]).await;
    assert_eq!(rsp.status.as_u16(), 200);
    assert_eq!(rsp.headers["content-type"], "application/json");
    assert_eq!(rsp.body, document());
}
