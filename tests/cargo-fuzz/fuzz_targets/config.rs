//! Config parsing: arbitrary bytes as a TOML file through the daemon's real loader
//! (`scaidrive::config::Config::load`), then `validate`, the state/runtime directory
//! lookups and the credential checks, exactly as `scaidrived` and `scaidrivectl config
//! check` run them.
//!
//! Why: the config file is the first thing an operator writes and gets wrong; the promise
//! (README, `ConfigError`'s doc) is a one-line error naming the problem, never a panic or a
//! multi-line dump. What is checked:
//!
//! - nothing panics, whatever the bytes (not UTF-8, broken TOML, wrong types, huge numbers);
//! - every error is non-empty and contains no control character at all (`ConfigError`
//!   escapes them, so a newline in a key or a path can never split the line);
//! - a config that `validate` accepts really has what validation promises: a parseable
//!   http(s) URL with a host (plain http only to loopback or with `allow_insecure_http`),
//!   at least one mirror, unique names, existing directory roots that do not overlap each
//!   other or the state directory, a power-of-two `chunk_size` of at least 64 KiB,
//!   `mass_delete_percent` ≤ 100, and no `.`/`..`/padded segment in `remote_path`;
//! - loading is deterministic (the same file twice gives the same value).
//!
//! Input format, so that seeds stay readable: the file's text, in which `@DIR@` is replaced
//! by a scratch directory holding `root/`, `root2/`, `file` and `state/` (so roots, token
//! files and overlaps can be real), optionally followed by a line `#--env--` and
//! `KEY=VALUE` lines that become the environment the loader sees (`SCAIDRIVE_URL`,
//! `SCAIDRIVE_REMOTE__TIMEOUT_SECS`, ...). Secret files are only read when they are small
//! regular files, so a fuzzed `token_file = "/dev/zero"` cannot hang a run.

#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use scaidrive::config::{Config, Env};

struct Scratch {
    dir: PathBuf,
    file: PathBuf,
}

fn scratch() -> &'static Scratch {
    static S: OnceLock<Scratch> = OnceLock::new();
    S.get_or_init(|| {
        let dir =
            std::env::temp_dir().join(format!("scaidrive-fuzz-config-{}", std::process::id()));
        for sub in ["root", "root2", "root/inner", "state"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        std::fs::write(dir.join("file"), b"not a directory").unwrap();
        let token = dir.join("token");
        std::fs::write(&token, b"fuzz-token\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
        let file = dir.join("c.toml");
        Scratch { dir, file }
    })
}

fn assert_one_line(what: &str, e: &dyn std::fmt::Display) {
    let s = e.to_string();
    assert!(!s.is_empty(), "{what}: empty error");
    assert!(
        !s.chars().any(char::is_control),
        "{what}: error is not one clean line: {s:?}"
    );
}

/// Whether reading `p` as a secret is safe in a fuzz loop (no device, pipe or huge file).
fn small_regular_file(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.len() < 64 * 1024)
}

fn split_env(data: &[u8]) -> (&[u8], Env) {
    const MARK: &[u8] = b"\n#--env--\n";
    let Some(i) = data.windows(MARK.len()).position(|w| w == MARK) else {
        return (data, Env::new());
    };
    let mut env = Env::new();
    for line in String::from_utf8_lossy(&data[i + MARK.len()..]).lines() {
        if let Some((k, v)) = line.split_once('=') {
            env.insert(k.to_string(), v.to_string());
        }
    }
    (&data[..i], env)
}

fn replace_dir(text: &[u8], dir: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        if text[i..].starts_with(b"@DIR@") {
            out.extend_from_slice(dir);
            i += 5;
        } else {
            out.push(text[i]);
            i += 1;
        }
    }
    out
}

/// Loopback by address (or `localhost`): the only hosts plain http:// may go to.
fn is_loopback(url: &reqwest::Url) -> bool {
    let Some(h) = url.host_str() else {
        return false;
    };
    let bare = h.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => h.eq_ignore_ascii_case("localhost"),
    }
}

/// What `validate` promises about a config it accepted.
fn check_accepted(c: &Config, state: &Path) {
    let url = c.remote.url.as_deref().expect("validated config has a url");
    let parsed = reqwest::Url::parse(url.trim()).expect("validated url parses");
    assert!(
        parsed.host_str().is_some(),
        "validated url {url:?} has no host"
    );
    match parsed.scheme() {
        "https" => {}
        "http" => assert!(
            c.remote.allow_insecure_http || is_loopback(&parsed),
            "plain http to a non-loopback host accepted: {url:?}"
        ),
        other => panic!("scheme {other:?} accepted: {url:?}"),
    }
    assert!(!c.mirrors.is_empty(), "validated config has no mirror");
    // A pinned chunk size, and the largest one chosen per file, are powers of two of at
    // least 64 KiB.
    for cs in c.remote.chunk_size.into_iter().chain([c.remote.max_chunk_size]) {
        assert!(
            cs >= 65536 && cs.is_power_of_two(),
            "chunk size {cs} accepted"
        );
    }
    assert!(c.daemon.upload_concurrency >= 1 && c.remote.parallel_chunks >= 1);
    assert!(c.remote.quota_recheck_secs >= 1);
    let state = std::fs::canonicalize(state).unwrap_or_else(|_| state.to_path_buf());
    let mut names = std::collections::HashSet::new();
    let mut roots: Vec<PathBuf> = Vec::new();
    for m in &c.mirrors {
        assert!(
            names.insert(m.display_name()),
            "duplicate mirror name accepted"
        );
        assert!(!m.share_id.trim().is_empty(), "empty share_id accepted");
        assert!(m.mass_delete_percent <= 100);
        assert!(
            !m.remote_path
                .split('/')
                .any(|s| s == "." || s == ".." || s.trim() != s),
            "remote_path {:?} accepted",
            m.remote_path
        );
        let root = std::fs::canonicalize(&m.path).expect("validated root resolves");
        assert!(root.is_dir(), "validated root is not a directory");
        assert!(
            !root.starts_with(&state) && !state.starts_with(&root),
            "root {root:?} and state {state:?} overlap but were accepted"
        );
        for r in &roots {
            assert!(
                !r.starts_with(&root) && !root.starts_with(r),
                "overlapping roots {r:?} and {root:?} accepted"
            );
        }
        roots.push(root);
    }
}

fuzz_target!(|data: &[u8]| {
    let s = scratch();
    let (text, env) = split_env(data);
    // Only environment sources the loop can read safely.
    if let Some(d) = env.get("CREDENTIALS_DIRECTORY")
        && Path::new(d).join("token").exists()
        && !small_regular_file(&Path::new(d).join("token"))
    {
        return;
    }
    let text = replace_dir(text, s.dir.as_os_str().as_encoded_bytes());
    std::fs::write(&s.file, &text).unwrap();
    let state = s.dir.join("state");
    let loaded = Config::load(Some(&s.file), &env, None);
    let cfg = match loaded {
        Err(e) => {
            assert_one_line("load", &e);
            return;
        }
        Ok(c) => c,
    };
    let again = Config::load(Some(&s.file), &env, None).expect("a second load of the same file");
    assert_eq!(cfg, again, "loading is not deterministic");

    for r in [cfg.state_dir(&env), cfg.runtime_dir(&env)] {
        if let Err(e) = r {
            assert_one_line("state/runtime dir", &e);
        }
    }
    match cfg.validate(&state) {
        Err(e) => assert_one_line("validate", &e),
        Ok(()) => check_accepted(&cfg, &state),
    }
    let secrets_safe = [&cfg.remote.token_file, &cfg.remote.refresh_token_file]
        .into_iter()
        .flatten()
        .all(|p| small_regular_file(p));
    if secrets_safe && let Err(e) = scaidrive::config::check_credentials(&cfg, &env) {
        assert_one_line("check_credentials", &e);
    }
    // The folder form (`--folder` with SCAIDRIVE_SHARE_ID) goes through the same loader.
    match Config::load(None, &env, Some(&s.dir.join("root"))) {
        Err(e) => assert_one_line("env load", &e),
        Ok(c) => {
            if let Err(e) = c.validate(&state) {
                assert_one_line("env validate", &e);
            }
        }
    }
});
