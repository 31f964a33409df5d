//! The CLI's thin-client commands against a running node.

use anyhow::Result;

use crate::harness::{NodeProc, init, run_ok, tokenim, wait_event};

#[tokio::test]
async fn cli_commands_add_a_contact_send_and_list() -> Result<()> {
    let root = tempfile::tempdir()?;
    let alice = NodeProc::start(&init(root.path(), "alice")?, "/ip4/127.0.0.1/tcp/0").await?;
    let bob = NodeProc::start(&init(root.path(), "bob")?, "/ip4/127.0.0.1/tcp/0").await?;

    let id = run_ok(tokenim(&bob.dir).arg("id"))?;
    assert!(id.contains(&bob.address), "{id}");
    let card = id
        .lines()
        .find_map(|l| l.strip_prefix("contact card: "))
        .expect("card line")
        .trim()
        .to_string();
    run_ok(tokenim(&alice.dir).args(["contact", "add", &card, "--name", "bob"]))?;
    let contacts = run_ok(tokenim(&alice.dir).args(["contact", "list"]))?;
    assert!(
        contacts.contains(&bob.address) && contacts.contains("bob"),
        "{contacts}"
    );
    // Bob adds Alice too: to him she would otherwise be a stranger (a message request).
    let alice_card = alice.card().await?;
    run_ok(tokenim(&bob.dir).args(["contact", "add", &alice_card, "--name", "alice"]))?;

    let mut bob_events = bob.client.events().await?;
    run_ok(tokenim(&alice.dir).args(["send", "bob", "sent from the CLI"]))?;
    wait_event(&mut bob_events, "message", |e| {
        e["message"]["body"] == "sent from the CLI"
    })
    .await?;
    let inbox = run_ok(tokenim(&bob.dir).arg("inbox"))?;
    assert!(inbox.contains("sent from the CLI"), "{inbox}");

    let out = tokenim(&alice.dir).args(["send", "nobody", "x"]).output()?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown_contact"));
    alice.stop().await?;
    bob.stop().await?;
    Ok(())
}

/// The CLI's token goes to the node on loopback and nowhere else: a proxy from the environment
/// is not used, and the token is not accepted as an argument (other users see arguments in the
/// process list).
#[tokio::test]
async fn the_cli_token_stays_off_proxies_and_the_command_line() -> Result<()> {
    let root = tempfile::tempdir()?;
    let alice = NodeProc::start(&init(root.path(), "alice")?, "/ip4/127.0.0.1/tcp/0").await?;
    let proxy = std::net::TcpListener::bind("127.0.0.1:0")?;
    proxy.set_nonblocking(true)?;
    let proxy_url = format!("http://{}", proxy.local_addr()?);
    let mut cli = tokio::process::Command::from(tokenim(&alice.dir));
    cli.arg("id")
        .env("HTTP_PROXY", &proxy_url)
        .env("http_proxy", &proxy_url)
        .env("ALL_PROXY", &proxy_url)
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .kill_on_drop(true);
    // A CLI that went through the proxy would wait on it forever (it never answers).
    let out = tokio::time::timeout(crate::harness::WAIT, cli.output())
        .await
        .map_err(|_| anyhow::anyhow!("the CLI hung on the proxy"))??;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        matches!(proxy.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the CLI connected to the proxy"
    );
    let token = std::fs::read_to_string(alice.dir.join("api.token"))?;
    let out = tokenim(&alice.dir)
        .args(["id", "--token", token.trim()])
        .output()?;
    assert!(
        !out.status.success(),
        "a token was taken from the command line"
    );
    // A token file works.
    let out = tokenim(&alice.dir)
        .args(["id", "--token-file"])
        .arg(alice.dir.join("api.token"))
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    alice.stop().await?;
    Ok(())
}
