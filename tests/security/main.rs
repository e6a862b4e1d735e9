//! Security properties of the real binaries and the client, against a devserver on
//! 127.0.0.1:0 (hosted by the test process) and a local `openssl s_server`:
//!
//! - the control socket is 0600 in a 0700 directory, and another uid is refused twice
//!   over: by the file modes, and (modes loosened) by the daemon's peer-uid check;
//! - every secret file (token, refresh token, link password, the stored rotated
//!   credentials) with group/world access is refused with one line naming file and fix;
//! - a canary token and a link password never reach the trace logs, `status --json`,
//!   `links --json`, `failures`, `/metrics`, `Debug` output or the state database files;
//! - plain `http://` is refused for a non-loopback server unless `allow_insecure_http`;
//! - TLS certificates are verified, and a `ca_file` makes a private CA trusted.
//!
//! Nothing here connects anywhere but 127.0.0.1 (`localhost` for the TLS test).

#[path = "../support/mod.rs"]
mod support;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use scaidrive::config::{Config, Env, RemoteSection};
use scaidrive::remote::{Client, ClientConfig, ErrorKind, RetryPolicy, Secret, TokenPair};
use serde_json::Value;
use support::{ConfigFile, MirrorSection, Proc, is_root, scaidrivectl, stderr, stdout};

const CANARY_TOKEN: &str = "canary-7f3a9c2e-do-not-log";
const CANARY_PASSWORD: &str = "pw-canary-51d0e8b4-never-stored";
/// The unprivileged uid/gid used as "another user".
const NOBODY: u32 = 65534;

/// The shared daemon harness, its devserver's only token the canary; what only these
/// tests need is added below.
type World = support::DaemonEnv;

impl World {
    async fn new() -> World {
        World::start_with(|sc| sc.tokens = vec![CANARY_TOKEN.to_string()]).await
    }

    /// A config with one mirror `m` of `root`; `remote_extra` goes under `[remote]`,
    /// `mirror_extra` under the `[[mirror]]`.
    fn config(&self, root: &Path, remote_extra: &str, mirror_extra: &str) -> PathBuf {
        let mut m = MirrorSection::new("m", root, &self.share);
        m.remote_path = Some("m");
        m.extra = mirror_extra.into();
        let mut c = ConfigFile::new(self.dir.path(), &self.url).mirror(m);
        c.remote = remote_extra.into();
        c.write()
    }

    /// The daemon with no token from the environment: each test says where it comes from.
    fn daemon(&self) -> Command {
        support::scaidrived_bare()
    }
}

/// The one line of a one-line error output (fails if there are more).
fn one_line(text: &str) -> &str {
    let t = text.trim_end();
    assert_eq!(t.lines().count(), 1, "expected exactly one line: {text:?}");
    t
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn write_secret(p: &Path, body: &str, m: u32) {
    std::fs::write(p, body).unwrap();
    chmod(p, m);
}

fn terminate(child: &mut Child) -> std::process::ExitStatus {
    support::signal(child, "TERM");
    support::wait_exit(child, Duration::from_secs(30))
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

// --- the control socket ---------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_socket_is_private_and_refuses_other_users() {
    let w = World::new().await;
    let root = w.root("root");
    let token = w.path("token");
    write_secret(&token, CANARY_TOKEN, 0o600);
    let cfg = w.config(&root, &format!("token_file = {token:?}"), "");
    let mut child = Proc(w.daemon().arg("--config").arg(&cfg).spawn().unwrap());
    w.wait_socket(&mut child).await;
    assert_eq!(mode(&w.socket()), 0o600, "socket mode");
    assert_eq!(mode(&w.run_dir()), 0o700, "socket directory mode");
    let out = w.ctl(&["status", "--json"]);
    assert!(
        out.status.success(),
        "the owner is served: {}",
        stderr(&out)
    );

    if !is_root() {
        println!(
            "SKIPPED: control_socket_is_private_and_refuses_other_users needs root to run scaidrivectl as uid {NOBODY}"
        );
        return;
    }
    // The temp dir itself is 0700; open it so only the run directory's mode stands in
    // the way of the other user.
    chmod(w.dir.path(), 0o755);
    let as_nobody = || {
        let mut c = w.ctl_cmd(&["status"]);
        c.uid(NOBODY).gid(NOBODY).env_remove("HOME");
        c.output().unwrap()
    };
    let out = as_nobody();
    assert!(
        !out.status.success(),
        "refused by the modes: {}",
        stdout(&out)
    );
    let err = stderr(&out);
    let line = one_line(&err);
    assert!(
        line.contains("permission denied") && line.contains(&w.socket().display().to_string()),
        "{line}"
    );

    // Loosen the modes so the connection itself succeeds: the peer-uid check refuses.
    chmod(&w.run_dir(), 0o755);
    chmod(&w.socket(), 0o666);
    let out = as_nobody();
    assert!(
        !out.status.success(),
        "refused by the peer check: {}",
        stdout(&out)
    );
    let err = stderr(&out);
    let line = one_line(&err);
    assert!(
        line.contains("403") && line.contains("belongs to uid 0"),
        "{line}"
    );
    // Every route is refused, not just status.
    let mut c = w.ctl_cmd(&["pause", "m"]);
    c.uid(NOBODY).gid(NOBODY);
    let out = c.output().unwrap();
    assert!(!out.status.success() && stderr(&out).contains("403"));
    let status: Value = serde_json::from_slice(&w.ctl(&["status", "--json"]).stdout).unwrap();
    assert_ne!(
        status["mirrors"][0]["state"], "paused",
        "the refused pause did nothing"
    );
    assert!(terminate(&mut child).success());
}

// --- secret files ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_files_readable_by_others_are_refused() {
    let w = World::new().await;
    let root = w.root("root");
    std::fs::write(root.join("a.txt"), b"a").unwrap();
    let token = w.path("token");
    let refresh = w.path("refresh");
    let password = w.path("link-password");
    write_secret(&token, CANARY_TOKEN, 0o600);
    write_secret(&refresh, "refresh-canary", 0o600);
    write_secret(&password, CANARY_PASSWORD, 0o600);
    let remote = format!("token_file = {token:?}\nrefresh_token_file = {refresh:?}");
    let link = format!("[mirror.link]\npassword_file = {password:?}");

    // Each configured secret file, made group- or world-readable in turn.
    for (what, file) in [
        ("token file", &token),
        ("refresh token file", &refresh),
        ("link password file", &password),
    ] {
        for loose in [0o644, 0o640, 0o604] {
            chmod(file, loose);
            let cfg = w.config(&root, &remote, &link);
            let out = w
                .daemon()
                .arg("--config")
                .arg(&cfg)
                .arg("--once")
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(78), "{what} {loose:o}");
            let err = stderr(&out);
            let line = one_line(&err);
            assert!(
                line.contains(what)
                    && line.contains(&file.display().to_string())
                    && line.contains(&format!("chmod 600 {}", file.display())),
                "{what} {loose:o}: {line}"
            );
            assert!(
                !line.contains(CANARY_TOKEN) && !line.contains(CANARY_PASSWORD),
                "{line}"
            );
            // `scaidrivectl config check` says the same.
            let out = scaidrivectl()
                .args(["config", "check"])
                .arg(&cfg)
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(78));
            assert!(one_line(&stderr(&out)).contains("chmod 600"));
        }
        chmod(file, 0o600);
    }

    // A missing secret file is named too.
    let cfg = w.config(
        &root,
        &format!("token_file = {:?}", w.path("no-such-token")),
        "",
    );
    let out = w
        .daemon()
        .arg("--config")
        .arg(&cfg)
        .arg("--once")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(one_line(&stderr(&out)).contains("no-such-token"));

    // The rotated credentials the daemon keeps in the state directory.
    let cfg = w.config(&root, &format!("token_file = {token:?}"), "");
    let state = w.path("state");
    std::fs::create_dir_all(&state).unwrap();
    let stored = state.join("credentials.json");
    write_secret(
        &stored,
        r#"{"access_token":"stored-canary","refresh_token":null,"derived_from":null}"#,
        0o644,
    );
    let out = w
        .daemon()
        .arg("--config")
        .arg(&cfg)
        .arg("--once")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    let err = stderr(&out);
    let line = one_line(&err);
    assert!(
        line.contains(&stored.display().to_string())
            && line.contains(&format!("chmod 600 {}", stored.display()))
            && !line.contains("stored-canary"),
        "{line}"
    );

    // Fixed modes: the same configuration runs.
    chmod(&stored, 0o600);
    let out = w
        .daemon()
        .arg("--config")
        .arg(&cfg)
        .arg("--once")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

// --- secrets never leak ---------------------------------------------------------------

/// Supersedes tests/daemon's former token test: a canary token and a link password,
/// trace logging, a rejected item (so errors are logged), a password-protected link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_and_link_password_never_reach_logs_output_debug_or_state() {
    let w = World::new().await;
    let root = w.root("root");
    std::fs::write(root.join("f.txt"), b"data").unwrap();
    std::fs::write(root.join("bad name "), b"rejected, so errors are logged").unwrap();
    let token = w.path("token");
    write_secret(&token, CANARY_TOKEN, 0o600);
    let cfg = w.config(&root, &format!("token_file = {token:?}"), "");
    let log_path = w.path("daemon.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = Proc(
        w.daemon()
            .arg("--config")
            .arg(&cfg)
            .env("RUST_LOG", "trace")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    w.wait_socket(&mut child).await;
    // 4 = idle with a failed item (the rejected name).
    let out = w.ctl(&["wait", "--timeout", "60"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));

    // A password-protected link, the password given on standard input.
    let mut link = w
        .ctl_cmd(&["link", "--json", "--password-stdin"])
        .arg(&root)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(link.stdin.take().unwrap(), "{CANARY_PASSWORD}").unwrap();
    let link_out = link.wait_with_output().unwrap();
    assert!(link_out.status.success(), "{}", stderr(&link_out));
    let created: Value = serde_json::from_slice(&link_out.stdout).unwrap();
    let url = created["link"]["url"].as_str().unwrap().to_string();
    // The password really protects the link (so it did reach the server).
    let refused = w.http.get(&url).send().await.unwrap();
    assert_eq!(refused.status().as_u16(), 401);
    let opened = w
        .http
        .get(&url)
        .header("X-Link-Password", CANARY_PASSWORD)
        .send()
        .await
        .unwrap();
    assert_eq!(opened.status().as_u16(), 200);

    let mut outputs = vec![
        ("link --json", link_out),
        ("status --json", w.ctl(&["status", "--json"])),
        ("status", w.ctl(&["status"])),
        ("links --json", w.ctl(&["links", "--json"])),
        ("links", w.ctl(&["links"])),
        ("failures", w.ctl(&["failures"])),
        ("metrics", w.ctl(&["metrics"])),
    ];
    outputs.push(("links --json m", w.ctl(&["links", "--json", "m"])));
    for (what, o) in &outputs {
        let text = format!("{}{}", stdout(o), stderr(o));
        assert!(!text.is_empty(), "{what} printed nothing");
        assert!(!text.contains(CANARY_TOKEN), "token in `{what}`: {text}");
        assert!(
            !text.contains(CANARY_PASSWORD),
            "password in `{what}`: {text}"
        );
    }
    let metrics = stdout(&outputs[6].1);
    assert!(
        metrics.contains("scaidrive_entries{mirror=\"m\"}"),
        "{metrics}"
    );

    // The state files while the daemon runs (the WAL and shm exist now) and after.
    let scan_state = |when: &str| {
        let mut seen = Vec::new();
        for entry in std::fs::read_dir(w.path("state")).unwrap() {
            let p = entry.unwrap().path();
            let bytes = std::fs::read(&p).unwrap();
            seen.push(p.file_name().unwrap().to_string_lossy().into_owned());
            assert!(!contains(&bytes, CANARY_TOKEN), "token in {p:?} ({when})");
            assert!(
                !contains(&bytes, CANARY_PASSWORD),
                "password in {p:?} ({when})"
            );
        }
        seen
    };
    let seen = scan_state("running");
    for f in ["state.db", "state.db-wal", "state.db-shm"] {
        assert!(seen.iter().any(|s| s == f), "{f} not in {seen:?}");
    }
    assert!(terminate(&mut child).success());
    scan_state("stopped");

    let logged = std::fs::read(&log_path).unwrap();
    assert!(logged.len() > 1000, "trace logging produced output");
    assert!(
        contains(&logged, "bad name"),
        "the failure was logged (so error paths are covered)"
    );
    assert!(
        !contains(&logged, CANARY_TOKEN),
        "the token reached the log"
    );
    assert!(
        !contains(&logged, CANARY_PASSWORD),
        "the link password reached the log"
    );
}

#[test]
fn debug_output_hides_tokens_and_passwords() {
    let pair = TokenPair::with_refresh(CANARY_TOKEN, "refresh-canary-9c1");
    let mut cc = ClientConfig::new("https://127.0.0.1:1", pair.clone());
    cc.ca_file = Some(PathBuf::from("/nonexistent/ca.pem"));
    let client = Client::new(ClientConfig::new("http://127.0.0.1:1", pair.clone())).unwrap();
    let secret = Secret::new(CANARY_PASSWORD);
    let options = scaidrive::remote::LinkOptions {
        password: Some(Secret::new(CANARY_PASSWORD)),
        ..Default::default()
    };
    let request = scaidrive::links::LinkRequest {
        link_type: "download".into(),
        password: Some(Secret::new(CANARY_PASSWORD)),
        expires_in_days: None,
        expires_at: None,
        max_downloads: None,
        custom_name: None,
        regenerate: false,
    };
    let body: scaidrive::control::links::LinkBody = serde_json::from_value(serde_json::json!({
        "path": "/x", "password": CANARY_PASSWORD
    }))
    .unwrap();
    let shown = [
        format!("{pair:?}"),
        format!("{cc:?}"),
        format!("{client:?}"),
        format!("{secret:?}"),
        format!("{options:?}"),
        format!("{request:?}"),
        format!("{body:?}"),
        format!("{:?}", client.tokens()),
    ];
    for s in &shown {
        assert!(
            !s.contains(CANARY_TOKEN) && !s.contains("refresh-canary-9c1"),
            "{s}"
        );
        assert!(!s.contains(CANARY_PASSWORD), "{s}");
    }
    assert!(shown[0].contains("***"), "{}", shown[0]);
    assert!(shown[6].contains("***"), "{}", shown[6]);
}

// --- plain http -----------------------------------------------------------------------

#[test]
fn plain_http_to_a_non_loopback_host_needs_allow_insecure_http() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let state = dir.path().join("state");
    let config = |url: &str, allow: bool| -> PathBuf {
        let p = dir.path().join("c.toml");
        std::fs::write(
            &p,
            format!(
                "[daemon]\nstate_dir = {state:?}\n[remote]\nurl = {url:?}\nallow_insecure_http = {allow}\n\
                 [[mirror]]\npath = {root:?}\nshare_id = \"shr_1\"\n"
            ),
        )
        .unwrap();
        p
    };
    let validate = |url: &str, allow: bool| -> Result<(), String> {
        let c = Config::load(Some(&config(url, allow)), &Env::new(), None).unwrap();
        c.validate(&state).map_err(|e| e.to_string())
    };
    for url in [
        "http://files.example.com",
        "http://files.example.com:8080/base",
        "http://10.0.0.5:9000",
        "http://0.0.0.0:80",
        "http://127.example.com",
        "http://localhost.example.com",
        "http://[2001:db8::1]:443",
        "HTTP://Files.Example.com",
    ] {
        let e = validate(url, false).unwrap_err();
        assert!(
            e.contains("allow_insecure_http") && e.contains("http://") && !e.contains('\n'),
            "{url}: {e}"
        );
        assert!(
            e.contains(url) || e.contains(&url.to_lowercase()),
            "names the URL: {e}"
        );
        validate(url, true).unwrap_or_else(|e| panic!("{url} with the option: {e}"));
    }
    for url in [
        "http://localhost:8080",
        "http://LOCALHOST",
        "http://127.0.0.1:1",
        "http://127.200.3.4",
        "http://[::1]:9000",
        "https://files.example.com",
        "https://10.0.0.5",
    ] {
        validate(url, false).unwrap_or_else(|e| panic!("{url}: {e}"));
    }
    for (url, needle) in [
        ("ftp://files.example.com", "https://"),
        ("files.example.com", "not a valid URL"),
        ("http://", "not a valid URL"),
    ] {
        let e = validate(url, true).unwrap_err();
        assert!(e.contains(needle) && !e.contains('\n'), "{url}: {e}");
    }

    // The binaries refuse it before connecting anywhere: exit 78, one line.
    let p = config("http://files.example.com", false);
    let out = scaidrivectl()
        .args(["config", "check"])
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let err = stderr(&out);
    let line = one_line(&err);
    assert!(
        line.contains("http://files.example.com") && line.contains("allow_insecure_http"),
        "{line}"
    );
    let out = support::scaidrived_bare()
        .arg("--config")
        .arg(&p)
        .arg("--once")
        .env("SCAIDRIVE_TOKEN", "t")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(one_line(&stderr(&out)).contains("allow_insecure_http"));
    // The field has a default and is part of the typed config.
    assert!(!RemoteSection::default().allow_insecure_http);
}

// --- TLS ------------------------------------------------------------------------------

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl CLI is installed (.ci/run installs it)");
    assert!(out.status.success(), "openssl {args:?}: {}", stderr(&out));
}

/// A private CA and a `localhost` certificate it signed: (ca.pem, leaf.pem, leaf.key).
fn make_certs(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
    let mut ca = vec!["req", "-x509", "-nodes", "-days", "2"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-subj",
        "/CN=scaidrive test CA",
    ]);
    openssl(dir, &ca);
    let mut csr = vec!["req", "-nodes"];
    csr.extend(ec);
    csr.extend([
        "-keyout",
        "leaf.key",
        "-out",
        "leaf.csr",
        "-subj",
        "/CN=localhost",
    ]);
    openssl(dir, &csr);
    std::fs::write(
        dir.join("leaf.ext"),
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
         extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "leaf.ext",
            "-out",
            "leaf.pem",
        ],
    );
    (
        dir.join("ca.pem"),
        dir.join("leaf.pem"),
        dir.join("leaf.key"),
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn tls_client(url: &str, ca_file: Option<&Path>) -> Result<Client, scaidrive::remote::Error> {
    let mut cc = ClientConfig::new(url, TokenPair::bearer(CANARY_TOKEN));
    cc.retry = RetryPolicy {
        max_attempts: 1,
        ..RetryPolicy::default()
    };
    cc.connect_timeout = Duration::from_secs(5);
    cc.request_timeout = Duration::from_secs(10);
    cc.ca_file = ca_file.map(Path::to_path_buf);
    Client::new(cc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_certificates_are_verified_and_ca_file_trusts_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = make_certs(dir.path());
    let port = free_port();
    let mut server = Proc(
        Command::new("openssl")
            .args(["s_server", "-quiet", "-www", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(&cert)
            .arg("-key")
            .arg(&key)
            .stdin(Stdio::piped()) // kept open: s_server stops at end of input
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(s)) = server.try_wait() {
            panic!("openssl s_server exited: {s}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "s_server never listened"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let url = format!("https://localhost:{port}");

    // Unknown issuer: refused, and the error says why in one line.
    let e = tls_client(&url, None).unwrap().health().await.unwrap_err();
    let text = e.to_string();
    assert_eq!(e.kind(), ErrorKind::Transport, "{text}");
    assert!(
        text.contains("TLS certificate could not be verified") && text.contains("/api/v1/health"),
        "{text}"
    );
    assert!(
        !text.contains('\n') && !text.contains(CANARY_TOKEN),
        "{text}"
    );
    assert!(!e.is_transient(), "retrying cannot fix a certificate");
    assert_eq!(e.code(), Some("TLS_CERTIFICATE"));

    // The same server with its CA in ca_file: the TLS handshake succeeds, and what is
    // left is that s_server's status page is not the health JSON.
    let e = tls_client(&url, Some(&ca))
        .unwrap()
        .health()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Decode, "{e}");
    assert!(!e.to_string().contains("certificate"), "{e}");

    // A ca_file that is not a certificate, or missing: one line naming the file.
    for (name, body) in [
        ("junk.pem", Some("not a certificate\n")),
        ("missing.pem", None),
    ] {
        let p = dir.path().join(name);
        if let Some(b) = body {
            std::fs::write(&p, b).unwrap();
        }
        let e = tls_client(&url, Some(&p)).unwrap_err().to_string();
        assert!(e.contains(name) && !e.contains('\n'), "{e}");
    }
}
