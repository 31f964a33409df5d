//! The `tokenim` binary.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Parser;
use tokenim_api::NodeService as _;
use tokenim_node::Client;
use tokenim_node::config::{self, Config};

use cli::{
    Cli, ClientArgs, Command, ContactCmd, DeviceCmd, FileCmd, GroupCmd, RequestCmd, RunArgs,
    TokenCmd,
};

mod cli;
mod demo;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<()> {
    let cli = Cli::parse();
    let data_dir = cli
        .data_dir
        .clone()
        .unwrap_or_else(config::default_data_dir);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(dispatch(cli.command, data_dir))
}

async fn dispatch(command: Command, data_dir: PathBuf) -> Result<()> {
    match command {
        Command::Init {
            name,
            link,
            device_name,
        } => {
            let report = tokenim_node::init(&data_dir, name.as_deref())?;
            println!("initialised {}", data_dir.display());
            match link {
                None => println!("address: {}", report.address),
                Some(uri) => join_account(&data_dir, uri, device_name).await?,
            }
            println!("api token: {}", report.token_path.display());
            Ok(())
        }
        Command::Device(DeviceCmd::Link {
            client,
            ttl,
            history_days,
            history_messages,
        }) => {
            connect(&data_dir, &client)?
                .link_device(ttl, history_days, history_messages)
                .await
        }
        Command::Device(DeviceCmd::List(c)) => connect(&data_dir, &c)?.list_devices().await,
        Command::Device(DeviceCmd::Revoke { client, id }) => {
            connect(&data_dir, &client)?.revoke_device(&id).await
        }
        Command::Run(args) => run(&data_dir, args).await,
        Command::Demo { messages } => {
            // Kademlia warns that a lone node has no peers to bootstrap from: true, and not news here.
            tokenim_node::logging::init("warn,libp2p_kad=error", "text");
            demo::run(messages).await
        }
        Command::Id(c) => connect(&data_dir, &c)?.print_identity().await,
        Command::Contact(ContactCmd::Add { client, card, name }) => {
            connect(&data_dir, &client)?
                .add_contact(&card, name.as_deref())
                .await
        }
        Command::Contact(ContactCmd::List(c)) => connect(&data_dir, &c)?.list_contacts().await,
        Command::Contact(ContactCmd::Remove { client, address }) => {
            connect(&data_dir, &client)?.remove_contact(&address).await
        }
        Command::Contact(ContactCmd::Block { client, address })
        | Command::Requests(RequestCmd::Block { client, address }) => {
            connect(&data_dir, &client)?.block(&address).await
        }
        Command::Contact(ContactCmd::Unblock { client, address }) => {
            connect(&data_dir, &client)?.unblock(&address).await
        }
        Command::Group(GroupCmd::Create {
            client,
            name,
            members,
        }) => {
            connect(&data_dir, &client)?
                .create_group(&name, &members)
                .await
        }
        Command::Group(GroupCmd::List(c)) => connect(&data_dir, &c)?.list_groups().await,
        Command::Group(GroupCmd::Show { client, id }) => {
            connect(&data_dir, &client)?.show_group(&id).await
        }
        Command::Group(GroupCmd::Add { client, id, member }) => {
            connect(&data_dir, &client)?.add_member(&id, &member).await
        }
        Command::Group(GroupCmd::Remove {
            client,
            id,
            address,
        }) => {
            connect(&data_dir, &client)?
                .remove_member(&id, &address)
                .await
        }
        Command::Group(GroupCmd::Role {
            client,
            id,
            address,
            role,
        }) => {
            connect(&data_dir, &client)?
                .set_role(&id, &address, &role)
                .await
        }
        Command::Group(GroupCmd::Rename { client, id, name }) => {
            connect(&data_dir, &client)?.rename_group(&id, &name).await
        }
        Command::Group(GroupCmd::Invite {
            client,
            id,
            expires_in,
            max_uses,
        }) => {
            let body = serde_json::json!({ "expires_in_secs": expires_in, "max_uses": max_uses });
            let link = connect(&data_dir, &client)?
                .post(&format!("/groups/{id}/invites"), body)
                .await?;
            println!("{}", link["uri"].as_str().unwrap_or(""));
            Ok(())
        }
        Command::Group(GroupCmd::Join { client, invite }) => {
            let joined = connect(&data_dir, &client)?
                .post("/groups/join", serde_json::json!({ "invite": invite }))
                .await?;
            println!(
                "join sent for group {}",
                joined["group"].as_str().unwrap_or("")
            );
            Ok(())
        }
        Command::Group(GroupCmd::Leave { client, id }) => {
            connect(&data_dir, &client)?.leave_group(&id).await
        }
        Command::Group(GroupCmd::Send { client, id, text }) => {
            connect(&data_dir, &client)?.send_group(&id, &text).await
        }
        Command::Group(GroupCmd::Receipts { client, message }) => {
            connect(&data_dir, &client)?.group_receipts(&message).await
        }
        Command::Read { client, message } => connect(&data_dir, &client)?.mark_read(&message).await,
        Command::Group(GroupCmd::Inbox { client, id, limit }) => {
            connect(&data_dir, &client)?.group_inbox(&id, limit).await
        }
        Command::Requests(RequestCmd::List(c)) => connect(&data_dir, &c)?.list_requests().await,
        Command::Requests(RequestCmd::Accept {
            client,
            address,
            name,
        }) => {
            connect(&data_dir, &client)?
                .accept_request(&address, name.as_deref())
                .await
        }
        Command::Requests(RequestCmd::Delete { client, address }) => {
            connect(&data_dir, &client)?.delete_request(&address).await
        }
        Command::Send {
            client,
            to,
            text,
            files,
        } => {
            let c = connect(&data_dir, &client)?;
            if files.is_empty() {
                c.send(&to, &text).await
            } else {
                c.send_files(&to, &text, &files).await
            }
        }
        Command::File(FileCmd::List(client)) => connect(&data_dir, &client)?.list_files().await,
        Command::File(FileCmd::Get { client, id, output }) => {
            connect(&data_dir, &client)?.get_file(&id, &output).await
        }
        Command::Inbox {
            client,
            peer,
            limit,
        } => {
            connect(&data_dir, &client)?
                .inbox(peer.as_deref(), limit)
                .await
        }
        Command::Watch(c) => connect(&data_dir, &c)?.watch().await,
        Command::Token(TokenCmd::Create {
            client,
            name,
            scopes,
        }) => {
            connect(&data_dir, &client)?
                .create_token(&name, &scopes)
                .await
        }
        Command::Token(TokenCmd::List(c)) => connect(&data_dir, &c)?.list_tokens().await,
        Command::Token(TokenCmd::Revoke { client, id }) => {
            connect(&data_dir, &client)?.revoke_token(&id).await
        }
    }
}

/// `init --link`: starts the new node just long enough to link it to the account.
async fn join_account(data_dir: &Path, uri: String, name: String) -> Result<()> {
    let mut cfg = Config::load(data_dir)?;
    // The configured network addresses: the card the account keeps for this device names them.
    cfg.api.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let node = tokenim_node::start(data_dir, cfg).await?;
    let joined = node.service.join_account(uri, name).await;
    node.shutdown().await;
    let list = joined.map_err(|e| {
        anyhow::anyhow!(
            "linking failed: {e} (this node is initialised as a device of its own; \
             `POST /v1/devices/join` can link it later)"
        )
    })?;
    println!("address: {} (a device of this account)", list.account);
    println!("devices: {}", list.devices.len());
    Ok(())
}

async fn run(data_dir: &Path, args: RunArgs) -> Result<()> {
    let mut cfg = Config::load(data_dir)?;
    if let Some(api) = args.api {
        cfg.api.listen = api;
    }
    if !args.listen.is_empty() {
        cfg.network.listen = args.listen;
    }
    if !args.bootstrap.is_empty() {
        cfg.network.bootstrap = args.bootstrap;
    }
    if !args.home_relay.is_empty() {
        cfg.network.home_relays = args.home_relay;
    }
    if !args.external_addr.is_empty() {
        cfg.network.external_addrs = args.external_addr;
    }
    cfg.network.mdns |= args.mdns;
    cfg.relay.enabled |= args.relay;
    if let Some(f) = args.log_format {
        cfg.log.format = f;
    }
    tokenim_node::logging::init(&cfg.log.level, &cfg.log.format);
    let node = tokenim_node::start(data_dir, cfg)
        .await
        .with_context(|| format!("starting the node in {}", data_dir.display()))?;
    // Handlers first: a SIGTERM right after the ready line must still shut down cleanly.
    let signals = shutdown_signals()?;
    // One machine-readable line on stdout says the node is ready (scripts and tests wait on it).
    let ready = serde_json::json!({
        "event": "ready",
        "api": node.api_addr.map(|a| a.to_string()),
        "peer_id": node.peer_id.to_string(),
        "address": node.address.to_string(),
    });
    println!("{ready}");
    signals.await?;
    tracing::info!("shutting down");
    node.shutdown().await;
    Ok(())
}

/// The client of the running node's API the flags or the data directory name.
fn connect(data_dir: &Path, args: &ClientArgs) -> Result<Client> {
    let token = args.token().context("reading the token file")?;
    Client::new(data_dir, args.api, token)
}

/// Resolves on SIGINT or SIGTERM; both handlers are installed when this returns.
fn shutdown_signals() -> Result<impl std::future::Future<Output = Result<()>>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        Ok(())
    })
}
