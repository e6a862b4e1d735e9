//! `scaidrive-gen`: writes the man pages and shell completions of `scaidrived`,
//! `scaidrivectl` and `scaidrive-devserver` from their clap definitions
//! (`scaidrive::cli::*::Args`), so they never drift from `--help`.
//!
//! ```text
//! cargo run --bin scaidrive-gen -- all packaging/     # man/ and completions/ under it
//! cargo run --bin scaidrive-gen -- check packaging/   # exit 1 if the committed ones are stale
//! ```
//!
//! Output is deterministic (no dates, sorted), so the committed files can be compared
//! byte for byte. Man pages: one per program in section 1, plus one per `scaidrivectl`
//! subcommand (`scaidrivectl-status.1`, ...) the way git does it. Completions: bash, zsh
//! and fish, named the way Debian's bash-completion, zsh and fish look them up.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory, Parser, ValueEnum};
use clap_complete::Shell;

/// Generate the man pages and shell completions.
#[derive(Parser, Debug)]
#[command(about)]
struct Args {
    #[arg(value_enum)]
    what: What,
    /// Directory that gets `man/` and `completions/` (e.g. packaging/).
    dir: PathBuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum What {
    /// Man pages and completions.
    All,
    /// Man pages only (DIR/man).
    Man,
    /// Completions only (DIR/completions).
    Completions,
    /// Compare what would be generated with DIR; exit 1 and list the differences.
    Check,
}

/// The three programs, by binary name.
fn commands() -> Vec<clap::Command> {
    vec![
        scaidrive::cli::daemon::Args::command().name("scaidrived"),
        scaidrive::cli::ctl::Args::command().name("scaidrivectl"),
        scaidrive::cli::devserver::Args::command().name("scaidrive-devserver"),
    ]
}

/// Relative path → content of every generated file.
type Files = BTreeMap<PathBuf, Vec<u8>>;

fn see_also(name: &str) -> String {
    let others: Vec<String> = ["scaidrived", "scaidrivectl", "scaidrive-devserver"]
        .iter()
        .filter(|n| **n != name)
        .map(|n| format!("\\fB{n}\\fR(1)"))
        .collect();
    format!(
        ".SH \"SEE ALSO\"\n{}\n.PP\nThe README in /usr/share/doc/scaidrive describes configuration, \
         the systemd and launchd services, and troubleshooting.\n",
        others.join(", ")
    )
}

fn render_man(cmd: clap::Command, name: &str) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd)
        .source(format!("scaidrive {}", env!("CARGO_PKG_VERSION")))
        .manual("scaidrive")
        .render(&mut out)?;
    out.extend_from_slice(see_also(name).as_bytes());
    Ok(out)
}

/// The programs' `about` is the package description (shared by all three); the NAME
/// line of a page should say what this program does: the first line of its doc comment.
fn own_about(cmd: clap::Command) -> clap::Command {
    let first = cmd
        .get_long_about()
        .and_then(|l| l.to_string().lines().next().map(str::to_string));
    match first {
        Some(line) => cmd.about(line),
        None => cmd,
    }
}

/// Pages for every (nested) subcommand: `scaidrivectl-status.1`,
/// `scaidrivectl-service-install.1`, ..., the names the parent pages refer to.
fn sub_pages(cmd: &clap::Command, prefix: &str, files: &mut Files) -> std::io::Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        // `scaidrivectl-status` names the page and its title, as `git-commit` does.
        let page = format!("{prefix}-{}", sub.get_name());
        let sub = sub.clone().display_name(page.clone());
        sub_pages(&sub, &page, files)?;
        files.insert(
            PathBuf::from(format!("man/{page}.1")),
            render_man(sub, &page)?,
        );
    }
    Ok(())
}

fn man_pages() -> std::io::Result<Files> {
    let mut files = Files::new();
    for cmd in commands() {
        let mut cmd = own_about(cmd).disable_help_subcommand(true);
        cmd.build();
        let name = cmd.get_name().to_string();
        sub_pages(&cmd, &name, &mut files)?;
        files.insert(
            PathBuf::from(format!("man/{name}.1")),
            render_man(cmd, &name)?,
        );
    }
    Ok(files)
}

fn completions() -> Files {
    let mut files = Files::new();
    for mut cmd in commands() {
        let name = cmd.get_name().to_string();
        for (shell, file) in [
            (Shell::Bash, format!("{name}.bash")),
            (Shell::Zsh, format!("_{name}")),
            (Shell::Fish, format!("{name}.fish")),
        ] {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut cmd, &name, &mut out);
            files.insert(PathBuf::from(format!("completions/{file}")), out);
        }
    }
    files
}

fn generate(what: What) -> std::io::Result<Files> {
    let mut files = Files::new();
    if matches!(what, What::All | What::Man | What::Check) {
        files.extend(man_pages()?);
    }
    if matches!(what, What::All | What::Completions | What::Check) {
        files.extend(completions());
    }
    Ok(files)
}

/// Writes `files` under `dir` and removes files in the generated directories that are no
/// longer generated (a removed subcommand's page), so `all` leaves an exact copy.
fn write(dir: &Path, files: &Files) -> std::io::Result<()> {
    for sub in ["man", "completions"] {
        if !files.keys().any(|p| p.starts_with(sub)) {
            continue;
        }
        let d = dir.join(sub);
        std::fs::create_dir_all(&d)?;
        for entry in std::fs::read_dir(&d)? {
            let path = entry?.path();
            let rel = Path::new(sub).join(path.file_name().unwrap_or_default());
            if path.is_file() && !files.contains_key(&rel) {
                std::fs::remove_file(&path)?;
            }
        }
    }
    for (rel, content) in files {
        let path = dir.join(rel);
        if std::fs::read(&path).ok().as_deref() != Some(content.as_slice()) {
            std::fs::write(&path, content)?;
        }
    }
    Ok(())
}

/// The differences between `files` and what is under `dir`, one line each.
fn check(dir: &Path, files: &Files) -> std::io::Result<Vec<String>> {
    let mut problems = Vec::new();
    for (rel, content) in files {
        match std::fs::read(dir.join(rel)) {
            Ok(old) if old == *content => {}
            Ok(_) => problems.push(format!("{} is out of date", rel.display())),
            Err(_) => problems.push(format!("{} is missing", rel.display())),
        }
    }
    for sub in ["man", "completions"] {
        let Ok(entries) = std::fs::read_dir(dir.join(sub)) else {
            continue;
        };
        for entry in entries {
            let name = entry?.file_name();
            let rel = Path::new(sub).join(&name);
            if !files.contains_key(&rel) {
                problems.push(format!("{} is no longer generated", rel.display()));
            }
        }
    }
    problems.sort();
    Ok(problems)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = generate(args.what).and_then(|files| {
        if args.what == What::Check {
            check(&args.dir, &files)
        } else {
            write(&args.dir, &files).map(|()| Vec::new())
        }
    });
    match result {
        Ok(problems) if problems.is_empty() => ExitCode::SUCCESS,
        Ok(problems) => {
            for p in problems {
                eprintln!("scaidrive-gen: {}: {p}", args.dir.display());
            }
            eprintln!(
                "scaidrive-gen: regenerate with: cargo run --bin scaidrive-gen -- all {}",
                args.dir.display()
            );
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("scaidrive-gen: {}: {e}", args.dir.display());
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_every_page_and_completion() {
        let files = generate(What::All).unwrap();
        for f in [
            "man/scaidrived.1",
            "man/scaidrivectl.1",
            "man/scaidrivectl-status.1",
            "man/scaidrivectl-service.1",
            "man/scaidrivectl-service-install.1",
            "man/scaidrivectl-config-check.1",
            "man/scaidrive-devserver.1",
            "completions/scaidrived.bash",
            "completions/_scaidrivectl",
            "completions/scaidrive-devserver.fish",
        ] {
            assert!(files.contains_key(Path::new(f)), "{f}");
        }
        let page =
            String::from_utf8(files[Path::new("man/scaidrivectl-status.1")].clone()).unwrap();
        assert!(page.starts_with(".ie"), "roff: {}", &page[..40]);
        assert!(page.contains("scaidrivectl\\-status"), "{page}");
        assert!(page.contains("\\fBscaidrived\\fR(1)"));
        let top = String::from_utf8(files[Path::new("man/scaidrivectl.1")].clone()).unwrap();
        assert!(
            top.contains("scaidrivectl \\- Query and steer scaidrived."),
            "the NAME line is the program's own summary: {}",
            &top[..300]
        );
        assert_eq!(files, generate(What::All).unwrap(), "deterministic");
    }

    #[test]
    fn check_finds_stale_missing_and_extra_files_and_write_fixes_them() {
        let dir = tempfile::tempdir().unwrap();
        let files = generate(What::All).unwrap();
        write(dir.path(), &files).unwrap();
        assert!(check(dir.path(), &files).unwrap().is_empty());

        std::fs::write(dir.path().join("man/scaidrived.1"), "old").unwrap();
        std::fs::remove_file(dir.path().join("completions/_scaidrived")).unwrap();
        std::fs::write(dir.path().join("man/scaidrivectl-gone.1"), "x").unwrap();
        assert_eq!(
            check(dir.path(), &files).unwrap(),
            [
                "completions/_scaidrived is missing",
                "man/scaidrivectl-gone.1 is no longer generated",
                "man/scaidrived.1 is out of date",
            ]
        );
        write(dir.path(), &files).unwrap();
        assert!(check(dir.path(), &files).unwrap().is_empty());
    }
}
