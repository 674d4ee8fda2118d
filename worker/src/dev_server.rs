//! `temporal server start-dev`, as the integration tests and `orderflow load --spawn` start it:
//! one command line (every search attribute of
//! [`orderflow_workflows::search_attributes::REGISTRATION`] registered), one way to find the
//! `temporal` executable, one wait for its port. Who supervises the process stays with the
//! caller: the tests put it under a watchdog that outlives a killed test process, the load
//! generator kills it when its run ends.
//!
//! It lives in this library because both the tests and the load generator already depend on it
//! (and neither on the other).

use anyhow::Context;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

/// How to start one dev server. [`DevServer::on`] gives the plain one: headless, in memory, on
/// 127.0.0.1.
#[derive(Debug, Clone)]
pub struct DevServer {
    pub port: u16,
    /// The Web UI's port; `None`: headless.
    pub ui_port: Option<u16>,
    /// A persistent SQLite file (it survives a restart); `None`: in memory.
    pub db_file: Option<PathBuf>,
    /// SQLite in WAL mode with `synchronous=normal`: the default journal mode halves the
    /// server's throughput.
    pub wal: bool,
}

impl DevServer {
    pub fn on(port: u16) -> DevServer {
        DevServer {
            port,
            ui_port: None,
            db_file: None,
            wal: false,
        }
    }

    pub fn with_ui(self, ui_port: u16) -> DevServer {
        DevServer {
            ui_port: Some(ui_port),
            ..self
        }
    }

    pub fn persistent(self, db_file: PathBuf) -> DevServer {
        DevServer {
            db_file: Some(db_file),
            ..self
        }
    }

    pub fn wal(self) -> DevServer {
        DevServer { wal: true, ..self }
    }

    /// The frontend's address, for clients and workers.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The arguments of `temporal` (after the executable).
    pub fn args(&self) -> Vec<String> {
        let mut args: Vec<String> = ["server", "start-dev", "--ip", "127.0.0.1"]
            .map(str::to_owned)
            .to_vec();
        args.extend(["--port".to_owned(), self.port.to_string()]);
        match self.ui_port {
            Some(ui) => args.extend(["--ui-port".to_owned(), ui.to_string()]),
            None => args.push("--headless".to_owned()),
        }
        args.extend(["--log-level", "error"].map(str::to_owned));
        if self.wal {
            for pragma in ["journal_mode=wal", "synchronous=normal"] {
                args.extend(["--sqlite-pragma".to_owned(), pragma.to_owned()]);
            }
        }
        if let Some(file) = &self.db_file {
            args.extend(["--db-filename".to_owned(), file.display().to_string()]);
        }
        for (name, kind) in orderflow_workflows::search_attributes::REGISTRATION {
            args.extend(["--search-attribute".to_owned(), format!("{name}={kind}")]);
        }
        args
    }

    /// The command that starts it (stdin closed, output discarded: redirect it to keep a log).
    pub fn command(&self) -> Command {
        let mut command = Command::new(temporal_bin());
        command
            .args(self.args())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        command
    }

    /// Waits until the frontend listens (up to `timeout`).
    pub async fn wait_listening(&self, timeout: Duration) -> anyhow::Result<()> {
        wait_listening(self.port, timeout).await
    }
}

/// Waits until something listens on 127.0.0.1:`port` (up to `timeout`).
pub async fn wait_listening(port: u16, timeout: Duration) -> anyhow::Result<()> {
    tokio::time::timeout(timeout, async {
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .with_context(|| format!("nothing listens on 127.0.0.1:{port} after {timeout:?}"))
}

/// The `temporal` executable: `ORDERFLOW_TEMPORAL_BIN`, `.venv/bin/temporal` here or in the
/// workspace this was built from (scripts/lib.sh installs it there), or `temporal` on the PATH.
pub fn temporal_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("ORDERFLOW_TEMPORAL_BIN") {
        return bin.into();
    }
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    [PathBuf::from("."), workspace]
        .into_iter()
        .map(|dir| dir.join(".venv/bin/temporal"))
        .find(|venv| venv.exists())
        .unwrap_or_else(|| "temporal".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_says_what_was_asked() {
        let plain = DevServer::on(7233).args();
        assert!(plain.windows(2).any(|w| w == ["--port", "7233"]));
        assert!(plain.contains(&"--headless".to_owned()));
        assert!(
            !plain
                .iter()
                .any(|a| a == "--db-filename" || a == "--sqlite-pragma")
        );
        let attributes = plain.iter().filter(|a| *a == "--search-attribute").count();
        assert_eq!(
            attributes,
            orderflow_workflows::search_attributes::REGISTRATION.len()
        );

        let full = DevServer::on(7233)
            .with_ui(8233)
            .persistent("/tmp/t.db".into())
            .wal()
            .args();
        assert!(full.windows(2).any(|w| w == ["--ui-port", "8233"]));
        assert!(!full.contains(&"--headless".to_owned()));
        assert!(full.windows(2).any(|w| w == ["--db-filename", "/tmp/t.db"]));
        assert!(
            full.windows(2)
                .any(|w| w == ["--sqlite-pragma", "journal_mode=wal"])
        );
    }
}
