//! `scaidrivectl service install|uninstall`: run `scaidrived` as a per-user service.
//!
//! On Linux it writes the systemd user unit (`systemd/user/scaidrived.service`, with the
//! real binary and configuration paths filled in) to `$XDG_CONFIG_HOME/systemd/user/` and
//! runs `systemctl --user daemon-reload` and `enable --now`; on macOS it writes the
//! LaunchAgent (`packaging/macos/ai.scailabs.scaidrived.plist`) to `~/Library/LaunchAgents/`
//! and loads it with `launchctl bootstrap gui/<uid>`. Uninstall stops, disables and removes
//! it; the configuration, the state and the logs stay.
//!
//! The work is split into a [`Plan`] (files to write or remove, commands to run), built
//! from a [`Context`] without side effects other than read-only commands such as `id -u`,
//! and [`execute`], which applies it through a [`Runner`]. Tests inject a recording
//! runner and a temporary HOME, so they check exactly what would be written and run
//! without a real systemd or launchd; `--dry-run` prints the plan the same way.

use std::fmt::Write as _;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use clap::Subcommand;

/// The user unit shipped in `systemd/user/`; its ExecStart and AssertPathExists lines are
/// rewritten with the actual paths.
pub const SYSTEMD_USER_UNIT: &str = include_str!("../systemd/user/scaidrived.service");
/// The LaunchAgent template shipped in `packaging/macos/`, with `@...@` placeholders.
pub const LAUNCHD_PLIST: &str = include_str!("../packaging/macos/ai.scailabs.scaidrived.plist");
/// The launchd label, also the plist's file name without `.plist`.
pub const LAUNCHD_LABEL: &str = "ai.scailabs.scaidrived";
const UNIT_NAME: &str = "scaidrived.service";

/// `scaidrivectl service ...`.
#[derive(Subcommand, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceCmd {
    /// Install and start scaidrived as a per-user service (systemd user unit on Linux,
    /// launchd agent on macOS) using --config (default ~/.config/scaidrive/scaidrived.toml).
    Install {
        /// Print what would be written and run, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Stop, disable and remove the per-user service (configuration and state stay).
    Uninstall {
        /// Print what would be removed and run, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("`service` supports Linux (systemd user units) and macOS (launchd agents) only")]
    Unsupported,
    #[error("HOME is not set; cannot find the per-user service directory")]
    NoHome,
    #[error("{program} not found: {hint}")]
    Missing { program: String, hint: String },
    #[error("`{command}` failed: {message}")]
    Failed { command: String, message: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "no configuration at {}: copy scaidrived.example.toml there (see the README) or pass --config FILE",
        .0.display()
    )]
    NoConfig(PathBuf),
    #[error(
        "cannot find scaidrived next to this scaidrivectl ({}); install both into the same directory",
        .0.display()
    )]
    NoDaemon(PathBuf),
    #[error("{0}")]
    Unexpected(String),
    /// A command failed after the service file was written: say where it is.
    #[error("{source} (wrote {}; run install again once that is fixed, or `scaidrivectl service uninstall`)", file.display())]
    Partial {
        source: Box<ServiceError>,
        file: PathBuf,
    },
}

/// The service manager family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    Linux,
    MacOs,
}

impl Platform {
    pub fn current() -> Option<Platform> {
        if cfg!(target_os = "macos") {
            Some(Platform::MacOs)
        } else if cfg!(target_os = "linux") {
            Some(Platform::Linux)
        } else {
            None
        }
    }
}

/// Everything [`plan_install`] and [`plan_uninstall`] need to know about the machine.
#[derive(Debug, Clone)]
pub struct Context {
    pub platform: Platform,
    pub home: PathBuf,
    /// `$XDG_CONFIG_HOME` when set and absolute (Linux only).
    pub xdg_config_home: Option<PathBuf>,
    /// Absolute path of the `scaidrived` binary the service runs.
    pub daemon: PathBuf,
    /// Absolute path of the configuration file the service reads.
    pub config: PathBuf,
}

impl Context {
    /// From the process environment: HOME, XDG_CONFIG_HOME, the `scaidrived` beside the
    /// running executable, and `config` or the per-user default.
    pub fn from_env(config: Option<&Path>) -> Result<Context, ServiceError> {
        let platform = Platform::current().ok_or(ServiceError::Unsupported)?;
        let home = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from)
            .ok_or(ServiceError::NoHome)?;
        let xdg_config_home = std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute());
        let exe = std::env::current_exe().map_err(|e| ServiceError::Io {
            path: PathBuf::from("current executable"),
            source: e,
        })?;
        let daemon = exe.with_file_name("scaidrived");
        if !daemon.is_file() {
            return Err(ServiceError::NoDaemon(daemon));
        }
        let mut ctx = Context {
            platform,
            home,
            xdg_config_home,
            daemon,
            config: PathBuf::new(),
        };
        ctx.config = match config {
            // launchd and systemd start the daemon in another working directory.
            Some(c) => std::path::absolute(c).map_err(|e| ServiceError::Io {
                path: c.to_path_buf(),
                source: e,
            })?,
            None => ctx.default_config(),
        };
        Ok(ctx)
    }

    fn config_home(&self) -> PathBuf {
        match (self.platform, &self.xdg_config_home) {
            (Platform::Linux, Some(x)) => x.clone(),
            _ => self.home.join(".config"),
        }
    }

    /// `$XDG_CONFIG_HOME/scaidrive/scaidrived.toml` (`~/.config/...` by default, on macOS
    /// too), the path the user unit reads through `%E`.
    pub fn default_config(&self) -> PathBuf {
        self.config_home().join("scaidrive/scaidrived.toml")
    }

    /// Where the service definition goes.
    pub fn service_file(&self) -> PathBuf {
        match self.platform {
            Platform::Linux => self.config_home().join("systemd/user").join(UNIT_NAME),
            Platform::MacOs => self
                .home
                .join("Library/LaunchAgents")
                .join(format!("{LAUNCHD_LABEL}.plist")),
        }
    }

    fn log_dir(&self) -> PathBuf {
        self.home.join("Library/Logs/scaidrive")
    }
}

/// One external command of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub program: String,
    pub args: Vec<String>,
    /// A failure is reported as a note instead of aborting (e.g. `bootout` of an agent
    /// that is not loaded).
    pub may_fail: bool,
}

impl Step {
    fn new(program: &str, args: &[&str]) -> Step {
        Step {
            program: program.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
            may_fail: false,
        }
    }

    fn may_fail(mut self) -> Step {
        self.may_fail = true;
        self
    }

    /// The command as a shell-like line, for messages.
    pub fn line(&self) -> String {
        std::iter::once(self.program.as_str())
            .chain(self.args.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// What install or uninstall does, in order: create directories, write files, remove
/// files, then run the steps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub dirs: Vec<PathBuf>,
    pub writes: Vec<(PathBuf, String)>,
    pub removes: Vec<PathBuf>,
    pub steps: Vec<Step>,
    /// Steps to run after the removals (uninstall's daemon-reload must see the file gone).
    pub steps_after_removal: Vec<Step>,
}

/// What a finished command printed and whether it succeeded.
#[derive(Debug, Clone, Default)]
pub struct Output {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs external commands; [`SystemRunner`] for real, a recorder in tests.
pub trait Runner {
    /// Runs `program` with `args` and waits; `Err` with [`ErrorKind::NotFound`] when the
    /// program does not exist.
    fn run(&mut self, program: &str, args: &[String]) -> std::io::Result<Output>;
}

/// Runs commands with [`std::process::Command`].
#[derive(Debug, Default)]
pub struct SystemRunner;

impl Runner for SystemRunner {
    fn run(&mut self, program: &str, args: &[String]) -> std::io::Result<Output> {
        let out = std::process::Command::new(program)
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()?;
        Ok(Output {
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

fn hint(program: &str) -> &'static str {
    match program {
        "systemctl" => {
            "this needs systemd with a user manager; without it run scaidrived from your session's autostart instead"
        }
        "launchctl" => "this needs macOS launchd",
        _ => "it must be on PATH",
    }
}

/// Runs one command, mapping a missing program and a failure to one-line errors.
fn run_step(runner: &mut dyn Runner, step: &Step) -> Result<Output, ServiceError> {
    let out = runner.run(&step.program, &step.args).map_err(|e| {
        if e.kind() == ErrorKind::NotFound {
            ServiceError::Missing {
                program: step.program.clone(),
                hint: hint(&step.program).into(),
            }
        } else {
            ServiceError::Failed {
                command: step.line(),
                message: e.to_string(),
            }
        }
    })?;
    if out.success {
        Ok(out)
    } else {
        // systemctl and launchctl put the reason on the first non-empty stderr line.
        let message = out
            .stderr
            .lines()
            .chain(out.stdout.lines())
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("exited unsuccessfully")
            .to_string();
        Err(ServiceError::Failed {
            command: step.line(),
            message,
        })
    }
}

fn current_uid(runner: &mut dyn Runner) -> Result<u32, ServiceError> {
    let step = Step::new("id", &["-u"]);
    let out = run_step(runner, &step)?;
    out.stdout
        .trim()
        .parse()
        .map_err(|_| ServiceError::Unexpected(format!("`id -u` printed {:?}", out.stdout.trim())))
}

/// Quotes one ExecStart argument for systemd: `%` is a specifier, and whitespace, quotes
/// and backslashes need double quotes with C-style escapes.
fn systemd_arg(p: &Path) -> String {
    let s = p.to_string_lossy().replace('%', "%%");
    if s.chars()
        .any(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '\\' | ';' | '$'))
    {
        let escaped = s
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('$', "$$");
        format!("\"{escaped}\"")
    } else {
        s
    }
}

/// The user unit with this daemon and configuration instead of the packaged paths.
pub fn render_systemd_user_unit(daemon: &Path, config: &Path) -> String {
    let mut out = String::with_capacity(SYSTEMD_USER_UNIT.len() + 64);
    for line in SYSTEMD_USER_UNIT.lines() {
        if line.starts_with("ExecStart=") {
            let _ = writeln!(
                out,
                "ExecStart={} --config {}",
                systemd_arg(daemon),
                systemd_arg(config)
            );
        } else if line.starts_with("AssertPathExists=") {
            // The value is taken verbatim (no quoting) apart from specifiers.
            let _ = writeln!(
                out,
                "AssertPathExists={}",
                config.to_string_lossy().replace('%', "%%")
            );
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn xml_escape(p: &Path) -> String {
    p.to_string_lossy()
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The LaunchAgent with its placeholders filled in, and the template's explanation
/// (the first comment) replaced by a note saying where the file came from.
pub fn render_launchd_plist(daemon: &Path, config: &Path, log_dir: &Path) -> String {
    let template = match (LAUNCHD_PLIST.find("<!--"), LAUNCHD_PLIST.find("-->")) {
        (Some(start), Some(end)) if start < end => format!(
            "{}<!-- Written by `scaidrivectl service install`; `scaidrivectl service uninstall` removes it. -->{}",
            &LAUNCHD_PLIST[..start],
            &LAUNCHD_PLIST[end + 3..]
        ),
        _ => LAUNCHD_PLIST.to_string(),
    };
    template
        .replace("@SCAIDRIVED@", &xml_escape(daemon))
        .replace("@CONFIG@", &xml_escape(config))
        .replace("@LOGDIR@", &xml_escape(log_dir))
}

/// What `service install` does. Fails early, before anything is written, when the
/// configuration file is missing or the service manager's tool is not installed.
pub fn plan_install(ctx: &Context, runner: &mut dyn Runner) -> Result<Plan, ServiceError> {
    if !ctx.config.is_file() {
        return Err(ServiceError::NoConfig(ctx.config.clone()));
    }
    let file = ctx.service_file();
    let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut plan = Plan::default();
    match ctx.platform {
        Platform::Linux => {
            run_step(runner, &Step::new("systemctl", &["--version"]))?;
            let unit = render_systemd_user_unit(&ctx.daemon, &ctx.config);
            // `enable --now` leaves a running service alone; a changed unit (new binary
            // or config path) needs a restart to take effect.
            let changed = std::fs::read_to_string(&file).is_ok_and(|old| old != unit);
            plan.dirs.push(dir);
            plan.writes.push((file, unit));
            plan.steps
                .push(Step::new("systemctl", &["--user", "daemon-reload"]));
            plan.steps.push(Step::new(
                "systemctl",
                &["--user", "enable", "--now", UNIT_NAME],
            ));
            if changed {
                plan.steps
                    .push(Step::new("systemctl", &["--user", "restart", UNIT_NAME]));
            }
        }
        Platform::MacOs => {
            run_step(runner, &Step::new("launchctl", &["version"]))?;
            let uid = current_uid(runner)?;
            let domain = format!("gui/{uid}");
            let target = format!("{domain}/{LAUNCHD_LABEL}");
            let file_arg = file.to_string_lossy().into_owned();
            plan.dirs.push(dir);
            plan.dirs.push(ctx.log_dir());
            plan.writes.push((
                file,
                render_launchd_plist(&ctx.daemon, &ctx.config, &ctx.log_dir()),
            ));
            // bootstrap refuses an agent that is already loaded, and a disabled one:
            // unload a previous install first (fails harmlessly when there is none).
            plan.steps
                .push(Step::new("launchctl", &["bootout", &target]).may_fail());
            plan.steps
                .push(Step::new("launchctl", &["enable", &target]));
            plan.steps
                .push(Step::new("launchctl", &["bootstrap", &domain, &file_arg]));
        }
    }
    Ok(plan)
}

/// What `service uninstall` does: stop and disable (failures are notes, so uninstall is
/// idempotent), then remove the service file.
pub fn plan_uninstall(ctx: &Context, runner: &mut dyn Runner) -> Result<Plan, ServiceError> {
    let file = ctx.service_file();
    let mut plan = Plan::default();
    match ctx.platform {
        Platform::Linux => {
            run_step(runner, &Step::new("systemctl", &["--version"]))?;
            plan.steps.push(
                Step::new("systemctl", &["--user", "disable", "--now", UNIT_NAME]).may_fail(),
            );
            // The file is gone either way; without a running user manager there is
            // nothing to reload.
            plan.steps_after_removal
                .push(Step::new("systemctl", &["--user", "daemon-reload"]).may_fail());
        }
        Platform::MacOs => {
            run_step(runner, &Step::new("launchctl", &["version"]))?;
            let uid = current_uid(runner)?;
            plan.steps.push(
                Step::new(
                    "launchctl",
                    &["bootout", &format!("gui/{uid}/{LAUNCHD_LABEL}")],
                )
                .may_fail(),
            );
        }
    }
    if file.exists() {
        plan.removes.push(file);
    }
    Ok(plan)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ServiceError + '_ {
    move |source| ServiceError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Applies a plan. Returns the notes about steps that were allowed to fail and did.
pub fn execute(plan: &Plan, runner: &mut dyn Runner) -> Result<Vec<String>, ServiceError> {
    use std::os::unix::fs::PermissionsExt;
    let mut notes = Vec::new();
    for d in &plan.dirs {
        std::fs::create_dir_all(d).map_err(io(d))?;
    }
    for (path, content) in &plan.writes {
        // Write then rename, so a service manager never reads a half-written file.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, content).map_err(io(&tmp))?;
        // Readable by the service manager and the user, like any unit or agent.
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)).map_err(io(&tmp))?;
        std::fs::rename(&tmp, path).map_err(io(path))?;
    }
    let mut run_all = |steps: &[Step], notes: &mut Vec<String>| -> Result<(), ServiceError> {
        for step in steps {
            match run_step(runner, step) {
                Ok(_) => {}
                Err(e @ ServiceError::Failed { .. }) if step.may_fail => {
                    notes.push(format!("{e} (ignored)"))
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    };
    run_all(&plan.steps, &mut notes)?;
    for path in &plan.removes {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(io(path)(e)),
        }
    }
    run_all(&plan.steps_after_removal, &mut notes)?;
    Ok(notes)
}

/// The plan as text, for `--dry-run`.
pub fn describe(plan: &Plan) -> String {
    let mut s = String::new();
    for d in &plan.dirs {
        let _ = writeln!(s, "would create directory {}", d.display());
    }
    for (p, content) in &plan.writes {
        let _ = writeln!(s, "would write {}:", p.display());
        for line in content.lines() {
            let _ = writeln!(s, "    {line}");
        }
    }
    let remove = plan
        .removes
        .iter()
        .map(|p| format!("would remove {}\n", p.display()));
    let run = |steps: &[Step]| {
        steps
            .iter()
            .map(|st| format!("would run: {}\n", st.line()))
            .collect::<String>()
    };
    s.push_str(&run(&plan.steps));
    s.extend(remove);
    s.push_str(&run(&plan.steps_after_removal));
    s
}

/// `scaidrivectl [--config FILE] service ...`; returns the exit code.
pub fn main(cmd: ServiceCmd, config: Option<&Path>) -> u8 {
    match Context::from_env(config).and_then(|ctx| run(cmd, &ctx, &mut SystemRunner)) {
        Ok(msg) => {
            print!("{msg}");
            0
        }
        Err(e) => {
            eprintln!("scaidrivectl: service: {e}");
            1
        }
    }
}

/// Plans and (unless a dry run) executes `cmd`; returns what to print.
pub fn run(
    cmd: ServiceCmd,
    ctx: &Context,
    runner: &mut dyn Runner,
) -> Result<String, ServiceError> {
    let (plan, dry_run, installing) = match cmd {
        ServiceCmd::Install { dry_run } => (plan_install(ctx, runner)?, dry_run, true),
        ServiceCmd::Uninstall { dry_run } => (plan_uninstall(ctx, runner)?, dry_run, false),
    };
    if dry_run {
        return Ok(describe(&plan));
    }
    let notes = execute(&plan, runner).map_err(|e| match plan.writes.first() {
        Some((file, _)) if !matches!(e, ServiceError::Io { .. }) => ServiceError::Partial {
            source: Box::new(e),
            file: file.clone(),
        },
        _ => e,
    })?;
    let mut msg = String::new();
    for n in notes {
        let _ = writeln!(msg, "note: {n}");
    }
    let file = ctx.service_file();
    let status = match ctx.platform {
        Platform::Linux => "systemctl --user status scaidrived; journalctl --user -u scaidrived",
        Platform::MacOs => "scaidrivectl status; tail ~/Library/Logs/scaidrive/scaidrived.log",
    };
    if installing {
        let _ = writeln!(
            msg,
            "installed {} (config {}) and started it; check with: {status}",
            file.display(),
            ctx.config.display()
        );
    } else if plan.removes.is_empty() {
        let _ = writeln!(msg, "stopped; no service file at {}", file.display());
    } else {
        let _ = writeln!(
            msg,
            "stopped and removed {}; configuration and state are kept",
            file.display()
        );
    }
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Records every command; answers from `answers` (by command line) or with success.
    #[derive(Default)]
    struct Recorder {
        ran: Vec<String>,
        answers: HashMap<String, std::io::Result<Output>>,
    }

    impl Recorder {
        fn answer(mut self, line: &str, out: std::io::Result<Output>) -> Recorder {
            self.answers.insert(line.into(), out);
            self
        }
    }

    fn ok(stdout: &str) -> std::io::Result<Output> {
        Ok(Output {
            success: true,
            stdout: stdout.into(),
            stderr: String::new(),
        })
    }

    fn fail(stderr: &str) -> std::io::Result<Output> {
        Ok(Output {
            success: false,
            stdout: String::new(),
            stderr: stderr.into(),
        })
    }

    impl Runner for Recorder {
        fn run(&mut self, program: &str, args: &[String]) -> std::io::Result<Output> {
            let line = std::iter::once(program.to_string())
                .chain(args.iter().cloned())
                .collect::<Vec<_>>()
                .join(" ");
            self.ran.push(line.clone());
            match self.answers.remove(&line) {
                Some(a) => a,
                None if line == "id -u" => ok("501\n"),
                None => ok(""),
            }
        }
    }

    fn context(platform: Platform, home: &Path) -> Context {
        let mut ctx = Context {
            platform,
            home: home.to_path_buf(),
            xdg_config_home: None,
            daemon: PathBuf::from("/opt/scai drive/bin/scaidrived"),
            config: PathBuf::new(),
        };
        ctx.config = ctx.default_config();
        ctx
    }

    fn write_config(ctx: &Context) {
        std::fs::create_dir_all(ctx.config.parent().unwrap()).unwrap();
        std::fs::write(&ctx.config, "[remote]\n").unwrap();
    }

    #[test]
    fn linux_install_writes_the_user_unit_and_enables_it() {
        let home = tempfile::tempdir().unwrap();
        let ctx = context(Platform::Linux, home.path());
        write_config(&ctx);
        let mut r = Recorder::default();
        let msg = run(ServiceCmd::Install { dry_run: false }, &ctx, &mut r).unwrap();
        assert_eq!(
            r.ran,
            [
                "systemctl --version",
                "systemctl --user daemon-reload",
                "systemctl --user enable --now scaidrived.service"
            ]
        );
        let unit_path = home.path().join(".config/systemd/user/scaidrived.service");
        let unit = std::fs::read_to_string(&unit_path).unwrap();
        let cfg = home.path().join(".config/scaidrive/scaidrived.toml");
        assert!(
            unit.contains(&format!(
                "\nExecStart=\"/opt/scai drive/bin/scaidrived\" --config {}\n",
                cfg.display()
            )),
            "{unit}"
        );
        assert!(unit.contains(&format!("\nAssertPathExists={}\n", cfg.display())));
        assert!(unit.contains("Type=notify") && unit.contains("WantedBy=default.target"));
        assert!(!unit.contains("/usr/bin/scaidrived"));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&unit_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644);
        assert!(msg.contains("installed"), "{msg}");

        // Same paths again: nothing to restart.
        let mut r = Recorder::default();
        run(ServiceCmd::Install { dry_run: false }, &ctx, &mut r).unwrap();
        assert!(!r.ran.iter().any(|l| l.contains("restart")), "{:?}", r.ran);

        // Another config path: the unit changes and the running service is restarted.
        let mut other = ctx.clone();
        other.config = home.path().join("other.toml");
        std::fs::write(&other.config, "").unwrap();
        let mut r = Recorder::default();
        run(ServiceCmd::Install { dry_run: false }, &other, &mut r).unwrap();
        assert_eq!(
            r.ran.last().unwrap(),
            "systemctl --user restart scaidrived.service"
        );
    }

    #[test]
    fn linux_honours_xdg_config_home() {
        let home = tempfile::tempdir().unwrap();
        let mut ctx = context(Platform::Linux, home.path());
        ctx.xdg_config_home = Some(home.path().join("xdg"));
        ctx.config = ctx.default_config();
        assert_eq!(
            ctx.config,
            home.path().join("xdg/scaidrive/scaidrived.toml")
        );
        write_config(&ctx);
        run(
            ServiceCmd::Install { dry_run: false },
            &ctx,
            &mut Recorder::default(),
        )
        .unwrap();
        assert!(
            home.path()
                .join("xdg/systemd/user/scaidrived.service")
                .is_file()
        );
    }

    #[test]
    fn missing_systemctl_is_one_clear_line_and_writes_nothing() {
        let home = tempfile::tempdir().unwrap();
        let ctx = context(Platform::Linux, home.path());
        write_config(&ctx);
        let mut r = Recorder::default().answer(
            "systemctl --version",
            Err(std::io::Error::from(ErrorKind::NotFound)),
        );
        let e = run(ServiceCmd::Install { dry_run: false }, &ctx, &mut r)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("systemctl not found: "), "{e}");
        assert!(!e.contains('\n'));
        assert!(!ctx.service_file().exists());
    }

    #[test]
    fn missing_config_is_refused_before_anything_runs() {
        let home = tempfile::tempdir().unwrap();
        let ctx = context(Platform::Linux, home.path());
        let mut r = Recorder::default();
        let e = run(ServiceCmd::Install { dry_run: false }, &ctx, &mut r)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("no configuration at "), "{e}");
        assert!(r.ran.is_empty());
        assert!(!ctx.service_file().exists());
    }

    #[test]
    fn a_failing_systemctl_reports_its_first_stderr_line() {
        let home = tempfile::tempdir().unwrap();
        let ctx = context(Platform::Linux, home.path());
        write_config(&ctx);
        let mut r = Recorder::default().answer(
            "systemctl --user daemon-reload",
            fail("Failed to connect to bus: No medium found\nmore\n"),
        );
        let e = run(ServiceCmd::Install { dry_run: false }, &ctx, &mut r)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            format!(
                "`systemctl --user daemon-reload` failed: Failed to connect to bus: No medium found \
                 (wrote {}; run install again once that is fixed, or `scaidrivectl service uninstall`)",
                ctx.service_file().display()
            )
        );

        // Uninstall without a user manager still removes the unit and succeeds.
        let mut r = Recorder::default()
            .answer(
                "systemctl --user disable --now scaidrived.service",
                fail("Failed to connect to bus: No medium found\n"),
            )
            .answer(
                "systemctl --user daemon-reload",
                fail("Failed to connect to bus: No medium found\n"),
            );
        let msg = run(ServiceCmd::Uninstall { dry_run: false }, &ctx, &mut r).unwrap();
        assert!(msg.contains("stopped and removed"), "{msg}");
        assert!(!ctx.service_file().exists());
    }

    #[test]
    fn linux_uninstall_disables_removes_and_reloads_and_is_idempotent() {
        let home = tempfile::tempdir().unwrap();
        let ctx = context(Platform::Linux, home.path());
        write_config(&ctx);
        run(
            ServiceCmd::Install { dry_run: false },
            &ctx,
            &mut Recorder::default(),
        )
        .unwrap();
        let mut r = Recorder::default();
        let msg = run(ServiceCmd::Uninstall { dry_run: false }, &ctx, &mut r).unwrap();
        assert_eq!(
            r.ran,
            [
                "systemctl --version",
                "systemctl --user disable --now scaidrived.service",
                "systemctl --user daemon-reload"
            ]
        );
        assert!(!ctx.service_file().exists());
        assert!(ctx.config.exists(), "the configuration stays");
        assert!(msg.contains("stopped and removed"), "{msg}");

        let mut r = Recorder::default().answer(
            "systemctl --user disable --now scaidrived.service",
            fail("Failed to disable unit: Unit file scaidrived.service does not exist.\n"),
        );
        let msg = run(ServiceCmd::Uninstall { dry_run: false }, &ctx, &mut r).unwrap();
        assert!(msg.contains("note: ") && msg.contains("(ignored)"), "{msg}");
        assert!(msg.contains("no service file"), "{msg}");
    }

    #[test]
    fn macos_install_writes_the_agent_and_bootstraps_it() {
        let home = tempfile::tempdir().unwrap();
        let ctx = context(Platform::MacOs, home.path());
        write_config(&ctx);
        // Not loaded yet: bootout fails, which is fine.
        let mut r = Recorder::default().answer(
            "launchctl bootout gui/501/ai.scailabs.scaidrived",
            fail("Boot-out failed: 3: No such process\n"),
        );
        let msg = run(ServiceCmd::Install { dry_run: false }, &ctx, &mut r).unwrap();
        let plist = home
            .path()
            .join("Library/LaunchAgents/ai.scailabs.scaidrived.plist");
        assert_eq!(
            r.ran,
            [
                "launchctl version".to_string(),
                "id -u".to_string(),
                "launchctl bootout gui/501/ai.scailabs.scaidrived".to_string(),
                "launchctl enable gui/501/ai.scailabs.scaidrived".to_string(),
                format!("launchctl bootstrap gui/501 {}", plist.display()),
            ]
        );
        assert!(msg.contains("(ignored)"), "{msg}");
        let text = std::fs::read_to_string(&plist).unwrap();
        assert!(!text.contains('@'), "every placeholder is filled: {text}");
        assert!(text.contains("<!-- Written by `scaidrivectl service install`"));
        assert!(text.contains("<string>/opt/scai drive/bin/scaidrived</string>"));
        assert!(text.contains(&format!("<string>{}</string>", ctx.config.display())));
        assert!(text.contains(&format!(
            "<string>{}/Library/Logs/scaidrive/scaidrived.log</string>",
            home.path().display()
        )));
        assert!(home.path().join("Library/Logs/scaidrive").is_dir());
    }

    #[test]
    fn macos_uninstall_boots_out_and_removes_the_plist() {
        let home = tempfile::tempdir().unwrap();
        let ctx = context(Platform::MacOs, home.path());
        write_config(&ctx);
        run(
            ServiceCmd::Install { dry_run: false },
            &ctx,
            &mut Recorder::default(),
        )
        .unwrap();
        let mut r = Recorder::default();
        run(ServiceCmd::Uninstall { dry_run: false }, &ctx, &mut r).unwrap();
        assert_eq!(
            r.ran,
            [
                "launchctl version",
                "id -u",
                "launchctl bootout gui/501/ai.scailabs.scaidrived"
            ]
        );
        assert!(!ctx.service_file().exists());
    }

    #[test]
    fn dry_run_describes_and_changes_nothing() {
        let home = tempfile::tempdir().unwrap();
        let ctx = context(Platform::Linux, home.path());
        write_config(&ctx);
        let mut r = Recorder::default();
        let text = run(ServiceCmd::Install { dry_run: true }, &ctx, &mut r).unwrap();
        assert_eq!(r.ran, ["systemctl --version"], "only the read-only probe");
        assert!(!ctx.service_file().exists());
        assert!(text.contains("would write "), "{text}");
        assert!(text.contains("    Type=notify"), "{text}");
        assert!(text.contains("would run: systemctl --user enable --now scaidrived.service"));
    }

    #[test]
    fn unit_arguments_are_quoted_for_systemd() {
        assert_eq!(systemd_arg(Path::new("/usr/bin/x")), "/usr/bin/x");
        assert_eq!(systemd_arg(Path::new("/a b/x")), "\"/a b/x\"");
        assert_eq!(systemd_arg(Path::new("/a%b")), "/a%%b");
        assert_eq!(systemd_arg(Path::new("/a\"b c")), "\"/a\\\"b c\"");
    }

    #[test]
    fn the_packaged_files_have_the_lines_the_renderer_rewrites() {
        let exec = SYSTEMD_USER_UNIT
            .lines()
            .filter(|l| l.starts_with("ExecStart="))
            .count();
        assert_eq!(exec, 1);
        for p in ["@SCAIDRIVED@", "@CONFIG@", "@LOGDIR@"] {
            assert!(LAUNCHD_PLIST.contains(p), "{p}");
        }
    }
}
