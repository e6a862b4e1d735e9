//! `scaidrivectl link`, `links` and `unlink`: sharing links through the daemon (which talks
//! to the server and never stores passwords). Split from `ctl.rs`, which registers them.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::ctl::print_json;
use crate::control::client::{self, CtlError};
use crate::control::protocol::{
    LinkBody, LinkResponse, LinksQuery, LinksResponse, Outcome, UnlinkBody, UnlinkResponse, route,
};
use crate::relpath::Escaped;
use crate::remote::Secret;

/// `scaidrivectl link`.
///
/// Asking again with the same options prints the same URL while the link is active; an
/// expired, revoked or exhausted link is replaced by a new one. Without a password option,
/// an existing password-protected link with the same other options is reused. The daemon
/// never stores passwords, so regenerating a protected link needs the password again (or
/// `--generate-password`).
#[derive(clap::Args, Debug)]
pub struct LinkArgs {
    /// A file or folder inside a mirror root; the root itself links the whole mirror.
    pub path: PathBuf,
    /// What recipients may do.
    #[arg(long = "type", default_value = "download", value_parser = ["view", "download", "upload"])]
    pub link_type: String,
    /// Protect the link with the password in this file (its first line).
    #[arg(long, group = "password")]
    pub password_file: Option<PathBuf>,
    /// Protect the link with a password read from standard input (its first line).
    #[arg(long, group = "password")]
    pub password_stdin: bool,
    /// Protect the link with a new random password, printed once.
    #[arg(long, group = "password")]
    pub generate_password: bool,
    /// The link expires this many days after it is created.
    #[arg(long, conflicts_with = "expires_at")]
    pub expires_in_days: Option<u32>,
    /// The link expires at this RFC 3339 time (e.g. 2030-01-31T12:00:00Z).
    #[arg(long)]
    pub expires_at: Option<String>,
    /// The link stops working after this many downloads.
    #[arg(long)]
    pub max_downloads: Option<u64>,
    /// Display name shown to recipients.
    #[arg(long)]
    pub name: Option<String>,
    /// Make a new URL (and revoke the old one) even if the link is still active.
    #[arg(long)]
    pub regenerate: bool,
    /// Seconds to wait for a new path to reach the remote.
    #[arg(long, default_value_t = 60)]
    pub wait: u64,
    #[arg(long)]
    pub json: bool,
}

fn absolute(p: &Path) -> Result<PathBuf, CtlError> {
    std::path::absolute(p).map_err(|e| CtlError::Io(p.to_path_buf(), e.to_string()))
}

fn link_password(a: &LinkArgs) -> Result<Option<String>, CtlError> {
    if let Some(f) = &a.password_file {
        return crate::config::read_secret_file(f, false)
            .map(Some)
            .map_err(|e| CtlError::Io(f.clone(), e.to_string()));
    }
    if a.password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map_err(|e| CtlError::Io(PathBuf::from("stdin"), e.to_string()))?;
        let pw = line.trim_end_matches(['\n', '\r']).to_string();
        if pw.is_empty() {
            return Err(CtlError::Io(
                PathBuf::from("stdin"),
                "no password on standard input".into(),
            ));
        }
        return Ok(Some(pw));
    }
    Ok(a.generate_password.then(crate::links::generate_password))
}

pub(super) async fn link(socket: &Path, a: &LinkArgs) -> Result<u8, CtlError> {
    let path = absolute(&a.path)?;
    let password = link_password(a)?;
    let mut body = LinkBody {
        path: path.clone(),
        link_type: Some(a.link_type.clone()),
        password: password.clone().map(Secret::new),
        expires_in_days: a.expires_in_days,
        expires_at: a.expires_at.clone(),
        max_downloads: a.max_downloads,
        name: a.name.clone(),
        regenerate: a.regenerate,
        wait_secs: Some(0),
    };
    // Ask without waiting first, so the user hears why the command pauses.
    let v: LinkResponse = match client::post(socket, route::LINKS, &body).await {
        Err(CtlError::Daemon { status: 409, .. }) if a.wait > 0 => {
            eprintln!(
                "{} is not on the remote yet; waiting up to {} s for the mirror to upload it...",
                path.display(),
                a.wait
            );
            body.wait_secs = Some(a.wait);
            client::post(socket, route::LINKS, &body).await?
        }
        other => other?,
    };
    let l = &v.link;
    // A reused link keeps the password it was created with; a generated one went unused.
    let shown_password = password.filter(|_| a.generate_password && v.outcome != Outcome::Reused);
    if a.json {
        /// `link --json`: the daemon's answer plus the generated password, if shown.
        #[derive(Serialize)]
        struct Shown<'a> {
            #[serde(flatten)]
            answer: &'a LinkResponse,
            password: Option<String>,
        }
        print_json(&Shown {
            answer: &v,
            password: shown_password,
        });
        return Ok(0);
    }
    println!("{}", l.url);
    if let Some(short) = &l.short_url {
        println!("short:    {short}");
    }
    if let Some(pw) = &shown_password {
        println!("password: {pw}  (shown only now; the daemon does not keep it)");
    }
    println!(
        "link {} ({}, {}), expires {}",
        l.id,
        l.link_type.to_lowercase(),
        if l.options.password_required {
            "password-protected"
        } else {
            "no password"
        },
        l.expires_at.as_deref().unwrap_or("never")
    );
    match v.outcome {
        Outcome::Reused => {
            eprintln!("existing link, still active (use --regenerate for a new URL)");
            if a.generate_password {
                eprintln!(
                    "it keeps the password it was created with; --regenerate makes a new link with a new password"
                );
            }
        }
        Outcome::Regenerated => eprintln!(
            "new link: the previous one ({}) was replaced because {}",
            v.replaced.as_deref().unwrap_or("not revoked, see `links`"),
            v.reason.as_deref().unwrap_or("it was not usable")
        ),
        Outcome::Created => {}
    }
    Ok(0)
}

pub(super) async fn links(
    socket: &Path,
    mirror: &Option<String>,
    json_out: bool,
) -> Result<u8, CtlError> {
    let query = LinksQuery {
        mirror: mirror.clone(),
        refresh: None,
    };
    let v: LinksResponse =
        client::get(socket, &format!("{}{}", route::LINKS, query.to_query())).await?;
    if json_out {
        print_json(&v);
        return Ok(0);
    }
    if v.links.is_empty() {
        println!("no links");
        return Ok(0);
    }
    for listed in &v.links {
        let l = &listed.link;
        let path = match l.path.as_str() {
            "" => "(mirror root)",
            p => p,
        };
        println!(
            "{:<28} {:<9} {:<8} expires {:<20} {}:{}  {}{}",
            l.id,
            l.status,
            l.link_type.to_lowercase(),
            l.expires_at.as_deref().unwrap_or("never"),
            listed.mirror,
            Escaped(path),
            l.url,
            match listed.download_count {
                Some(n) => format!("  ({n} downloads)"),
                None => String::new(),
            }
        );
    }
    Ok(0)
}

pub(super) async fn unlink(socket: &Path, target: &str, json_out: bool) -> Result<u8, CtlError> {
    let path = absolute(Path::new(target)).ok();
    let body = UnlinkBody {
        target: target.to_string(),
        path,
    };
    let v: UnlinkResponse = client::post(socket, route::UNLINK, &body).await?;
    if json_out {
        print_json(&v);
        return Ok(0);
    }
    for l in &v.revoked {
        println!("revoked {} ({})", l.id, l.url);
    }
    Ok(0)
}
