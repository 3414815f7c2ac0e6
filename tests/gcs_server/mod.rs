//! A minimal in-memory server for the slice of Google Cloud Storage's XML API that object_store's
//! GCS client uses (no installable emulator implements it): object put (with the
//! `x-goog-if-generation-match: 0` create-only precondition), get/head, delete, V2-style listing,
//! and XML multipart uploads (initiate, part, complete, abort). Only for tests on 127.0.0.1;
//! no authentication (the client runs with `disable_oauth`).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

struct Object {
    data: Bytes,
    generation: u64,
    modified: DateTime<Utc>,
}

#[derive(Default)]
struct Bucket {
    objects: BTreeMap<String, Object>,
    uploads: HashMap<String, (String, BTreeMap<u32, Bytes>)>,
    generation: u64,
}

type Shared = Arc<Mutex<Bucket>>;

/// Start the server on a free loopback port; returns its base URL (`http://127.0.0.1:PORT`).
pub async fn start() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .fallback(handle)
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(Shared::default());
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

fn xml(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/xml")], body).into_response()
}

fn not_found() -> Response {
    xml(
        StatusCode::NOT_FOUND,
        "<Error><Code>NoSuchKey</Code></Error>".into(),
    )
}

async fn handle(
    State(st): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // /<bucket>/<key>, each percent-encoded; one bucket is all the tests need.
    let path = uri.path().trim_start_matches('/');
    let key = percent_decode(path.split_once('/').map_or("", |(_, k)| k));
    let query: HashMap<String, String> =
        url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let mut b = st.lock().unwrap();
    match method {
        Method::GET if key.is_empty() => list(&b, query.get("prefix").map_or("", |p| p)),
        Method::POST if query.contains_key("uploads") => {
            let id = format!("u{}", b.uploads.len() + 1);
            b.uploads.insert(id.clone(), (key, BTreeMap::new()));
            xml(
                StatusCode::OK,
                format!(
                    "<InitiateMultipartUploadResult><UploadId>{id}</UploadId>\
                     </InitiateMultipartUploadResult>"
                ),
            )
        }
        Method::PUT if query.contains_key("uploadId") => {
            let n: u32 = query["partNumber"].parse().unwrap();
            match b.uploads.get_mut(&query["uploadId"]) {
                Some((_, parts)) => {
                    parts.insert(n, body);
                    (StatusCode::OK, [(header::ETAG, format!("\"p{n}\""))]).into_response()
                }
                None => not_found(),
            }
        }
        Method::POST if query.contains_key("uploadId") => {
            let Some((k, parts)) = b.uploads.remove(&query["uploadId"]) else {
                return not_found();
            };
            let mut data = Vec::new();
            parts.values().for_each(|p| data.extend_from_slice(p));
            let g = put(&mut b, k, Bytes::from(data));
            let mut r = xml(
                StatusCode::OK,
                format!(
                    "<CompleteMultipartUploadResult><ETag>\"{g}\"</ETag>\
                     </CompleteMultipartUploadResult>"
                ),
            );
            r.headers_mut()
                .insert("x-goog-generation", g.to_string().parse().unwrap());
            r
        }
        Method::DELETE if query.contains_key("uploadId") => {
            b.uploads.remove(&query["uploadId"]);
            StatusCode::NO_CONTENT.into_response()
        }
        Method::PUT => {
            let create_only = headers
                .get("x-goog-if-generation-match")
                .is_some_and(|v| v == "0");
            if create_only && b.objects.contains_key(&key) {
                return xml(
                    StatusCode::PRECONDITION_FAILED,
                    "<Error><Code>PreconditionFailed</Code></Error>".into(),
                );
            }
            let g = put(&mut b, key, body);
            (
                StatusCode::OK,
                [
                    (header::ETAG, format!("\"{g}\"")),
                    (
                        header::HeaderName::from_static("x-goog-generation"),
                        g.to_string(),
                    ),
                ],
            )
                .into_response()
        }
        Method::GET | Method::HEAD => match b.objects.get(&key) {
            Some(o) => {
                let headers = [
                    (header::ETAG, format!("\"{}\"", o.generation)),
                    (
                        header::LAST_MODIFIED,
                        o.modified.format("%a, %d %b %Y %H:%M:%S GMT").to_string(),
                    ),
                    (
                        header::HeaderName::from_static("x-goog-generation"),
                        o.generation.to_string(),
                    ),
                    (header::CONTENT_LENGTH, o.data.len().to_string()),
                ];
                if method == Method::HEAD {
                    (StatusCode::OK, headers).into_response()
                } else {
                    (StatusCode::OK, headers, o.data.clone()).into_response()
                }
            }
            None => not_found(),
        },
        Method::DELETE => match b.objects.remove(&key) {
            Some(_) => StatusCode::NO_CONTENT.into_response(),
            None => not_found(),
        },
        _ => StatusCode::METHOD_NOT_ALLOWED.into_response(),
    }
}

fn put(b: &mut Bucket, key: String, data: Bytes) -> u64 {
    b.generation += 1;
    let generation = b.generation;
    b.objects.insert(
        key,
        Object {
            data,
            generation,
            modified: Utc::now(),
        },
    );
    generation
}

fn list(b: &Bucket, prefix: &str) -> Response {
    let mut out = String::from("<ListBucketResult>");
    for (k, o) in b.objects.range(prefix.to_owned()..) {
        if !k.starts_with(prefix) {
            break;
        }
        out.push_str(&format!(
            "<Contents><Key>{k}</Key><Size>{}</Size><LastModified>{}</LastModified>\
             <ETag>\"{}\"</ETag></Contents>",
            o.data.len(),
            o.modified
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            o.generation
        ));
    }
    out.push_str("</ListBucketResult>");
    xml(StatusCode::OK, out)
}

/// `%2F` -> `/` and the like (object_store encodes every key character outside [A-Za-z0-9_]).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).expect("keys are UTF-8")
}
