//! The CLI's and tests' side of files: upload from a path, download to a path, list.

use std::path::Path;

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use super::client::Client;

/// A media type from the file name's extension (what apps most often send).
fn mime_of(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    match ext.as_str() {
        "txt" | "md" => "text/plain",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "mp3" => "audio/mpeg",
        "mp4" => "video/mp4",
        "json" => "application/json",
        _ => "application/octet-stream",
    }
}

impl Client {
    /// Uploads the file at `path` (streamed from disk); the node's file view.
    pub async fn upload_file(&self, path: &Path) -> Result<Value> {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .context("the file has no usable name")?
            .to_owned();
        let file = tokio::fs::File::open(path)
            .await
            .with_context(|| format!("opening {}", path.display()))?;
        let len = file.metadata().await?.len();
        // A refusal may cut the connection mid-body: ask first.
        let max = self.get("/files").await?["max_file_bytes"]
            .as_u64()
            .unwrap_or(u64::MAX);
        if len > max {
            bail!(
                "{} is {len} bytes, over the node's file size limit of {max} bytes \
                 (limits.max_file_bytes)",
                path.display()
            );
        }
        let resp = self
            .http
            .post(format!("{}/files", self.base))
            .query(&[("name", name)])
            .bearer_auth(self.token.as_str())
            .header(reqwest::header::CONTENT_TYPE, mime_of(path))
            .header(reqwest::header::CONTENT_LENGTH, len)
            .body(reqwest::Body::from(file))
            .send()
            .await
            .with_context(|| format!("calling the node API at {}", self.api))?;
        Self::json_or_error(resp).await
    }

    /// Writes file `id` (complete and verified at the node) to `out`; its size.
    pub async fn download_file(&self, id: &str, out: &Path) -> Result<u64> {
        let resp = self
            .http
            .get(format!("{}/files/{id}", self.base))
            .bearer_auth(self.token.as_str())
            .send()
            .await
            .with_context(|| format!("calling the node API at {}", self.api))?;
        if !resp.status().is_success() {
            Self::json_or_error(resp).await?;
            bail!("download refused");
        }
        let mut file = tokio::fs::File::create(out)
            .await
            .with_context(|| format!("creating {}", out.display()))?;
        let mut stream = resp.bytes_stream();
        let mut n = 0u64;
        while let Some(part) = stream.next().await {
            let part = part.context("download interrupted")?;
            n += part.len() as u64;
            file.write_all(&part).await?;
        }
        file.flush().await?;
        Ok(n)
    }

    /// `tokenim send NAME --file PATH [text]`.
    pub async fn send_files(
        &self,
        to: &str,
        text: &str,
        paths: &[std::path::PathBuf],
    ) -> Result<()> {
        let mut ids = Vec::new();
        for p in paths {
            let f = self.upload_file(p).await?;
            ids.push(f["id"].as_str().unwrap_or_default().to_owned());
        }
        let m = self
            .post(
                "/messages",
                json!({ "to": to, "body": text, "attachments": ids }),
            )
            .await?;
        println!(
            "{} {} ({} file(s))",
            m["id"].as_str().unwrap_or(""),
            m["state"].as_str().unwrap_or(""),
            ids.len()
        );
        Ok(())
    }

    /// `tokenim file list`.
    pub async fn list_files(&self) -> Result<()> {
        let list = self.get("/files").await?;
        for f in list["files"].as_array().into_iter().flatten() {
            println!(
                "{}  {:11} {:>12} / {:<12} {}",
                f["id"].as_str().unwrap_or(""),
                f["state"].as_str().unwrap_or(""),
                f["done_bytes"],
                f["size"],
                f["name"].as_str().unwrap_or("")
            );
        }
        Ok(())
    }

    /// `tokenim file get ID -o PATH`: asks the node to fetch it if it has not, waits until it
    /// is complete, then writes it.
    pub async fn get_file(&self, id: &str, out: &Path) -> Result<()> {
        let mut f = self.get(&format!("/files/{id}/status")).await?;
        if f["state"] == "offered" || f["state"] == "failed" {
            f = self
                .post(&format!("/files/{id}/download"), json!({}))
                .await?;
        }
        while f["state"] == "downloading" || f["state"] == "offered" {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            f = self.get(&format!("/files/{id}/status")).await?;
        }
        if f["state"] == "failed" {
            bail!("the download failed: {}", f["error"].as_str().unwrap_or(""));
        }
        let n = self.download_file(id, out).await?;
        println!("{n} bytes written to {}", out.display());
        Ok(())
    }
}
