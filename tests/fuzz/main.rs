//! Property-based fuzzing (proptest; `cargo fuzz` needs a nightly toolchain) of the three
//! places where the daemon parses input it does not control:
//!
//! - the configuration loader: arbitrary text and structured-but-wrong TOML (and
//!   environment overrides) never panic, and every error is exactly one line;
//! - the ScaiDrive client's response handling: arbitrary status codes, headers and bodies
//!   (random JSON, truncated JSON, both error shapes, pages that never end) from a fake
//!   server on 127.0.0.1 never panic or hang, and every error is one line without the
//!   token;
//! - the control protocol: arbitrary methods, paths, query strings and bodies sent to a
//!   running daemon's control socket never panic or hang the daemon, and are answered with
//!   2xx, or 4xx with a one-line JSON `error`.
//!
//! `PROPTEST_CASES` sets the number of cases of each property (default: a CI-friendly
//! count, a few seconds each).

#[path = "../support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config as PtConfig, TestRunner};
use scaidrive::config::{Config, Env};
use serde_json::{Value, json};

const TOKEN: &str = "fuzz-canary-token-3b9e";

/// `PROPTEST_CASES` if set, else `default`.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn runner(default_cases: u32) -> TestRunner {
    TestRunner::new(PtConfig {
        cases: cases(default_cases),
        // A failing case is shrunk, but not for minutes.
        max_shrink_iters: 64,
        failure_persistence: None,
        ..PtConfig::default()
    })
}

fn assert_one_line(what: &str, e: &str) -> Result<(), TestCaseError> {
    prop_assert!(!e.is_empty(), "{what}: empty error");
    prop_assert!(
        !e.contains('\n') && !e.contains('\r'),
        "{what}: error is not one line: {e:?}"
    );
    Ok(())
}

// --- shared generators ----------------------------------------------------------------

/// Arbitrary JSON, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        any::<String>().prop_map(Value::String),
        "[a-z_]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(("[a-z_]{1,12}|\\PC{0,8}", inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

// --- (a) configuration ----------------------------------------------------------------

const SECTIONS: &[&str] = &[
    "[daemon]",
    "[remote]",
    "[[mirror]]",
    "[mirror.link]",
    "[[mirror.link]]",
    "[mirror]",
    "[daemon.sub]",
    "[bogus]",
    "[[remote]]",
];

const KEYS: &[&str] = &[
    "state_dir",
    "runtime_dir",
    "log_format",
    "log_level",
    "upload_concurrency",
    "drain_timeout_secs",
    "url",
    "token_file",
    "refresh_token_file",
    "timeout_secs",
    "large_file_threshold",
    "chunk_size",
    "parallel_chunks",
    "allow_insecure_http",
    "name",
    "path",
    "share_id",
    "remote_path",
    "exclude",
    "delete",
    "quiet_period_ms",
    "max_delay_secs",
    "rescan_interval_secs",
    "watch",
    "poll_interval_secs",
    "mass_delete_count",
    "mass_delete_percent",
    "link",
    "type",
    "password_file",
    "expires_in_days",
    "bogus",
    "\"quoted key\"",
    "a.b",
];

/// A TOML value of any type, often the wrong one for its key.
fn toml_value(dir: &'static str) -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        Just("18446744073709551616".to_string()),
        Just("-1".to_string()),
        Just("0".to_string()),
        any::<f64>().prop_map(|f| format!("{f:?}")),
        Just("nan".to_string()),
        Just("inf".to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        any::<String>().prop_map(|s| format!("{s:?}")),
        "\\PC{0,20}".prop_map(|s| format!("'{}'", s.replace(['\'', '\n', '\r'], ""))),
        Just(format!("{dir:?}")),
        Just(format!("\"{dir}/a\\nb\"")),
        Just("\"http://files.example.com\"".to_string()),
        Just("\"http://127.0.0.1:1\"".to_string()),
        Just("\"https://\"".to_string()),
        Just("\"trash\"".to_string()),
        Just("\"json\"".to_string()),
        Just("1979-05-27T07:32:00Z".to_string()),
        Just("[1, \"two\", 3.0]".to_string()),
        Just("[]".to_string()),
        Just("{ a = 1 }".to_string()),
        Just("{}".to_string()),
        Just(String::new()),
    ]
}

fn structured_toml(dir: &'static str) -> impl Strategy<Value = String> {
    let line = prop_oneof![
        3 => (prop::sample::select(KEYS), toml_value(dir)).prop_map(|(k, v)| format!("{k} = {v}")),
        1 => prop::sample::select(SECTIONS).prop_map(str::to_string),
    ];
    prop::collection::vec(line, 0..24).prop_map(|lines| lines.join("\n"))
}

/// A config that loads and is almost right, so validation sees odd values too.
fn nearly_valid_toml(dir: &'static str) -> impl Strategy<Value = String> {
    let url = prop_oneof![
        3 => Just("\"http://127.0.0.1:1\"".to_string()),
        1 => toml_value(dir),
    ];
    (url, toml_value(dir), toml_value(dir), prop::sample::select(KEYS))
        .prop_map(move |(url, path, extra, key)| {
            format!(
                "[remote]\nurl = {url}\n[[mirror]]\npath = {path}\nshare_id = \"s\"\n{key} = {extra}\n"
            )
        })
}

fn check_config_text(dir: &Path, text: &str, env: &Env) -> Result<(), TestCaseError> {
    let file = dir.join("c.toml");
    std::fs::write(&file, text).unwrap();
    match Config::load(Some(&file), env, None) {
        Err(e) => assert_one_line("load", &e.to_string())?,
        Ok(c) => {
            if let Err(e) = c.validate(&dir.join("state")) {
                assert_one_line("validate", &e.to_string())?;
            }
            if let Err(e) = scaidrive::config::load_token(&c, env) {
                assert_one_line("load_token", &e.to_string())?;
            }
        }
    }
    Ok(())
}

/// A temp dir that outlives the strategies which mention its path.
fn leaked_dir() -> (&'static Path, &'static str) {
    let dir: &'static tempfile::TempDir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
    std::fs::create_dir_all(dir.path().join("root")).unwrap();
    let s: &'static str = Box::leak(dir.path().display().to_string().into_boxed_str());
    (dir.path(), s)
}

#[test]
fn config_arbitrary_text_never_panics_and_errors_are_one_line() {
    let (dir, _) = leaked_dir();
    let text = prop_oneof![
        any::<String>(),
        "\\PC{0,200}",
        prop::collection::vec(any::<u8>(), 0..200)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ];
    runner(256)
        .run(&text, |t| check_config_text(dir, &t, &Env::new()))
        .unwrap();
}

#[test]
fn config_structured_but_wrong_toml_never_panics_and_errors_are_one_line() {
    let (dir, dir_s) = leaked_dir();
    let strategy = prop_oneof![structured_toml(dir_s), nearly_valid_toml(dir_s)];
    runner(512)
        .run(&strategy, |t| check_config_text(dir, &t, &Env::new()))
        .unwrap();
}

#[test]
fn config_environment_overrides_never_panic_and_errors_are_one_line() {
    let (dir, dir_s) = leaked_dir();
    let key = prop_oneof![
        prop::sample::select(KEYS).prop_map(|k| k.to_uppercase()),
        "[A-Z_]{1,10}",
    ];
    let var = (
        prop::sample::select(vec!["DAEMON", "REMOTE", "MIRROR", "BOGUS", ""]),
        key,
    )
        .prop_map(|(s, k)| format!("SCAIDRIVE_{s}__{k}"));
    let value = prop_oneof![
        any::<String>(),
        Just(dir_s.to_string()),
        "-?[0-9]{1,25}",
        Just("true".to_string()),
    ];
    let env = prop::collection::vec((var, value.clone()), 0..4);
    let strategy = (env, prop::option::of(value), structured_toml(dir_s));
    runner(256)
        .run(&strategy, |(vars, url, text)| {
            let mut env: Env = vars.into_iter().collect();
            if let Some(u) = url {
                env.insert("SCAIDRIVE_URL".into(), u);
            }
            check_config_text(dir, &text, &env)?;
            match Config::load(None, &env, Some(&dir.join("root"))) {
                Err(e) => assert_one_line("env load", &e.to_string())?,
                Ok(c) => {
                    if let Err(e) = c.validate(&dir.join("state")) {
                        assert_one_line("env validate", &e.to_string())?;
                    }
                }
            }
            Ok(())
        })
        .unwrap();
}

// --- (b) API responses ----------------------------------------------------------------

/// What the fake server answers to every request of one case.
#[derive(Clone, Debug)]
struct Canned {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Announce more bytes than are sent, then close (a response cut off mid-body).
    cut_short: bool,
}

async fn fake_server(canned: Arc<Mutex<Canned>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            let canned = canned.lock().unwrap().clone();
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                // Read the request head and its announced body, then answer.
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                let head_end = loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                    if let Some(i) = req.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                };
                let head = String::from_utf8_lossy(&req[..head_end]).to_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                while req.len() < head_end + len {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let mut out = format!("HTTP/1.1 {} Fuzz\r\n", canned.status).into_bytes();
                for (k, v) in &canned.headers {
                    out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
                }
                let announced = canned.body.len() + if canned.cut_short { 10 } else { 0 };
                out.extend_from_slice(
                    format!("content-length: {announced}\r\nconnection: close\r\n\r\n").as_bytes(),
                );
                out.extend_from_slice(&canned.body);
                let _ = s.write_all(&out).await;
                let _ = s.shutdown().await;
            });
        }
    });
    format!("http://{addr}")
}

fn envelope() -> impl Strategy<Value = Value> {
    (
        prop::option::of(json_value()),
        prop::option::of(json_value()),
        prop::option::of(json_value()),
        prop::option::of(json_value()),
        prop::option::of(json_value()),
        prop::option::of(json_value()),
    )
        .prop_map(|(code, message, details, retry_after, meta, rid)| {
            let mut err = serde_json::Map::new();
            for (k, v) in [
                ("code", code),
                ("message", message),
                ("details", details),
                ("retry_after", retry_after),
            ] {
                if let Some(v) = v {
                    err.insert(k.into(), v);
                }
            }
            let mut out = json!({ "status": "error", "error": err });
            if let Some(m) = meta {
                out["meta"] = m;
            }
            if let Some(r) = rid {
                out["meta"] = json!({ "request_id": r });
            }
            out
        })
}

fn detail() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<String>().prop_map(|s| json!({ "detail": s })),
        prop::collection::vec(
            (
                prop::option::of(json_value()),
                prop::option::of(json_value())
            ),
            0..4
        )
        .prop_map(|items| {
            let items: Vec<Value> = items
                .into_iter()
                .map(|(loc, msg)| json!({ "loc": loc, "msg": msg, "type": "x" }))
                .collect();
            json!({ "detail": items })
        }),
        json_value().prop_map(|v| json!({ "detail": v })),
    ]
}

/// One page of links or shares that never says it is the last.
fn endless_page() -> impl Strategy<Value = Value> {
    (1u64..u64::MAX).prop_map(|total| {
        let link = json!({
            "id": "lnk_1", "token": "t", "url": "http://127.0.0.1:1/share/t",
            "share_id": "shr_1", "resource_type": "folder", "resource_id": "fld_1",
            "link_type": "download", "password_required": false, "is_active": true,
            "download_count": 0, "created_at": "2024-01-01T00:00:00Z"
        });
        let share = json!({ "id": "shr_1", "name": "s", "permission": "owner" });
        json!({ "links": [link], "shares": [share], "total": total })
    })
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        json_value().prop_map(|v| v.to_string().into_bytes()),
        envelope().prop_map(|v| v.to_string().into_bytes()),
        detail().prop_map(|v| v.to_string().into_bytes()),
        endless_page().prop_map(|v| v.to_string().into_bytes()),
        // Truncated JSON of either error shape.
        (
            prop_oneof![envelope(), detail()],
            any::<prop::sample::Index>()
        )
            .prop_map(|(v, i)| {
                let s = v.to_string().into_bytes();
                let cut = i.index(s.len().max(1));
                s[..cut].to_vec()
            }),
        prop::collection::vec(any::<u8>(), 0..300),
        "\\PC{0,300}".prop_map(String::into_bytes),
        Just(Vec::new()),
    ]
}

fn headers() -> impl Strategy<Value = Vec<(String, String)>> {
    let name = prop_oneof![
        prop::sample::select(vec![
            "retry-after",
            "x-request-id",
            "content-type",
            "x-ratelimit-limit",
            "x-ratelimit-remaining",
            "x-ratelimit-reset",
            "www-authenticate",
            "location",
        ])
        .prop_map(str::to_string),
        "x-[a-z]{1,10}",
    ];
    let value = prop_oneof![
        "[ -~]{0,40}",
        "[0-9]{1,25}",
        Just("-5".to_string()),
        Just("1.5e300".to_string()),
        Just("Sun, 06 Nov 1994 08:49:37 GMT".to_string()),
        Just("Fri, 31 Dec 9999 23:59:59 GMT".to_string()),
        Just("application/json".to_string()),
    ];
    prop::collection::vec((name, value), 0..5)
}

fn canned() -> impl Strategy<Value = Canned> {
    let status = prop_oneof![
        3 => Just(200u16),
        3 => prop::sample::select(vec![
            200u16, 201, 204, 206, 301, 304, 400, 401, 403, 404, 409, 410, 413, 422, 429, 500,
            502, 503, 504, 507
        ]),
        1 => 200u16..=999,
    ];
    (status, headers(), body(), prop::bool::weighted(0.1)).prop_map(
        |(status, headers, body, cut_short)| Canned {
            status,
            headers,
            body,
            cut_short,
        },
    )
}

#[derive(Clone, Copy, Debug)]
enum ApiCall {
    Health,
    Me,
    MyShares,
    Share,
    Children,
    File,
    Versions,
    CreateFolder,
    DeleteFile,
    CreateLink,
    Links,
    Link,
    Changes,
    Download,
    UploadSmall,
}

const API_CALLS: &[ApiCall] = &[
    ApiCall::Health,
    ApiCall::Me,
    ApiCall::MyShares,
    ApiCall::Share,
    ApiCall::Children,
    ApiCall::File,
    ApiCall::Versions,
    ApiCall::CreateFolder,
    ApiCall::DeleteFile,
    ApiCall::CreateLink,
    ApiCall::Links,
    ApiCall::Link,
    ApiCall::Changes,
    ApiCall::Download,
    ApiCall::UploadSmall,
];

async fn call_api(
    client: &scaidrive::remote::Client,
    which: ApiCall,
    dir: &Path,
) -> Result<(), scaidrive::remote::Error> {
    use scaidrive::remote::{Destination, NewLink};
    match which {
        ApiCall::Health => client.health().await.map(drop),
        ApiCall::Me => client.me().await.map(drop),
        ApiCall::MyShares => client.my_shares().await.map(drop),
        ApiCall::Share => client.share("shr_1").await.map(drop),
        ApiCall::Children => client.children("shr_1", None).await.map(drop),
        ApiCall::File => client.file("fil_1").await.map(drop),
        ApiCall::Versions => client.file_versions("fil_1").await.map(drop),
        ApiCall::CreateFolder => client.create_folder("shr_1", None, "d").await.map(drop),
        ApiCall::DeleteFile => client.delete_file("fil_1", false).await,
        ApiCall::CreateLink => {
            let link = NewLink {
                resource_type: "folder".into(),
                resource_id: "fld_1".into(),
                share_id: "shr_1".into(),
                link_type: "DOWNLOAD".into(),
                options: Default::default(),
            };
            client.create_link(&link).await.map(drop)
        }
        ApiCall::Links => client.links(None).await.map(drop),
        ApiCall::Link => client.link("lnk_1").await.map(drop),
        ApiCall::Changes => client.changes("shr_1", None, None).await.map(drop),
        ApiCall::Download => client
            .download_to("fil_1", &dir.join("download"))
            .await
            .map(drop),
        ApiCall::UploadSmall => {
            let p = dir.join("small.txt");
            std::fs::write(&p, b"hello").unwrap();
            client
                .upload_file(&Destination::new("shr_1", None, "small.txt"), &p, None)
                .await
                .map(drop)
        }
    }
}

#[test]
fn api_responses_never_panic_or_hang_and_errors_are_one_line() {
    let strategy = (
        canned(),
        prop::sample::select(API_CALLS),
        any::<bool>(), // with a refresh token (a 401 then refreshes against the same answer)
    );
    fuzz_api(256, strategy);
}

/// A server whose pages never end (a `total` it never reaches, the same page whatever
/// the offset) must not keep a listing going forever.
#[test]
fn api_listings_end_even_when_the_server_pages_forever() {
    let strategy = (
        (endless_page(), headers()).prop_map(|(page, headers)| Canned {
            status: 200,
            headers: headers
                .into_iter()
                .filter(|(k, _)| !k.starts_with("x-ratelimit"))
                .collect(),
            body: page.to_string().into_bytes(),
            cut_short: false,
        }),
        prop::sample::select(vec![ApiCall::Links, ApiCall::MyShares]),
        Just(false),
    );
    fuzz_api(8, strategy);
}

fn fuzz_api(default_cases: u32, strategy: impl Strategy<Value = (Canned, ApiCall, bool)>) {
    use scaidrive::remote::{Client, ClientConfig, RetryPolicy, TokenPair};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let canned_now = Arc::new(Mutex::new(Canned {
        status: 200,
        headers: vec![],
        body: vec![],
        cut_short: false,
    }));
    let url = rt.block_on(fake_server(canned_now.clone()));
    let dir = tempfile::tempdir().unwrap();
    runner(default_cases)
        .run(&strategy, |(canned, which, refresh)| {
            *canned_now.lock().unwrap() = canned.clone();
            let tokens = if refresh {
                TokenPair::with_refresh(TOKEN, "fuzz-refresh-canary")
            } else {
                TokenPair::bearer(TOKEN)
            };
            let mut cc = ClientConfig::new(url.clone(), tokens);
            cc.retry = RetryPolicy {
                max_attempts: 1,
                max_rate_limited_retries: 0,
                ..RetryPolicy::default()
            };
            cc.request_timeout = Duration::from_secs(5);
            cc.idle_timeout = Duration::from_secs(5);
            let client = Client::new(cc).unwrap();
            let outcome = rt.block_on(async {
                tokio::time::timeout(
                    Duration::from_secs(10),
                    call_api(&client, which, dir.path()),
                )
                .await
            });
            let result = match outcome {
                Ok(r) => r,
                Err(_) => {
                    return Err(TestCaseError::fail(format!("{which:?} hung on {canned:?}")));
                }
            };
            if let Err(e) = result {
                let text = e.to_string();
                assert_one_line(&format!("{which:?}"), &text)?;
                prop_assert!(
                    !text.contains(TOKEN) && !text.contains("fuzz-refresh-canary"),
                    "a token in the error: {text}"
                );
                prop_assert!(!format!("{e:?}").contains(TOKEN), "a token in Debug");
            }
            Ok(())
        })
        .unwrap();
}

// --- (c) the control protocol ---------------------------------------------------------

const ROUTES: &[&str] = &[
    "/v1/status",
    "/v1/failures",
    "/v1/pause",
    "/v1/resume",
    "/v1/rescan",
    "/v1/retry",
    "/v1/verify",
    "/v1/links",
    "/v1/unlink",
    "/metrics",
    "/",
    "/v1",
    "/v1/",
    "/v2/status",
    "//v1/status",
    "/v1/status/extra",
];

const QUERY_KEYS: &[&str] = &["mirror", "refresh", "allow_deletes", "checksums", "x", ""];

fn uri_text() -> impl Strategy<Value = String> {
    // Printable bytes, anything else (and URI delimiters) percent-encoded.
    prop::collection::vec(any::<u8>(), 0..16).prop_map(|bytes| {
        let mut s = String::new();
        for b in bytes {
            if b.is_ascii_alphanumeric() || b"-._~!$'()*+,;:@".contains(&b) {
                s.push(b as char);
            } else {
                s.push_str(&format!("%{b:02X}"));
            }
        }
        s
    })
}

fn target() -> impl Strategy<Value = String> {
    let path = prop_oneof![
        4 => prop::sample::select(ROUTES).prop_map(str::to_string),
        1 => prop::collection::vec(uri_text(), 0..4).prop_map(|segs| format!("/{}", segs.join("/"))),
        1 => (prop::sample::select(ROUTES), uri_text()).prop_map(|(r, t)| format!("{r}{t}")),
    ];
    let query = prop::option::of(prop::collection::vec(
        (
            prop_oneof![
                prop::sample::select(QUERY_KEYS).prop_map(str::to_string),
                uri_text()
            ],
            prop::option::of(prop_oneof![
                Just("m".to_string()),
                Just("true".to_string()),
                Just("nope".to_string()),
                Just("%zz".to_string()),
                uri_text()
            ]),
        ),
        0..4,
    ));
    (path, query).prop_map(|(p, q)| match q {
        None => p,
        Some(pairs) => {
            let q: Vec<String> = pairs
                .into_iter()
                .map(|(k, v)| match v {
                    Some(v) => format!("{k}={v}"),
                    None => k,
                })
                .collect();
            format!("{p}?{}", q.join("&"))
        }
    })
}

const BODY_KEYS: &[&str] = &[
    "mirror",
    "allow_deletes",
    "checksums",
    "repair",
    "path",
    "type",
    "password",
    "expires_in_days",
    "expires_at",
    "max_downloads",
    "name",
    "regenerate",
    "wait_secs",
    "target",
    "bogus",
];

fn control_body(root: &'static str) -> impl Strategy<Value = Vec<u8>> {
    let field_value = prop_oneof![
        json_value(),
        Just(json!(root)),
        Just(json!(format!("{root}/a.txt"))),
        Just(json!("/etc/passwd")),
        Just(json!("../../etc")),
        Just(json!("m")),
        Just(json!(0)),
        Just(json!(-1)),
        Just(json!(u64::MAX)),
    ];
    let object = prop::collection::vec((prop::sample::select(BODY_KEYS), field_value), 0..5)
        .prop_map(|kv| {
            let mut m = serde_json::Map::new();
            for (k, v) in kv {
                // Keep link requests quick: never wait for a path to reach the remote.
                let v = if k == "wait_secs" { json!(0) } else { v };
                m.insert(k.to_string(), v);
            }
            Value::Object(m).to_string().into_bytes()
        });
    prop_oneof![
        4 => object,
        1 => json_value().prop_map(|v| v.to_string().into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..64),
        1 => Just(b"{\"mirror\":".to_vec()),
        1 => Just(Vec::new()),
    ]
}

#[derive(Debug)]
struct Answer {
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

/// One raw HTTP/1.1 request over the control socket.
async fn raw_request(socket: &Path, request: &[u8]) -> std::io::Result<Answer> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::UnixStream::connect(socket).await?;
    s.write_all(request).await?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await?;
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
        .ok_or_else(|| std::io::Error::other(format!("no response head in {raw:?}")))?;
    let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line: {head}")))?;
    let content_type = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    Ok(Answer {
        status,
        content_type,
        body: raw[head_end..].to_vec(),
    })
}

#[test]
fn control_requests_never_panic_or_hang_and_get_json_errors() {
    use scaidrive::daemon::{self, RunOptions};
    use support::{ConfigFile, MirrorSection, Server};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir: &'static tempfile::TempDir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
    let root: PathBuf = dir.path().join("m");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("a.txt"), b"a").unwrap();
    let root_s: &'static str = Box::leak(root.display().to_string().into_boxed_str());
    let server = rt.block_on(Server::start(dir.path().join("server")));
    let mut mirror = MirrorSection::new("m", &root, &server.share);
    mirror.quiet_period_ms = 50;
    let mut cfg = ConfigFile::new(dir.path(), &server.url).mirror(mirror);
    cfg.log_level = "off";
    let cfg_file = cfg.write();
    let mut env = Env::new();
    env.insert("SCAIDRIVE_TOKEN".into(), support::TOKEN.into());
    let config = Config::load(Some(&cfg_file), &env, None).unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let task = {
        let stop = stop.clone();
        let env = env.clone();
        rt.spawn(async move { daemon::run(config, &env, RunOptions::default(), stop).await })
    };
    let socket = dir.path().join("run/scaidrived.sock");
    rt.block_on(support::eventually(
        "the control socket",
        Duration::from_secs(30),
        Duration::from_millis(50),
        async || socket.exists(),
    ));

    let methods = prop_oneof![
        4 => prop::sample::select(vec!["GET", "POST"]).prop_map(str::to_string),
        1 => prop::sample::select(vec!["PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"])
            .prop_map(str::to_string),
        1 => "[A-Z]{1,8}",
    ];
    let content_type = prop::sample::select(vec![
        Some("application/json"),
        Some("application/json; charset=utf-8"),
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ]);
    let strategy = (methods, target(), control_body(root_s), content_type);
    runner(256)
        .run(&strategy, |(method, target, body, ctype)| {
            let mut req = format!("{method} {target} HTTP/1.1\r\nhost: scaidrived\r\n");
            if let Some(ct) = ctype {
                req.push_str(&format!("content-type: {ct}\r\n"));
            }
            req.push_str(&format!(
                "content-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            ));
            let mut bytes = req.into_bytes();
            bytes.extend_from_slice(&body);
            let answer = rt
                .block_on(async {
                    tokio::time::timeout(Duration::from_secs(20), raw_request(&socket, &bytes))
                        .await
                })
                .map_err(|_| TestCaseError::fail(format!("hung: {method} {target}")))?
                .map_err(|e| TestCaseError::fail(format!("{method} {target}: {e}")))?;
            let what = format!("{method} {target} → {}", answer.status);
            prop_assert!(
                (200..300).contains(&answer.status) || (400..500).contains(&answer.status),
                "{what}: {:?}",
                String::from_utf8_lossy(&answer.body)
            );
            if answer.status >= 400 && method != "HEAD" {
                prop_assert!(
                    answer.content_type.starts_with("application/json"),
                    "{what}: content-type {:?}, body {:?}",
                    answer.content_type,
                    String::from_utf8_lossy(&answer.body)
                );
                let v: Value = serde_json::from_slice(&answer.body).map_err(|e| {
                    TestCaseError::fail(format!(
                        "{what}: not JSON ({e}): {:?}",
                        String::from_utf8_lossy(&answer.body)
                    ))
                })?;
                let error = v["error"].as_str().unwrap_or_default();
                assert_one_line(&what, error)?;
                prop_assert_eq!(v["protocol"].as_u64(), Some(1), "{}", what);
            }
            Ok(())
        })
        .unwrap();

    // Still answering, and nothing it was sent crashed it.
    let status = rt
        .block_on(raw_request(
            &socket,
            b"GET /v1/status HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        ))
        .unwrap();
    assert_eq!(status.status, 200);
    assert!(!task.is_finished(), "the daemon stopped during the fuzzing");
    stop.cancel();
    rt.block_on(async { tokio::time::timeout(Duration::from_secs(30), task).await })
        .expect("the daemon stops")
        .unwrap()
        .expect("the daemon ran without error");
}
