//! The waiting-room page: `GET /` and `GET /waiting-room/…`, the one set of answers that is
//! not JSON. Its HTML, CSS and JavaScript (`web/`) are compiled into the binary; each is
//! served with a strong `ETag` of its bytes (`304` on `If-None-Match`), gzip when the
//! request accepts it, and headers that keep the page to its own origin. The page talks
//! only to the public JSON API, with the identity the embedding site hands it (README,
//! "The waiting-room page").

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::sync::OnceLock;

use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;
use hyper::Response;
use hyper::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, HeaderMap, HeaderValue, REFERRER_POLICY,
    X_CONTENT_TYPE_OPTIONS,
};

use super::response::{self, Body};

/// One of the page's files (its routes are not part of the JSON API).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asset {
    /// The HTML, for `/`, `/waiting-room` and `/waiting-room/{concertId}/{scheduleId}`.
    Html,
    Script,
    Style,
}

/// Scripts, styles and requests only from this origin; no plug-ins, no inline code, no
/// `<base>`. The page may be framed by the ticketing site that embeds it.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'";

/// A file as served: its bytes, their tag, and the gzip form made on first demand.
struct Served {
    bytes: &'static [u8],
    content_type: &'static str,
    tag: OnceLock<u64>,
    gzip: OnceLock<Bytes>,
}

impl Served {
    const fn new(bytes: &'static str, content_type: &'static str) -> Self {
        Self {
            bytes: bytes.as_bytes(),
            content_type,
            tag: OnceLock::new(),
            gzip: OnceLock::new(),
        }
    }

    fn tag(&self) -> u64 {
        *self.tag.get_or_init(|| {
            let mut hasher = DefaultHasher::new();
            self.bytes.hash(&mut hasher);
            hasher.finish()
        })
    }

    fn gzip(&self) -> Bytes {
        self.gzip
            .get_or_init(|| {
                let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
                encoder
                    .write_all(self.bytes)
                    .and_then(|()| encoder.finish())
                    .map(Bytes::from)
                    .expect("compressing into memory cannot fail")
            })
            .clone()
    }
}

static HTML: Served = Served::new(
    include_str!("../../web/waiting-room.html"),
    "text/html; charset=utf-8",
);
static SCRIPT: Served = Served::new(
    include_str!("../../web/waiting-room.js"),
    "text/javascript; charset=utf-8",
);
static STYLE: Served = Served::new(
    include_str!("../../web/waiting-room.css"),
    "text/css; charset=utf-8",
);

/// The asset, revalidated by the browser on each load (`no-cache`), so a new release is
/// picked up at once and an unchanged file costs a `304`.
pub fn serve(headers: &HeaderMap, asset: Asset) -> Response<Body> {
    let served = match asset {
        Asset::Html => &HTML,
        Asset::Script => &SCRIPT,
        Asset::Style => &STYLE,
    };
    let mut rsp = response::representation(
        headers,
        HeaderValue::from_static(served.content_type),
        served.tag(),
        &Bytes::from_static(served.bytes),
        || served.gzip(),
    );
    let out = rsp.headers_mut();
    out.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    out.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY));
    out.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // The identity travels in the URL's fragment, which is never sent; no referrer either.
    out.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    rsp
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use hyper::StatusCode;
    use hyper::header::{CONTENT_ENCODING, CONTENT_TYPE, ETAG, IF_NONE_MATCH};

    async fn bytes_of(rsp: Response<Body>) -> Bytes {
        rsp.into_body().collect().await.unwrap().to_bytes()
    }

    #[tokio::test]
    async fn each_asset_is_served_whole_gzipped_or_not_modified() {
        let plain = serve(&HeaderMap::new(), Asset::Script);
        assert_eq!(plain.status(), StatusCode::OK);
        assert_eq!(
            plain.headers()[CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        let etag = plain.headers()[ETAG].clone();
        assert_eq!(bytes_of(plain).await, SCRIPT.bytes);

        let mut gzip = HeaderMap::new();
        gzip.insert("accept-encoding", HeaderValue::from_static("gzip"));
        let zipped = serve(&gzip, Asset::Script);
        assert_eq!(zipped.headers()[CONTENT_ENCODING], "gzip");
        assert_ne!(zipped.headers()[ETAG], etag);
        let mut inflated = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::GzDecoder::new(&bytes_of(zipped).await[..]),
            &mut inflated,
        )
        .unwrap();
        assert_eq!(inflated, SCRIPT.bytes);

        let mut again = HeaderMap::new();
        again.insert(IF_NONE_MATCH, etag);
        let not_modified = serve(&again, Asset::Script);
        assert_eq!(not_modified.status(), StatusCode::NOT_MODIFIED);
        assert!(bytes_of(not_modified).await.is_empty());
    }

    #[test]
    fn the_page_names_only_its_own_files_and_each_has_its_own_tag() {
        let html = std::str::from_utf8(HTML.bytes).unwrap();
        assert!(html.contains(r#"src="/waiting-room/waiting-room.js""#));
        assert!(html.contains(r#"href="/waiting-room/waiting-room.css""#));
        assert!(!html.contains("http://") && !html.contains("https://"));
        assert_ne!(HTML.tag(), SCRIPT.tag());
        assert_ne!(SCRIPT.tag(), STYLE.tag());
    }

    #[test]
    fn the_page_keeps_to_its_origin() {
        let rsp = serve(&HeaderMap::new(), Asset::Html);
        let policy = rsp.headers()[CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(policy.contains("script-src 'self'") && !policy.contains("unsafe"));
        assert_eq!(rsp.headers()[X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(rsp.headers()[REFERRER_POLICY], "no-referrer");
    }
}
