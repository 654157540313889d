//! clew's web UI, served from the binary.
//!
//! The UI is a TypeScript (Preact) app in `ui/` at the repository root. `npm run build`
//! writes it to `ui/dist`, which is committed, and this crate's build script embeds that
//! directory, so building and running clew needs no Node.js. A test in this crate fails
//! when the committed `ui/dist` was built from other sources than `ui/` holds.
//!
//! [`router`] answers every path that is not an API path: the built files, with content
//! types and cache headers, and `index.html` for the UI's own routes (`/search?…`,
//! `/trace/{id}`, `/map`, …) so that any address the UI shows can be opened directly.
//! Paths under `/api` are never answered with the page: the query API owns them, and
//! this router answers a stray one with the API's JSON 404.
//!
//! It must never import another clew crate: it only serves files, and the server wires
//! it next to the query API.

use axum::Router;
use axum::body::Body;
use axum::http::header::{
    ALLOW, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH,
    X_CONTENT_TYPE_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

/// One file of `ui/dist`.
#[derive(Debug)]
pub struct Asset {
    /// The URL path, `/index.html`, `/assets/index-3f9a….js`.
    pub path: &'static str,
    pub content_type: &'static str,
    /// Named by content hash, so cacheable forever.
    pub immutable: bool,
    /// A quoted strong validator, a hash of the body.
    pub etag: &'static str,
    pub body: &'static [u8],
}

include!(concat!(env!("OUT_DIR"), "/assets.rs"));

/// The embedded files, in path order.
pub fn assets() -> &'static [Asset] {
    ASSETS
}

fn asset(path: &str) -> Option<&'static Asset> {
    ASSETS
        .binary_search_by(|a| a.path.cmp(path))
        .ok()
        .map(|i| &ASSETS[i])
}

const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// The page names the current hashed assets, so it must be revalidated on every load
/// (cheaply, with its ETag) or a browser would keep asking for deleted bundles.
const REVALIDATE: &str = "no-cache";
/// Inline `style` attributes are how the UI positions timeline bars; `blob:` is the
/// text tree's download link.
const CSP: &str = "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
                   connect-src 'self' blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/// The UI's routes: merge it with the query API's router, which has no fallback.
///
/// ```ignore
/// let app = clew_query::router(store).merge(clew_ui::router());
/// ```
pub fn router() -> Router {
    Router::new().fallback(serve)
}

async fn serve(method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path();
    if path == "/api" || path.starts_with("/api/") {
        // Reached only if the query API did not claim the path; a script that mistyped
        // an endpoint must get JSON it can report, never the HTML page.
        let body = serde_json::json!({ "error": format!("no API endpoint at {path}") });
        return (StatusCode::NOT_FOUND, axum::Json(body)).into_response();
    }
    if method != Method::GET && method != Method::HEAD {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(ALLOW, "GET, HEAD")],
            "the UI only answers GET and HEAD\n",
        )
            .into_response();
    }
    let found = match path {
        "/" | "/index.html" => asset("/index.html"),
        _ => asset(path),
    };
    let file = match found {
        Some(file) => file,
        // A missing bundle or image must be a 404, not the page: a browser given HTML for
        // a script reports a confusing MIME error instead of "not found".
        None if path.starts_with("/assets/") || last_segment_has_extension(path) => {
            return (StatusCode::NOT_FOUND, "not found\n").into_response();
        }
        None => match asset("/index.html") {
            Some(index) => index,
            None => return not_built(),
        },
    };
    respond(file, &method, &headers)
}

fn last_segment_has_extension(path: &str) -> bool {
    path.rsplit('/').next().is_some_and(|s| s.contains('.'))
}

fn respond(file: &'static Asset, method: &Method, headers: &HeaderMap) -> Response {
    let cache = if file.immutable {
        IMMUTABLE
    } else {
        REVALIDATE
    };
    let mut builder = Response::builder()
        .header(CONTENT_TYPE, file.content_type)
        .header(CACHE_CONTROL, cache)
        .header(ETAG, file.etag)
        .header(X_CONTENT_TYPE_OPTIONS, "nosniff");
    if file.content_type.starts_with("text/html") {
        builder = builder.header(CONTENT_SECURITY_POLICY, CSP);
    }
    let not_modified = headers
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| {
            let tag = tag.trim();
            tag == file.etag || tag == "*"
        });
    let response = if not_modified {
        builder.status(StatusCode::NOT_MODIFIED).body(Body::empty())
    } else if method == Method::HEAD {
        builder
            .header(
                axum::http::header::CONTENT_LENGTH,
                HeaderValue::from(file.body.len()),
            )
            .body(Body::empty())
    } else {
        builder.body(Body::from(file.body))
    };
    response.unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// Served when this binary was built without `ui/dist`.
fn not_built() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(CONTENT_TYPE, "text/plain; charset=utf-8")],
        "This clew binary was built without its web UI (ui/dist was missing).\n\
         Build it with `npm --prefix ui ci && npm --prefix ui run build`, then rebuild clew.\n\
         The query API under /api/ and the `clew` CLI work without it.\n",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use axum::body::to_bytes;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;

    async fn get(method: Method, path: &str, headers: &[(&str, &str)]) -> Response {
        let mut request = Request::builder().method(method).uri(path);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        router()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    async fn text(response: Response) -> String {
        String::from_utf8(
            to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap()
                .to_vec(),
        )
        .unwrap()
    }

    fn header<'a>(response: &'a Response, name: &str) -> &'a str {
        response.headers()[name].to_str().unwrap()
    }

    fn hashed_script() -> &'static Asset {
        ASSETS
            .iter()
            .find(|a| a.path.starts_with("/assets/") && a.path.ends_with(".js"))
            .expect("ui/dist has a bundled script")
    }

    #[test]
    fn the_table_is_sorted_for_binary_search() {
        assert!(ASSETS.windows(2).all(|w| w[0].path < w[1].path));
        assert!(asset("/index.html").is_some());
    }

    #[tokio::test]
    async fn the_ui_routes_get_the_page_uncached() {
        for path in [
            "/",
            "/index.html",
            "/search?service=ares&attr=target%3Dorlan",
            "/trace/0190c5a8e7b77c3a9d2f4e1b6a8c0d12?span=00f067aa0ba902b7",
            "/map",
            "/trace/0190c5a8e7b77c3a9d2f4e1b6a8c0d12/replay?at=3",
            "/diff/a/b",
        ] {
            let response = get(Method::GET, path, &[]).await;
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            assert_eq!(
                header(&response, "content-type"),
                "text/html; charset=utf-8"
            );
            assert_eq!(header(&response, "cache-control"), "no-cache");
            assert!(header(&response, "content-security-policy").contains("default-src 'self'"));
            let body = text(response).await;
            assert!(body.contains("<div id=\"app\"></div>"), "{path}: {body}");
        }
    }

    #[tokio::test]
    async fn hashed_assets_are_immutable_with_their_type() {
        let script = hashed_script();
        let response = get(Method::GET, script.path, &[]).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            header(&response, "content-type"),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(
            header(&response, "cache-control"),
            "public, max-age=31536000, immutable"
        );
        assert_eq!(header(&response, "x-content-type-options"), "nosniff");
        assert_eq!(text(response).await.len(), script.body.len());
        let css = ASSETS.iter().find(|a| a.path.ends_with(".css")).unwrap();
        let response = get(Method::GET, css.path, &[]).await;
        assert_eq!(header(&response, "content-type"), "text/css; charset=utf-8");
    }

    #[tokio::test]
    async fn api_paths_are_never_the_page() {
        for path in ["/api", "/api/", "/api/nope", "/api/clew/traces/x/y"] {
            let response = get(Method::GET, path, &[]).await;
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
            assert_eq!(header(&response, "content-type"), "application/json");
            assert_eq!(
                text(response).await,
                format!("{{\"error\":\"no API endpoint at {path}\"}}")
            );
        }
    }

    #[tokio::test]
    async fn missing_files_are_404_not_the_page() {
        for path in ["/assets/index-gone.js", "/favicon.ico", "/robots.txt"] {
            let response = get(Method::GET, path, &[]).await;
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        }
    }

    #[tokio::test]
    async fn revalidation_head_and_methods() {
        let index = asset("/index.html").unwrap();
        let fresh = get(Method::GET, "/trace/abc", &[("if-none-match", index.etag)]).await;
        assert_eq!(fresh.status(), StatusCode::NOT_MODIFIED);
        assert!(text(fresh).await.is_empty());
        let stale = get(Method::GET, "/", &[("if-none-match", "\"0\"")]).await;
        assert_eq!(stale.status(), StatusCode::OK);

        let head = get(Method::HEAD, "/map", &[]).await;
        assert_eq!(head.status(), StatusCode::OK);
        assert_eq!(
            header(&head, "content-length"),
            index.body.len().to_string()
        );
        assert!(text(head).await.is_empty());

        let post = get(Method::POST, "/search", &[]).await;
        assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(header(&post, "allow"), "GET, HEAD");
    }
}
