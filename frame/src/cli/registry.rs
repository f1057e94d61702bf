//! `arkham registry login|logout`, and the fetch pipeline as the shard commands show it.

use crate::datadir::DataDir;
use crate::shards::fetch::{self, Fetched};
use anyhow::Context as _;
use arkham_registry::repo::ConnectOptions;
use std::io::IsTerminal as _;
use std::sync::atomic::{AtomicBool, Ordering};

/// `arkham registry` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum RegistryCommand {
    /// Store credentials for a registry in the docker config (`~/.docker/config.json`, or
    /// `$DOCKER_CONFIG/config.json`), where docker, oras and helm find them too.
    Login {
        /// The registry host, e.g. `ghcr.io` or `127.0.0.1:5000`.
        host: String,
        /// The username.
        #[arg(long, short = 'u')]
        username: String,
        /// Read the password (or token) from stdin instead of prompting.
        #[arg(long)]
        password_stdin: bool,
        /// Use plain HTTP for a registry that is not on loopback (loopback registries always
        /// use it).
        #[arg(long)]
        plain_http: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove the credentials stored for a registry by `login`.
    Logout {
        /// The registry host.
        host: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(command: RegistryCommand) -> anyhow::Result<()> {
    match command {
        RegistryCommand::Logout { host, json } => {
            let (path, removed) = arkham_registry::auth::remove_login(&host)?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "registry": host, "removed": removed, "config": path })
                );
            } else if removed {
                println!("credentials for {host} removed from {}", path.display());
            } else {
                println!("no credentials for {host} in {}", path.display());
            }
            Ok(())
        }
        RegistryCommand::Login {
            host,
            username,
            password_stdin,
            plain_http,
            json,
        } => {
            if !password_stdin && !std::io::stdin().is_terminal() {
                anyhow::bail!(
                    "no terminal to ask for the password; pipe it in with --password-stdin"
                );
            }
            let password = if password_stdin {
                let mut password = String::new();
                std::io::stdin()
                    .read_line(&mut password)
                    .context("reading the password")?;
                password
            } else {
                hidden::read_line(&format!("password for {username}@{host}: "))
                    .context("reading the password")?
            };
            let password = password.trim_end_matches(['\n', '\r']);
            if password.is_empty() {
                anyhow::bail!("the password is empty");
            }
            // Checked first, as `docker login` does: wrong credentials are never stored.
            let options = ConnectOptions {
                plain_http,
                offline: false,
            };
            let checked =
                arkham_registry::login::check(&host, &username, password, options).await?;
            let verified = checked == arkham_registry::login::LoginCheck::Verified;
            let path = arkham_registry::auth::store_login(&host, &username, password)?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "registry": host,
                        "username": username,
                        "config": path,
                        "verified": verified,
                    })
                );
            } else if verified {
                println!(
                    "{host} accepted the credentials; stored in {}",
                    path.display()
                );
            } else {
                println!(
                    "{host} asks for no credentials, so they could not be checked; stored in {}",
                    path.display()
                );
            }
            Ok(())
        }
    }
}

#[expect(
    unsafe_code,
    reason = "turning the terminal's echo off has no safe wrapper in std or our dependencies"
)]
pub(super) mod hidden {
    use std::io::{self, BufRead as _};
    use std::os::fd::AsRawFd as _;

    /// Shows `prompt` and reads one line from the terminal on stdin with its echo off (the
    /// newline still shows), restoring the terminal's settings after, whatever the read did. The
    /// prompt comes once echo is off, so nothing typed after it is echoed.
    pub fn read_line(prompt: &str) -> io::Result<String> {
        let stdin = io::stdin();
        let fd = stdin.as_raw_fd();
        // SAFETY: `termios` is a plain C struct of integers and arrays, for which all-zero bytes
        // are a valid value; `tcgetattr` overwrites it before it is read, and its result is
        // checked.
        let mut original: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: `fd` is stdin's descriptor, open for the life of the process; `original` is a
        // valid `termios`, exclusively borrowed for the call.
        if unsafe { libc::tcgetattr(fd, &mut original) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let mut quiet = original;
        quiet.c_lflag &= !libc::ECHO;
        quiet.c_lflag |= libc::ECHONL;
        // SAFETY: as above; `quiet` is a valid `termios` (a copy of the one read, with two flags
        // changed), only read by the call.
        if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) } != 0 {
            return Err(io::Error::last_os_error());
        }
        eprint!("{prompt}");
        let mut line = String::new();
        let read = stdin.lock().read_line(&mut line);
        // SAFETY: as above, with the settings read at the start.
        let restored = unsafe { libc::tcsetattr(fd, libc::TCSANOW, &original) };
        read?;
        if restored != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(line)
    }
}

/// The fetch pipeline ([`fetch::fetch_checked`]) with a progress bar on a terminal (nothing
/// otherwise, so scripts and logs stay clean) and its warnings printed.
pub async fn fetch_with_progress(
    data: &DataDir,
    request: fetch::Request<'_>,
) -> anyhow::Result<Fetched> {
    let terminal = std::io::stderr().is_terminal();
    let shown = AtomicBool::new(false);
    let name = request.shard_ref.to_string();
    let bar = |received: u64, total: u64| {
        if terminal {
            shown.store(true, Ordering::Relaxed);
            eprint!("\r{}", progress_line(&name, received, total));
        }
    };
    let fetched = fetch::fetch_checked(data, request, &bar).await;
    if shown.load(Ordering::Relaxed) {
        eprintln!("{}", if fetched.is_ok() { "" } else { " failed" });
    }
    let fetched = fetched?;
    for warning in &fetched.warnings {
        eprintln!("warning: {warning}");
    }
    Ok(fetched)
}

/// `downloading REF [#########           ]  45%  180/400 KiB`
fn progress_line(name: &str, received: u64, total: u64) -> String {
    const WIDTH: u64 = 24;
    let total = total.max(1);
    let filled = (received.min(total) * WIDTH / total) as usize;
    format!(
        "downloading {name} [{}{}] {:>3}%  {}/{} KiB",
        "#".repeat(filled),
        " ".repeat(WIDTH as usize - filled),
        received.min(total) * 100 / total,
        received.div_ceil(1024),
        total.div_ceil(1024)
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn progress_line_fills_with_the_download() {
        assert_eq!(
            super::progress_line("r", 0, 2048),
            "downloading r [                        ]   0%  0/2 KiB"
        );
        assert_eq!(
            super::progress_line("r", 1024, 2048),
            "downloading r [############            ]  50%  1/2 KiB"
        );
        assert!(super::progress_line("r", 2048, 2048).contains("[########################] 100%"));
    }
}
