//! Thin client of a node's local API, used by the CLI commands and the demo.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::config;

#[derive(Clone)]
pub struct Client {
    pub(super) http: reqwest::Client,
    pub(super) base: String,
    pub(super) api: SocketAddr,
    /// Wiped from memory with the client (reqwest's copies in request headers are not).
    pub(super) token: Zeroizing<String>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("api", &self.api)
            .field("token", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl Client {
    /// The node's API at `api` with `token`, or as the data directory says where they are
    /// missing (`api.addr`, `api.token`).
    pub fn new(data_dir: &Path, api: Option<SocketAddr>, token: Option<String>) -> Result<Self> {
        let api = match api {
            Some(a) => a,
            None => {
                let path = data_dir.join(config::API_ADDR_FILE);
                std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {} (is the node running?)", path.display()))?
                    .trim()
                    .parse()
                    .with_context(|| format!("parsing {}", path.display()))?
            }
        };
        let token = match token {
            Some(t) => t,
            None => {
                let path = data_dir.join(config::TOKEN_FILE);
                let text = Zeroizing::new(
                    std::fs::read_to_string(&path)
                        .with_context(|| format!("reading {}", path.display()))?,
                );
                text.trim().to_string()
            }
        };
        Ok(Self::with(api, token))
    }

    pub fn with(api: SocketAddr, token: String) -> Self {
        Self {
            // The API is on loopback: a proxy from the environment must never see the token.
            http: reqwest::Client::builder()
                .no_proxy()
                .build()
                .unwrap_or_default(),
            base: format!("http://{api}/v1"),
            api,
            token: Zeroizing::new(token),
        }
    }

    pub(super) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        self.call_with_query(method, path, &[], body).await
    }

    pub(super) async fn call_with_query(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Value>,
    ) -> Result<Value> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .query(query)
            .bearer_auth(self.token.as_str());
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("calling the node API at {}", self.api))?;
        Self::json_or_error(resp).await
    }

    /// The JSON of a success; the API's error (status, code, message) otherwise.
    pub(super) async fn json_or_error(resp: reqwest::Response) -> Result<Value> {
        let status = resp.status();
        let value: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let err = &value["error"];
            bail!(
                "{} ({}): {}",
                status,
                err["code"].as_str().unwrap_or("?"),
                err["message"].as_str().unwrap_or("")
            );
        }
        Ok(value)
    }

    /// A non-JSON resource, e.g. Prometheus text from `/metrics`.
    pub async fn get_text(&self, path: &str) -> Result<String> {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(self.token.as_str())
            .send()
            .await
            .with_context(|| format!("calling the node API at {}", self.api))?;
        let status = resp.status();
        let text = resp.text().await?;
        if !status.is_success() {
            bail!("{status}: {text}");
        }
        Ok(text)
    }

    pub async fn get(&self, path: &str) -> Result<Value> {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Result<Value> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Result<Value> {
        self.call(reqwest::Method::PUT, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Result<Value> {
        self.call(reqwest::Method::PATCH, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Result<Value> {
        self.call(reqwest::Method::DELETE, path, None).await
    }

    pub async fn identity(&self) -> Result<Value> {
        self.get("/identity").await
    }

    pub async fn print_identity(&self) -> Result<()> {
        let id = self.identity().await?;
        println!("address:      {}", id["address"].as_str().unwrap_or(""));
        println!("peer id:      {}", id["peer_id"].as_str().unwrap_or(""));
        println!("mailbox:      {}", id["mailbox"].as_str().unwrap_or(""));
        println!(
            "contact card: {}",
            id["contact_card"].as_str().unwrap_or("")
        );
        Ok(())
    }

    pub async fn add_contact(&self, card: &str, name: Option<&str>) -> Result<()> {
        let c = self
            .post("/contacts", json!({ "card": card, "name": name }))
            .await?;
        println!(
            "added {} {}",
            c["address"].as_str().unwrap_or(""),
            c["name"].as_str().unwrap_or("")
        );
        Ok(())
    }

    pub async fn list_contacts(&self) -> Result<()> {
        let list = self.get("/contacts").await?;
        for c in list["contacts"].as_array().into_iter().flatten() {
            println!(
                "{}  {}{}",
                c["address"].as_str().unwrap_or(""),
                c["name"].as_str().unwrap_or("-"),
                if c["blocked"] == true {
                    "  (blocked)"
                } else {
                    ""
                }
            );
        }
        Ok(())
    }

    pub async fn remove_contact(&self, address: &str) -> Result<()> {
        self.delete(&format!("/contacts/{address}")).await?;
        println!("removed {address}");
        Ok(())
    }

    pub async fn block(&self, address: &str) -> Result<()> {
        self.post(&format!("/contacts/{address}/block"), json!({}))
            .await?;
        println!("blocked {address}");
        Ok(())
    }

    pub async fn unblock(&self, address: &str) -> Result<()> {
        self.delete(&format!("/contacts/{address}/block")).await?;
        println!("unblocked {address}");
        Ok(())
    }

    pub async fn list_requests(&self) -> Result<()> {
        let list = self.get("/requests").await?;
        for r in list["requests"].as_array().into_iter().flatten() {
            println!(
                "{}  {}  {} message(s)",
                r["address"].as_str().unwrap_or(""),
                r["display_name"].as_str().unwrap_or("-"),
                r["messages"]
            );
        }
        Ok(())
    }

    pub async fn accept_request(&self, address: &str, name: Option<&str>) -> Result<()> {
        let c = self
            .post(
                &format!("/requests/{address}/accept"),
                json!({ "name": name }),
            )
            .await?;
        println!(
            "accepted {} {}",
            c["address"].as_str().unwrap_or(""),
            c["name"].as_str().unwrap_or("")
        );
        Ok(())
    }

    pub async fn delete_request(&self, address: &str) -> Result<()> {
        self.delete(&format!("/requests/{address}")).await?;
        println!("deleted the request of {address}");
        Ok(())
    }

    pub async fn send(&self, to: &str, text: &str) -> Result<()> {
        let m = self
            .post("/messages", json!({ "to": to, "body": text }))
            .await?;
        println!(
            "{} {}",
            m["id"].as_str().unwrap_or(""),
            m["state"].as_str().unwrap_or("")
        );
        Ok(())
    }

    pub async fn inbox(&self, peer: Option<&str>, limit: usize) -> Result<()> {
        let mut query = vec![("limit", limit.to_string())];
        if let Some(p) = peer {
            query.push(("peer", p.to_string()));
        }
        let page = self
            .call_with_query(reqwest::Method::GET, "/messages", &query, None)
            .await?;
        for m in page["messages"].as_array().into_iter().flatten() {
            let arrow = if m["direction"] == "outgoing" {
                "→"
            } else {
                "←"
            };
            let who = if m["direction"] == "outgoing" {
                &m["to"]
            } else {
                &m["from"]
            };
            println!(
                "{} {arrow} {} [{}] {}",
                m["id"].as_str().unwrap_or(""),
                short(who.as_str().unwrap_or("")),
                m["state"].as_str().unwrap_or(""),
                m["body"].as_str().unwrap_or("")
            );
        }
        Ok(())
    }

    pub async fn link_device(
        &self,
        ttl_secs: u64,
        history_days: Option<u32>,
        history_messages: Option<u32>,
    ) -> Result<()> {
        let body = json!({
            "ttl_secs": ttl_secs,
            "history_days": history_days,
            "history_messages": history_messages,
        });
        let link = self.post("/devices/link", body).await?;
        println!("{}", link["uri"].as_str().unwrap_or(""));
        Ok(())
    }

    pub async fn list_devices(&self) -> Result<()> {
        let list = self.get("/devices").await?;
        println!(
            "account {} (device list version {})",
            list["account"].as_str().unwrap_or(""),
            list["version"]
        );
        for d in list["devices"].as_array().into_iter().flatten() {
            println!(
                "{}  {}{}{}",
                d["id"].as_str().unwrap_or(""),
                d["name"].as_str().unwrap_or(""),
                if d["primary"] == true {
                    "  (primary)"
                } else {
                    ""
                },
                if d["this_device"] == true {
                    "  (this one)"
                } else {
                    ""
                },
            );
        }
        Ok(())
    }

    pub async fn revoke_device(&self, id: &str) -> Result<()> {
        let list = self.delete(&format!("/devices/{id}")).await?;
        println!("revoked; device list version {}", list["version"]);
        Ok(())
    }

    /// Marks an incoming message read (its sender gets a read receipt).
    pub async fn mark_read(&self, message: &str) -> Result<()> {
        let m = self
            .post(&format!("/messages/{message}/read"), json!({}))
            .await?;
        println!(
            "{} {}",
            m["id"].as_str().unwrap_or(""),
            m["state"].as_str().unwrap_or("")
        );
        Ok(())
    }

    pub async fn create_token(&self, name: &str, scopes: &[String]) -> Result<()> {
        let t = self
            .post("/tokens", json!({ "name": name, "scopes": scopes }))
            .await?;
        println!("{}", serde_json::to_string_pretty(&t)?);
        Ok(())
    }

    pub async fn list_tokens(&self) -> Result<()> {
        println!(
            "{}",
            serde_json::to_string_pretty(&self.get("/tokens").await?)?
        );
        Ok(())
    }

    pub async fn revoke_token(&self, id: &str) -> Result<()> {
        self.delete(&format!("/tokens/{id}")).await?;
        println!("revoked {id}");
        Ok(())
    }

    /// Opens the event WebSocket, authenticated by header.
    pub async fn events(
        &self,
    ) -> Result<impl futures::Stream<Item = Result<Value>> + Unpin + use<>> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req = format!("ws://{}/v1/events", self.api).into_client_request()?;
        req.headers_mut().insert(
            "authorization",
            Zeroizing::new(format!("Bearer {}", *self.token)).parse()?,
        );
        let (mut ws, _) = tokio_tungstenite::connect_async(req)
            .await
            .context("opening /v1/events")?;
        // The node subscribes before it says auth_ok: after it, no event can be missed.
        match ws.next().await {
            Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t))) if t.contains("auth_ok") => {
            }
            other => bail!("/v1/events did not start with auth_ok: {other:?}"),
        }
        Ok(Box::pin(ws.filter_map(|m| async move {
            match m {
                Ok(tokio_tungstenite::tungstenite::Message::Text(t)) => {
                    Some(serde_json::from_str::<Value>(&t).map_err(anyhow::Error::from))
                }
                Ok(_) => None,
                Err(e) => Some(Err(e.into())),
            }
        })))
    }

    pub async fn watch(&self) -> Result<()> {
        let mut events = self.events().await?;
        while let Some(ev) = events.next().await {
            println!("{}", ev?);
        }
        Ok(())
    }
}

pub fn short(address: &str) -> String {
    if address.len() > 16 {
        format!("{}…{}", &address[..10], &address[address.len() - 4..])
    } else {
        address.to_string()
    }
}
