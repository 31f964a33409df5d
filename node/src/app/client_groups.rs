//! The CLI's group verbs over the local API.

use anyhow::Result;
use serde_json::{Value, json};

use super::client::{Client, short};

impl Client {
    pub async fn create_group(&self, name: &str, members: &[String]) -> Result<()> {
        let g = self
            .post("/groups", json!({ "name": name, "members": members }))
            .await?;
        print_group(&g);
        Ok(())
    }

    pub async fn list_groups(&self) -> Result<()> {
        let list = self.get("/groups").await?;
        for g in list["groups"].as_array().into_iter().flatten() {
            println!(
                "{}  {}  ({} members)",
                g["id"].as_str().unwrap_or(""),
                g["name"].as_str().unwrap_or(""),
                g["members"].as_array().map_or(0, Vec::len)
            );
        }
        Ok(())
    }

    pub async fn show_group(&self, id: &str) -> Result<()> {
        print_group(&self.get(&format!("/groups/{id}")).await?);
        Ok(())
    }

    pub async fn add_member(&self, id: &str, member: &str) -> Result<()> {
        let body = json!({ "member": member });
        print_group(&self.post(&format!("/groups/{id}/members"), body).await?);
        Ok(())
    }

    pub async fn remove_member(&self, id: &str, address: &str) -> Result<()> {
        print_group(
            &self
                .delete(&format!("/groups/{id}/members/{address}"))
                .await?,
        );
        Ok(())
    }

    pub async fn set_role(&self, id: &str, address: &str, role: &str) -> Result<()> {
        let path = format!("/groups/{id}/members/{address}/role");
        print_group(&self.put(&path, json!({ "role": role })).await?);
        Ok(())
    }

    pub async fn rename_group(&self, id: &str, name: &str) -> Result<()> {
        print_group(
            &self
                .patch(&format!("/groups/{id}"), json!({ "name": name }))
                .await?,
        );
        Ok(())
    }

    pub async fn leave_group(&self, id: &str) -> Result<()> {
        self.call(reqwest::Method::POST, &format!("/groups/{id}/leave"), None)
            .await?;
        println!("done");
        Ok(())
    }

    pub async fn send_group(&self, id: &str, text: &str) -> Result<()> {
        let m = self
            .post(&format!("/groups/{id}/messages"), json!({ "body": text }))
            .await?;
        println!(
            "{} {}",
            m["id"].as_str().unwrap_or(""),
            m["state"].as_str().unwrap_or("")
        );
        Ok(())
    }

    pub async fn group_inbox(&self, id: &str, limit: usize) -> Result<()> {
        let page = self
            .call_with_query(
                reqwest::Method::GET,
                &format!("/groups/{id}/messages"),
                &[("limit", limit.to_string())],
                None,
            )
            .await?;
        for m in page["messages"].as_array().into_iter().flatten() {
            let outgoing = m["direction"] == "outgoing";
            // What was sent shows how far it got: reached, delivered to, read by members.
            let state = match (outgoing, &m["reached"], &m["delivered_to"], &m["read_by"]) {
                (true, Value::Number(r), Value::Number(d), Value::Number(n)) => format!(
                    "{}: reached {r}, delivered {d}, read {n}",
                    m["state"].as_str().unwrap_or("")
                ),
                _ => m["state"].as_str().unwrap_or("").to_owned(),
            };
            println!(
                "{} {} {} [{state}] {}",
                m["id"].as_str().unwrap_or(""),
                if outgoing { "→" } else { "←" },
                short(m["from"].as_str().unwrap_or("")),
                m["body"].as_str().unwrap_or("")
            );
        }
        Ok(())
    }

    /// Each member's state of a group message this node sent.
    pub async fn group_receipts(&self, message: &str) -> Result<()> {
        let list = self.get(&format!("/messages/{message}/members")).await?;
        for m in list["members"].as_array().into_iter().flatten() {
            println!(
                "{} {}",
                m["address"].as_str().unwrap_or(""),
                m["state"].as_str().unwrap_or("")
            );
        }
        Ok(())
    }
}

fn print_group(g: &Value) {
    println!(
        "{}  {}  (you: {})",
        g["id"].as_str().unwrap_or(""),
        g["name"].as_str().unwrap_or(""),
        g["role"].as_str().unwrap_or("")
    );
    for m in g["members"].as_array().into_iter().flatten() {
        println!(
            "  {}  {}  {}",
            m["address"].as_str().unwrap_or(""),
            m["role"].as_str().unwrap_or(""),
            m["name"].as_str().unwrap_or("-")
        );
    }
}
