//! `kb-dashboard`: the web dashboard of kubecost-bridge (issue 8), served on the API's listener.
//!
//! | route | what |
//! | --- | --- |
//! | `GET /` | overview of every cluster the key may see: total for the range, trend against the previous period, freshness, open alerts; `?token=KEY` signs in and redirects to the same URL without it |
//! | `GET /clusters/{cluster}` | cost over time stacked by resource (`by=namespace`: by namespace), the namespace table (`sort`, `order`, `q`, `page`), recommendations with savings, anomalies, budgets, forecast |
//! | `GET /clusters/{cluster}/namespaces/{namespace}` | the namespace's workloads with their pods, and its recommendations |
//! | `GET /login`, `POST /login`, `POST /logout` | the sign-in form, sign-in, sign-out |
//! | `GET /assets/dashboard.css` | the stylesheet |
//!
//! Every page takes `window=24h|7d|30d|month|lastmonth` (default `7d`), the API's own `window`
//! values.
//!
//! **Reads** go through the kb-api router in process ([`api::Api`]): each request is built with
//! the session's key as `Authorization: Bearer` and answered by the same handlers, so API keys,
//! scopes, per-cluster access (404), rate limits (429), the response cache and the audit log
//! apply to the dashboard exactly as to the API, with no second read path.
//!
//! **Session**: the API key itself is kept in the `kb_session` cookie (`HttpOnly`,
//! `SameSite=Strict`, `Path=/`, a week's `Max-Age`, and `Secure` when the request came over
//! https: `X-Forwarded-Proto: https` or `Forwarded: proto=https` from the TLS proxy in front,
//! or always/never per [`SecureCookie`]). A key is checked by the API before the cookie is set
//! (401 shows the form again with an error). Without a cookie, pages redirect to `/login`
//! (unless the API runs without auth). The key is never logged, echoed or put in a URL the
//! dashboard writes. `POST` forms are refused (403) when their `Origin` is another site.
//!
//! **Pages** are server-rendered HTML with inline SVG charts ([`chart`]) and one stylesheet;
//! there is no script: sorting, filtering, paging and the range picker are links and `GET`
//! forms, details expand with `<details>`, so everything works from the keyboard. Responses
//! carry `Cache-Control: no-store` and a content-security-policy that allows only `'self'`.

/// Appends formatted text to a `String` (`write!` without a `fmt::Result` to ignore).
macro_rules! w {
    ($dst:expr, $($arg:tt)*) => {
        $dst.push_str(&format!($($arg)*))
    };
}

pub mod api;
pub mod chart;
pub mod html;
mod pages;

use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use percent_encoding::{NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use crate::api::{Api, Failure};
use crate::html::{Money, esc};

/// The session cookie's name.
pub const COOKIE: &str = "kb_session";

/// When the session cookie gets the `Secure` attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SecureCookie {
    /// When the request arrived over https (`X-Forwarded-Proto` / `Forwarded` from a TLS proxy).
    #[default]
    Auto,
    Always,
    Never,
}

/// Dashboard settings.
#[derive(Debug, Clone)]
pub struct Options {
    pub secure_cookie: SecureCookie,
    /// How long the browser keeps the session cookie.
    pub session_max_age: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            secure_cookie: SecureCookie::Auto,
            session_max_age: Duration::from_secs(7 * 86_400),
        }
    }
}

/// What the handlers share.
#[derive(Clone)]
pub(crate) struct Dash {
    pub api: Api,
    pub money: Money,
    pub opts: Options,
}

const CSS: &str = include_str!("dashboard.css");

/// The dashboard's routes, reading through `kb_api::router(api.clone())`. Merge into the
/// router that serves the API (it has no fallback of its own).
pub fn router(api: kb_api::ApiState, opts: Options) -> Router {
    let timeout = api.limits.request_timeout + Duration::from_secs(5);
    let dash = Dash {
        money: Money::new(&api.currency),
        api: Api::new(kb_api::router(api), timeout),
        opts,
    };
    Router::new()
        .route("/", get(overview))
        .route("/clusters/{cluster}", get(cluster))
        .route("/clusters/{cluster}/namespaces/{namespace}", get(namespace))
        .route("/login", get(login_form).post(login_post))
        .route("/logout", post(logout))
        .route("/assets/dashboard.css", get(css))
        .layer(middleware::map_response(security_headers))
        .layer(DefaultBodyLimit::max(16 * 1024))
        .with_state(dash)
}

async fn security_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    resp
}

async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        CSS,
    )
        .into_response()
}

// ---------------------------------------------------------------------------------------------
// Query parameters of the pages.

/// The parameters every page understands (others are ignored).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PageQuery {
    /// One of [`html::RANGES`].
    pub window: String,
    /// `resource` or `namespace` (the chart's stacking).
    pub by: String,
    /// Namespace table sort column (an API `sort` value).
    pub sort: String,
    /// `asc` or `desc`.
    pub order: String,
    /// Namespace filter (substring, case-insensitive).
    pub q: String,
    /// 1-based page of the namespace table.
    pub page: usize,
    pub token: Option<String>,
}

/// The namespace table's sortable columns (API `sort` values).
pub(crate) const SORTS: [&str; 9] = [
    "name",
    "total_cost",
    "cpu_cost",
    "gpu_cost",
    "memory_cost",
    "storage_cost",
    "network_cost",
    "idle_cost",
    "efficiency_score",
];

pub(crate) fn parse_query(raw: Option<&str>) -> PageQuery {
    let mut q = PageQuery {
        window: html::DEFAULT_RANGE.to_string(),
        by: "resource".to_string(),
        sort: "total_cost".to_string(),
        order: String::new(),
        q: String::new(),
        page: 1,
        token: None,
    };
    for (k, v) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()).take(32) {
        match k.as_ref() {
            "window" if html::RANGES.iter().any(|(w, _)| *w == v) => q.window = v.into_owned(),
            "by" if v == "namespace" || v == "resource" => q.by = v.into_owned(),
            "sort" if SORTS.contains(&v.as_ref()) => q.sort = v.into_owned(),
            "order" if v == "asc" || v == "desc" => q.order = v.into_owned(),
            "q" if v.len() <= 253 && !v.chars().any(char::is_control) => {
                q.q = v.trim().to_string();
            }
            "page" => q.page = v.parse::<usize>().unwrap_or(1).clamp(1, 100_000),
            "token" => q.token = Some(v.into_owned()),
            _ => {}
        }
    }
    if q.order.is_empty() {
        q.order = if q.sort == "name" { "asc" } else { "desc" }.to_string();
    }
    q
}

/// The request's query string without `token` (for the redirect after signing in).
fn without_token(raw: Option<&str>) -> String {
    let mut ser = url::form_urlencoded::Serializer::new(String::new());
    let mut any = false;
    for (k, v) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()).take(32) {
        if k != "token" {
            ser.append_pair(&k, &v);
            any = true;
        }
    }
    if any {
        format!("?{}", ser.finish())
    } else {
        String::new()
    }
}

// ---------------------------------------------------------------------------------------------
// Session.

/// The key in the request's session cookie.
pub(crate) fn session_key(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .and_then(|(_, v)| {
            percent_decode_str(v)
                .decode_utf8()
                .ok()
                .map(|s| s.into_owned())
        })
        .filter(|k| !k.is_empty() && k.len() <= 4096)
}

fn https(headers: &HeaderMap) -> bool {
    let xfp = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"));
    let fwd = headers
        .get(header::FORWARDED)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split([';', ',']).any(|p| {
                p.trim().split_once('=').is_some_and(|(k, v)| {
                    k.eq_ignore_ascii_case("proto")
                        && v.trim_matches('"').eq_ignore_ascii_case("https")
                })
            })
        });
    xfp || fwd
}

fn secure(opts: &Options, headers: &HeaderMap) -> bool {
    match opts.secure_cookie {
        SecureCookie::Always => true,
        SecureCookie::Never => false,
        SecureCookie::Auto => https(headers),
    }
}

/// The `Set-Cookie` value that keeps `key`.
pub(crate) fn session_cookie(key: &str, secure: bool, max_age: Duration) -> String {
    format!(
        "{COOKIE}={}; Path=/; Max-Age={}; HttpOnly; SameSite=Strict{}",
        utf8_percent_encode(key, NON_ALPHANUMERIC),
        max_age.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

fn clear_cookie(secure: bool) -> String {
    format!(
        "{COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    )
}

fn redirect(to: &str, cookie: Option<String>) -> Response {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    if let Some(c) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        resp.headers_mut().insert(header::SET_COOKIE, c);
    }
    resp
}

/// A local path to return to after signing in (`/` for anything else, so no open redirect).
fn safe_next(next: &str) -> &str {
    let ok = next.starts_with('/')
        && !next.starts_with("//")
        && !next.starts_with("/\\")
        && next.len() <= 2048
        && !next.chars().any(|c| c.is_control() || c == '\\');
    if ok { next } else { "/" }
}

/// Whether a `POST` came from this site: no `Origin` (same-origin form posts from older
/// browsers), or an `Origin` whose host is the request's `Host`.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let o = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    matches!(o, Some(h) if !host.is_empty() && h.eq_ignore_ascii_case(host))
}

/// Checks a key with the API: the overview's own read (its answer is then cached for the
/// page the browser is sent to).
async fn check_key(d: &Dash, key: &str, window: &str) -> Result<(), Failure> {
    if key.is_empty() || key.len() > 4096 {
        return Err(Failure {
            status: StatusCode::UNAUTHORIZED,
            message: String::new(),
            retry_after: None,
        });
    }
    d.api
        .get::<api::Clusters>(Some(key), "/api/v1/costs/kubernetes", &[("window", window)])
        .await
        .map(|_| ())
}

// ---------------------------------------------------------------------------------------------
// Responses.

fn html_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

/// The answer to a failed read: 401 sends to the sign-in form (dropping a stale cookie), other
/// failures (403 scope, 404 cluster, 429, 503) show the API's message with its status.
fn failure(d: &Dash, headers: &HeaderMap, f: Failure, had_key: bool, here: &str) -> Response {
    if f.status == StatusCode::UNAUTHORIZED {
        let to = format!(
            "/login{}",
            html::qs(&[
                ("next", here),
                ("error", if had_key { "expired" } else { "" })
            ])
        );
        let clear = had_key.then(|| clear_cookie(secure(&d.opts, headers)));
        return redirect(&to, clear);
    }
    let title = match f.status {
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::TOO_MANY_REQUESTS => "Too many requests",
        StatusCode::BAD_REQUEST => "Bad request",
        _ => "Something went wrong",
    };
    let retry = f
        .retry_after
        .as_deref()
        .map(|s| format!("<p>Retry in {} s.</p>", esc(s)))
        .unwrap_or_default();
    let main = format!(
        r#"<h1>{title}</h1><p class="error" role="alert">{}</p>{retry}<p><a href="/">Back to the overview</a></p>"#,
        esc(&f.message)
    );
    let mut resp = html_response(f.status, html::page(title, &[], had_key, &main));
    if let Some(v) = f.retry_after.and_then(|s| HeaderValue::from_str(&s).ok()) {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

fn here(path: &str, raw: Option<&str>) -> String {
    format!("{path}{}", without_token(raw))
}

// ---------------------------------------------------------------------------------------------
// Handlers.

async fn overview(State(d): State<Dash>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    let q = parse_query(raw.as_deref());
    if let Some(token) = &q.token {
        return match check_key(&d, token, &q.window).await {
            Ok(()) => redirect(
                &here("/", raw.as_deref()),
                Some(session_cookie(
                    token,
                    secure(&d.opts, &headers),
                    d.opts.session_max_age,
                )),
            ),
            Err(f) if f.status == StatusCode::UNAUTHORIZED => {
                login_page(StatusCode::UNAUTHORIZED, "/", Some(BAD_KEY))
            }
            Err(f) => failure(&d, &headers, f, false, "/"),
        };
    }
    let key = session_key(&headers);
    match pages::overview(&d, key.as_deref(), &q).await {
        Ok(body) => html_response(StatusCode::OK, body),
        Err(f) => failure(&d, &headers, f, key.is_some(), &here("/", raw.as_deref())),
    }
}

async fn cluster(
    State(d): State<Dash>,
    headers: HeaderMap,
    Path(cluster): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let q = parse_query(raw.as_deref());
    let key = session_key(&headers);
    match pages::cluster(&d, key.as_deref(), &cluster, &q).await {
        Ok(body) => html_response(StatusCode::OK, body),
        Err(f) => {
            let path = format!("/clusters/{}", html::seg(&cluster));
            failure(&d, &headers, f, key.is_some(), &here(&path, raw.as_deref()))
        }
    }
}

async fn namespace(
    State(d): State<Dash>,
    headers: HeaderMap,
    Path((cluster, namespace)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Response {
    let q = parse_query(raw.as_deref());
    let key = session_key(&headers);
    match pages::namespace(&d, key.as_deref(), &cluster, &namespace, &q).await {
        Ok(body) => html_response(StatusCode::OK, body),
        Err(f) => {
            let path = format!(
                "/clusters/{}/namespaces/{}",
                html::seg(&cluster),
                html::seg(&namespace)
            );
            failure(&d, &headers, f, key.is_some(), &here(&path, raw.as_deref()))
        }
    }
}

const BAD_KEY: &str = "That API key was not accepted. Check it and try again.";

fn login_page(status: StatusCode, next: &str, error: Option<&str>) -> Response {
    let err = error
        .map(|e| {
            format!(
                r#"<p class="error" role="alert" id="login-error">{}</p>"#,
                esc(e)
            )
        })
        .unwrap_or_default();
    let described = if error.is_some() {
        r#" aria-describedby="login-error""#
    } else {
        ""
    };
    let main = format!(
        r#"<section class="login"><h1>Sign in</h1><p>Paste an API key of the bridge (from <code>api.auth</code>, or the demo's token). It is kept in an HttpOnly cookie of this browser until you sign out.</p>{err}<form method="post" action="/login"><label for="token">API key</label><input id="token" name="token" type="password" autocomplete="off" required autofocus{described}><input type="hidden" name="next" value="{}"><button type="submit">Sign in</button></form></section>"#,
        esc(safe_next(next))
    );
    html_response(status, html::page("Sign in", &[], false, &main))
}

async fn login_form(RawQuery(raw): RawQuery) -> Response {
    let mut next = "/".to_string();
    let mut error = None;
    for (k, v) in url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()).take(8) {
        match k.as_ref() {
            "next" => next = safe_next(&v).to_string(),
            "error" if v == "expired" => {
                error =
                    Some("Your session has ended or its key is no longer valid. Sign in again.");
            }
            _ => {}
        }
    }
    login_page(StatusCode::OK, &next, error)
}

async fn login_post(State(d): State<Dash>, headers: HeaderMap, body: Bytes) -> Response {
    if !same_origin(&headers) {
        return html_response(
            StatusCode::FORBIDDEN,
            html::page(
                "Forbidden",
                &[],
                false,
                r#"<h1>Forbidden</h1><p class="error" role="alert">This form was sent from another site.</p>"#,
            ),
        );
    }
    let mut token = String::new();
    let mut next = "/".to_string();
    for (k, v) in url::form_urlencoded::parse(&body).take(8) {
        match k.as_ref() {
            "token" => token = v.trim().to_string(),
            "next" => next = safe_next(&v).to_string(),
            _ => {}
        }
    }
    match check_key(&d, &token, html::DEFAULT_RANGE).await {
        Ok(()) => redirect(
            &next,
            Some(session_cookie(
                &token,
                secure(&d.opts, &headers),
                d.opts.session_max_age,
            )),
        ),
        Err(f) if f.status == StatusCode::UNAUTHORIZED => {
            login_page(StatusCode::UNAUTHORIZED, &next, Some(BAD_KEY))
        }
        Err(f) => failure(&d, &headers, f, false, &next),
    }
}

async fn logout(State(d): State<Dash>, headers: HeaderMap) -> Response {
    if !same_origin(&headers) {
        return StatusCode::FORBIDDEN.into_response();
    }
    redirect("/login", Some(clear_cookie(secure(&d.opts, &headers))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                *k,
                HeaderValue::from_str(v).unwrap_or(HeaderValue::from_static("")),
            );
        }
        h
    }

    #[test]
    fn cookie_round_trip_and_flags() {
        let c = session_cookie("a b;c=d%", true, Duration::from_secs(60));
        assert!(c.starts_with("kb_session=a%20b%3Bc%3Dd%25; "));
        assert!(c.contains("; HttpOnly") && c.contains("; SameSite=Strict"));
        assert!(c.contains("; Path=/") && c.contains("; Max-Age=60") && c.ends_with("; Secure"));
        let value = c.split(';').next().unwrap_or("").to_string();
        let h = headers(&[("cookie", &format!("other=1; {value}; x=y"))]);
        assert_eq!(session_key(&h).as_deref(), Some("a b;c=d%"));
        assert!(!session_cookie("k", false, Duration::from_secs(1)).contains("Secure"));
        assert_eq!(session_key(&headers(&[("cookie", "kb_session=")])), None);
        assert_eq!(session_key(&HeaderMap::new()), None);
    }

    #[test]
    fn https_detection() {
        let o = Options::default();
        assert!(!secure(&o, &HeaderMap::new()));
        assert!(secure(&o, &headers(&[("x-forwarded-proto", "https")])));
        assert!(secure(
            &o,
            &headers(&[("forwarded", "for=1.2.3.4;proto=https")])
        ));
        assert!(!secure(&o, &headers(&[("x-forwarded-proto", "http")])));
        let always = Options {
            secure_cookie: SecureCookie::Always,
            ..Options::default()
        };
        assert!(secure(&always, &HeaderMap::new()));
        let never = Options {
            secure_cookie: SecureCookie::Never,
            ..Options::default()
        };
        assert!(!secure(&never, &headers(&[("x-forwarded-proto", "https")])));
    }

    #[test]
    fn query_parsing_keeps_only_known_values() {
        let q = parse_query(Some(
            "window=30d&by=namespace&sort=cpu_cost&q=kube&page=3&x=1",
        ));
        assert_eq!(q.window, "30d");
        assert_eq!(q.by, "namespace");
        assert_eq!(q.sort, "cpu_cost");
        assert_eq!(q.order, "desc");
        assert_eq!(q.q, "kube");
        assert_eq!(q.page, 3);
        let q = parse_query(Some("window=99y&sort=drop&page=-1&by=x"));
        assert_eq!(q.window, "7d");
        assert_eq!(q.sort, "total_cost");
        assert_eq!(q.page, 1);
        assert_eq!(q.by, "resource");
        assert_eq!(parse_query(Some("sort=name")).order, "asc");
    }

    #[test]
    fn redirect_targets() {
        assert_eq!(without_token(Some("token=abc&window=30d")), "?window=30d");
        assert_eq!(without_token(Some("token=abc")), "");
        assert_eq!(safe_next("/clusters/a?window=7d"), "/clusters/a?window=7d");
        for bad in [
            "//evil.example",
            "https://evil.example",
            "/\\evil",
            "evil",
            "",
        ] {
            assert_eq!(safe_next(bad), "/", "{bad}");
        }
    }

    #[test]
    fn origin_check() {
        assert!(same_origin(&headers(&[("host", "127.0.0.1:8080")])));
        assert!(same_origin(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080")
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://evil.example")
        ])));
        assert!(!same_origin(&headers(&[("host", "a"), ("origin", "null")])));
    }
}
