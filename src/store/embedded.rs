//! A PostgreSQL server of our own, from the machine's binaries, for a newcomer's first run and
//! for the tests. PostgreSQL refuses to run as root, so as root it runs as the `postgres` user.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, User, chown, geteuid};

/// A running server. Dropping it stops the server if this process started it.
#[derive(Debug)]
pub struct EmbeddedPostgres {
    data_dir: PathBuf,
    port: u16,
    /// What it was started with, to start it again.
    launch: Option<Launch>,
    /// Set when this process started the server; the server exits when it gets a message.
    started: Option<Started>,
}

#[derive(Debug, Clone)]
struct Launch {
    bin: PathBuf,
    settings: Vec<String>,
    user: Option<User>,
}

#[derive(Debug)]
struct Started {
    pid: Pid,
    /// Gets a message when the server exits. In a mutex so a server can live in a static.
    exited: std::sync::Mutex<mpsc::Receiver<()>>,
}

impl Started {
    fn wait_exit(&self, timeout: Duration) -> bool {
        self.exited
            .lock()
            .is_ok_and(|rx| rx.recv_timeout(timeout).is_ok())
    }
}

impl EmbeddedPostgres {
    /// Starts a server on `data_dir` (made with initdb when new), or attaches to the one already
    /// running there. `settings` are extra `-c name=value` server settings.
    pub fn start(data_dir: &Path, settings: &[&str]) -> anyhow::Result<Self> {
        let bin = find_bin_dir()?;
        let user = if geteuid().is_root() {
            Some(
                User::from_name("postgres")?
                    .context("running as root needs a `postgres` user to run PostgreSQL as")?,
            )
        } else {
            None
        };
        let data_dir = reachable_data_dir(data_dir, user.as_ref())?;
        if !data_dir.join("PG_VERSION").exists() {
            init(&bin, &data_dir, user.as_ref())?;
        }
        if let Some(port) = running_port(&data_dir) {
            tracing::info!(data_dir = %data_dir.display(), port, "Attached to the embedded PostgreSQL already running.");
            return Ok(Self {
                data_dir,
                port,
                launch: None,
                started: None,
            });
        }
        let mut server = Self {
            data_dir,
            port: free_port()?,
            launch: Some(Launch {
                bin,
                settings: settings.iter().map(|s| (*s).to_owned()).collect(),
                user,
            }),
            started: None,
        };
        server.launch()?;
        tracing::info!(data_dir = %server.data_dir.display(), port = server.port, "Started an embedded PostgreSQL.");
        Ok(server)
    }

    /// Stops the server it started (a fast shutdown: clients are disconnected) and starts it
    /// again on the same port, as an operator's restart does.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        self.launch()
    }

    /// Stops the server it started (a fast shutdown), keeping its data and port.
    pub fn stop(&mut self) {
        if let Some(started) = self.started.take() {
            // SIGINT is PostgreSQL's fast shutdown: clients are disconnected, data is flushed.
            if kill(started.pid, Signal::SIGINT).is_ok() {
                started.wait_exit(Duration::from_secs(30));
            }
        }
    }

    /// Starts again, on the same port, a server stopped with [`EmbeddedPostgres::stop`].
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        self.launch()
    }

    fn launch(&mut self) -> anyhow::Result<()> {
        let Launch {
            bin,
            settings,
            user,
        } = self
            .launch
            .clone()
            .context("this process did not start the server")?;
        let (data_dir, port) = (self.data_dir.clone(), self.port);
        let log = fs::File::create(data_dir.join("server.log"))
            .context("Failed to create the server log")?;
        let mut command = Command::new(bin.join("postgres"));
        command
            .arg("-D")
            .arg(&data_dir)
            .args([
                "-p",
                &port.to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "unix_socket_directories=",
            ])
            .args(settings.iter().flat_map(|s| ["-c", s.as_str()]))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Its own process group, so a Ctrl-C meant for us does not stop it mid-export.
            .process_group(0);
        if let Some(user) = &user {
            command.uid(user.uid.as_raw()).gid(user.gid.as_raw());
        }
        // SAFETY: prctl is async-signal-safe. If this process dies, the server shuts down.
        unsafe {
            command.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGINT).map_err(std::io::Error::from)
            });
        }
        // The parent-death signal fires when the spawning thread ends, so a thread that lives as
        // long as the server spawns it and waits for it.
        let (spawned_tx, spawned_rx) = mpsc::channel();
        let (exited_tx, exited_rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("embedded-postgres".into())
            .spawn(move || match command.spawn() {
                Ok(mut child) => {
                    let _ = spawned_tx.send(Ok(child.id()));
                    let _ = child.wait();
                    let _ = exited_tx.send(());
                }
                Err(e) => {
                    let _ = spawned_tx.send(Err(e));
                }
            })?;
        let pid = spawned_rx
            .recv()?
            .with_context(|| format!("Failed to start {}", bin.join("postgres").display()))?;
        self.started = Some(Started {
            pid: Pid::from_raw(pid as i32),
            exited: std::sync::Mutex::new(exited_rx),
        });
        self.wait_ready()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of `database` on this server.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    fn wait_ready(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if running_port(&self.data_dir) == Some(self.port) {
                return Ok(());
            }
            if self
                .started
                .as_ref()
                .is_some_and(|s| s.wait_exit(Duration::from_millis(50)))
            {
                bail!(
                    "PostgreSQL exited at start; see {}",
                    self.data_dir.join("server.log").display()
                );
            }
        }
        bail!(
            "PostgreSQL did not become ready in 60 s; see {}",
            self.data_dir.join("server.log").display()
        )
    }
}

impl Drop for EmbeddedPostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

fn find_bin_dir() -> anyhow::Result<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    let mut versioned: Vec<PathBuf> = fs::read_dir("/usr/lib/postgresql")
        .map(|dirs| {
            dirs.filter_map(|d| d.ok())
                .map(|d| d.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    // The newest installed version first.
    versioned.sort_by_key(|p| {
        std::cmp::Reverse(
            p.to_string_lossy()
                .split('/')
                .nth(4)
                .and_then(|v| v.parse::<u32>().ok()),
        )
    });
    on_path
        .into_iter()
        .chain(versioned)
        .find(|dir| dir.join("initdb").is_file() && dir.join("postgres").is_file())
        .context("no PostgreSQL binaries found (initdb and postgres on PATH or in /usr/lib/postgresql/*/bin); install PostgreSQL or set database.url")
}

/// The data directory, or when the `postgres` user cannot reach it (a checkout under /root),
/// one under the system temp directory named after it.
fn reachable_data_dir(wanted: &Path, user: Option<&User>) -> anyhow::Result<PathBuf> {
    let absolute = std::path::absolute(wanted)?;
    let Some(user) = user else {
        return Ok(absolute);
    };
    let blocked = absolute.ancestors().skip(1).any(|dir| {
        fs::metadata(dir)
            .is_ok_and(|m| m.uid() != user.uid.as_raw() && m.permissions().mode() & 0o001 == 0)
    });
    if !blocked {
        return Ok(absolute);
    }
    let name: String = absolute
        .to_string_lossy()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let fallback = std::env::temp_dir().join(format!("audit-exporter{name}"));
    tracing::warn!(
        wanted = %absolute.display(),
        using = %fallback.display(),
        "The postgres user cannot reach the embedded data directory; using one under the temp directory."
    );
    Ok(fallback)
}

use std::os::unix::fs::MetadataExt;

fn init(bin: &Path, data_dir: &Path, user: Option<&User>) -> anyhow::Result<()> {
    fs::create_dir_all(data_dir)
        .with_context(|| format!("Failed to create {}", data_dir.display()))?;
    fs::set_permissions(data_dir, fs::Permissions::from_mode(0o700))?;
    let mut command = Command::new(bin.join("initdb"));
    command
        .arg("-D")
        .arg(data_dir)
        .args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ])
        .stdin(Stdio::null());
    if let Some(user) = user {
        chown(data_dir, Some(user.uid), Some(user.gid))?;
        command.uid(user.uid.as_raw()).gid(user.gid.as_raw());
    }
    let output = command
        .output()
        .with_context(|| format!("Failed to run {}", bin.join("initdb").display()))?;
    if !output.status.success() {
        bail!(
            "initdb failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// The port of a server that is running and ready on `data_dir`, from its postmaster.pid.
fn running_port(data_dir: &Path) -> Option<u16> {
    let pid_file = fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    let lines: Vec<&str> = pid_file.lines().collect();
    let pid: i32 = lines.first()?.trim().parse().ok()?;
    kill(Pid::from_raw(pid), None).ok()?;
    let ready = lines.get(7).is_some_and(|status| status.trim() == "ready");
    if !ready {
        return None;
    }
    lines.get(3)?.trim().parse().ok()
}

fn free_port() -> anyhow::Result<u16> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").context("Failed to find a free port")?;
    Ok(listener.local_addr()?.port())
}
