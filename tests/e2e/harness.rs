//! Starting, stopping and killing real `tokenim` processes, and waiting on their events.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use serde_json::{Value, json};
use tokenim_node::Client;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub const BIN: &str = env!("CARGO_BIN_EXE_tokenim");
/// Upper bound for any single wait; tests wait on events and only fail at this limit.
pub const WAIT: Duration = Duration::from_secs(30);

pub fn tokenim(data_dir: &Path) -> std::process::Command {
    let mut c = std::process::Command::new(BIN);
    c.arg("--data-dir")
        .arg(data_dir)
        .env_remove("TOKENIM_API")
        .env_remove("TOKENIM_TOKEN");
    c
}

/// Runs a CLI command; its stdout, or an error with its stderr.
pub fn run_ok(cmd: &mut std::process::Command) -> Result<String> {
    let out = cmd.output()?;
    anyhow::ensure!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

/// A sample `name` of Prometheus text (0 when absent).
pub fn counter(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// A sample of a node's `/metrics` (0 when absent).
pub async fn metric(node: &NodeProc, name: &str) -> Result<u64> {
    Ok(counter(&node.client.get_text("/metrics").await?, name))
}

/// Runs `tokenim init` in a fresh directory under `root`.
pub fn init(root: &Path, name: &str) -> Result<PathBuf> {
    let dir = root.join(name);
    let out = tokenim(&dir).args(["init", "--name", name]).output()?;
    if !out.status.success() {
        bail!("init failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(dir)
}

#[derive(Debug)]
pub struct NodeProc {
    pub dir: PathBuf,
    pub child: Child,
    pub api: std::net::SocketAddr,
    pub address: String,
    pub client: Client,
}

impl NodeProc {
    /// Starts `tokenim run` and waits for its ready line.
    pub async fn start(dir: &Path, listen: &str) -> Result<Self> {
        Self::start_with(dir, listen, &[]).await
    }

    /// [`NodeProc::start`] with extra `run` flags (e.g. `--relay`, `--home-relay ADDR`).
    pub async fn start_with(dir: &Path, listen: &str, extra: &[String]) -> Result<Self> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(dir.join("node.log"))?;
        let mut child = Command::new(BIN)
            .arg("--data-dir")
            .arg(dir)
            .args(["run", "--api", "127.0.0.1:0", "--listen", listen])
            .args(extra)
            .env("RUST_LOG", "info,tokenim_node=debug")
            .env_remove("TOKENIM_API")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .context("spawning tokenim")?;
        let stdout = child.stdout.take().context("stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(WAIT, async {
            while let Some(line) = lines.next_line().await? {
                if let Ok(v) = serde_json::from_str::<Value>(&line)
                    && v["event"] == "ready"
                {
                    return Ok(v);
                }
            }
            bail!(
                "tokenim exited before it was ready; see {}",
                dir.join("node.log").display()
            )
        })
        .await
        .context("waiting for the ready line")??;
        let api: std::net::SocketAddr = ready["api"].as_str().context("api")?.parse()?;
        let token = std::fs::read_to_string(dir.join("api.token"))?
            .trim()
            .to_string();
        Ok(Self {
            dir: dir.to_path_buf(),
            child,
            api,
            address: ready["address"].as_str().unwrap_or_default().to_string(),
            client: Client::with(api, token),
        })
    }

    /// SIGKILL: no chance to flush anything.
    pub async fn kill(mut self) -> Result<()> {
        self.child.kill().await?;
        Ok(())
    }

    /// SIGTERM and wait for a clean exit.
    pub async fn stop(mut self) -> Result<()> {
        let pid = self.child.id().context("pid")?;
        let sent = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await?;
        if !sent.success() {
            bail!("kill -TERM {pid} failed");
        }
        let status = tokio::time::timeout(WAIT, self.child.wait()).await??;
        if !status.success() {
            bail!("tokenim exited with {status} after SIGTERM");
        }
        Ok(())
    }

    pub async fn card(&self) -> Result<String> {
        Ok(self.client.identity().await?["contact_card"]
            .as_str()
            .context("card")?
            .to_string())
    }

    /// This node's dialable address with its peer id, for `--home-relay`.
    pub async fn p2p_addr(&self) -> Result<String> {
        let id = self.client.identity().await?;
        Ok(format!(
            "{}/p2p/{}",
            self.listen_addr().await?,
            id["peer_id"].as_str().context("peer id")?
        ))
    }

    pub async fn listen_addr(&self) -> Result<String> {
        let id = self.client.identity().await?;
        id["listen_addrs"][0]
            .as_str()
            .map(str::to_string)
            .context("no listen address")
    }

    pub async fn add_contact(&self, other: &NodeProc, name: &str) -> Result<()> {
        self.client
            .post(
                "/contacts",
                json!({ "card": other.card().await?, "name": name }),
            )
            .await?;
        Ok(())
    }

    /// This node and `other` add each other as contacts: `other` under `other_name`, this one
    /// under `name`.
    pub async fn befriend(&self, name: &str, other: &NodeProc, other_name: &str) -> Result<()> {
        self.add_contact(other, other_name).await?;
        other.add_contact(self, name).await
    }

    pub async fn send(&self, to: &str, body: &str) -> Result<Value> {
        self.client
            .post("/messages", json!({ "to": to, "body": body }))
            .await
    }
}

/// Waits for the next event of `kind` matching `pred` on an event stream. `message` events
/// only match incoming messages (a node also announces what its own apps send).
pub async fn wait_event(
    events: &mut (impl futures::Stream<Item = Result<Value>> + Unpin),
    kind: &str,
    mut pred: impl FnMut(&Value) -> bool,
) -> Result<Value> {
    tokio::time::timeout(WAIT, async {
        while let Some(ev) = events.next().await {
            let ev = ev?;
            let own = ev["type"] == "message" && ev["message"]["direction"] == "outgoing";
            if ev["type"] == kind && !own && pred(&ev) {
                return Ok(ev);
            }
        }
        bail!("event stream ended")
    })
    .await
    .with_context(|| format!("no matching {kind} event within {WAIT:?}"))?
}

/// Two initialised nodes that know each other as "alice" and "bob".
pub async fn pair(root: &Path) -> Result<(NodeProc, NodeProc)> {
    let a = NodeProc::start(&init(root, "alice")?, "/ip4/127.0.0.1/tcp/0").await?;
    let b = NodeProc::start(&init(root, "bob")?, "/ip4/127.0.0.1/tcp/0").await?;
    a.add_contact(&b, "bob").await?;
    b.add_contact(&a, "alice").await?;
    Ok((a, b))
}
