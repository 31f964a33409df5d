//! Command-line interface. `init`, `run` and `demo` run node code; the other commands are thin
//! clients of the local HTTP API of a running node.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "tokenim",
    version,
    about = "TokenIM: federated peer-to-peer end-to-end encrypted messaging node"
)]
pub struct Cli {
    /// Data directory (identity, config, database, API token).
    #[arg(long, global = true, env = "TOKENIM_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create an identity, a config file and a first API token (DIR/api.token).
    Init {
        /// Name shown to your contacts.
        #[arg(long)]
        name: Option<String>,
        /// Join an existing account as a new device: the `tokenim-link:` URI its first device
        /// shows (`tokenim device link`).
        #[arg(long, value_name = "URI")]
        link: Option<String>,
        /// This device's name in the account's device list (with --link).
        #[arg(long, default_value = "device")]
        device_name: String,
    },
    /// Run the node.
    Run(RunArgs),
    /// Start a small local network of nodes on loopback and show messages flowing.
    Demo {
        /// Messages each side sends.
        #[arg(long, default_value_t = 3)]
        messages: usize,
    },
    /// Show this node's address and contact card.
    Id(ClientArgs),
    /// Manage contacts.
    #[command(subcommand)]
    Contact(ContactCmd),
    /// Send a text message to a contact (address or name).
    Send {
        #[command(flatten)]
        client: ClientArgs,
        to: String,
        /// The text (may be left out when files are attached).
        #[arg(default_value = "")]
        text: String,
        /// Attach a file (repeat for several, at most 8).
        #[arg(long = "file", value_name = "PATH")]
        files: Vec<std::path::PathBuf>,
    },
    /// Files sent and received: list them, save one.
    #[command(subcommand)]
    File(FileCmd),
    /// List received and sent messages, newest first.
    Inbox {
        #[command(flatten)]
        client: ClientArgs,
        /// Only the conversation with this address or contact name.
        #[arg(long)]
        peer: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Mark a received message read; its sender (a contact, or the group member who sent it)
    /// gets a read receipt.
    Read {
        #[command(flatten)]
        client: ClientArgs,
        /// The message id (`inbox` prints it first on each line).
        message: String,
    },
    /// Print events (new messages, delivery states) as JSON lines until interrupted.
    Watch(ClientArgs),
    /// This account's devices: link a new one, list, revoke.
    #[command(subcommand)]
    Device(DeviceCmd),
    /// Message requests: strangers who wrote first. Nothing is sent back to them until you
    /// accept.
    #[command(subcommand)]
    Requests(RequestCmd),
    /// Group conversations.
    #[command(subcommand)]
    Group(GroupCmd),
    /// Manage API tokens.
    #[command(subcommand)]
    Token(TokenCmd),
}

#[derive(Debug, Subcommand)]
pub enum GroupCmd {
    /// Create a group with contacts (addresses or names) as members; you are its owner.
    Create {
        #[command(flatten)]
        client: ClientArgs,
        name: String,
        /// A member (repeatable).
        #[arg(long = "member", required = true)]
        members: Vec<String>,
    },
    /// List your groups.
    List(ClientArgs),
    /// Show a group's members and roles.
    Show {
        #[command(flatten)]
        client: ClientArgs,
        id: String,
    },
    /// Add a contact to a group (admins and the owner).
    Add {
        #[command(flatten)]
        client: ClientArgs,
        id: String,
        member: String,
    },
    /// Remove a member; every remaining member replaces its sender key.
    Remove {
        #[command(flatten)]
        client: ClientArgs,
        id: String,
        address: String,
    },
    /// Set a member's role: member, admin or owner (the owner only).
    Role {
        #[command(flatten)]
        client: ClientArgs,
        id: String,
        address: String,
        role: String,
    },
    /// Rename a group.
    Rename {
        #[command(flatten)]
        client: ClientArgs,
        id: String,
        name: String,
    },
    /// Make an invite link (admins and the owner).
    Invite {
        #[command(flatten)]
        client: ClientArgs,
        id: String,
        /// Seconds the link is valid.
        #[arg(long, default_value_t = 7 * 24 * 3600)]
        expires_in: u64,
        #[arg(long, default_value_t = 10)]
        max_uses: u32,
    },
    /// Join a group with an invite link.
    Join {
        #[command(flatten)]
        client: ClientArgs,
        invite: String,
    },
    /// Leave a group.
    Leave {
        #[command(flatten)]
        client: ClientArgs,
        id: String,
    },
    /// Send a text to a group.
    Send {
        #[command(flatten)]
        client: ClientArgs,
        id: String,
        text: String,
    },
    /// Each member's state of a group message you sent: who has it, who read it.
    Receipts {
        #[command(flatten)]
        client: ClientArgs,
        /// The message id (`group inbox` prints it first on each line).
        message: String,
    },
    /// A group's messages, newest first: id, direction, sender, state, text.
    Inbox {
        #[command(flatten)]
        client: ClientArgs,
        id: String,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
}

#[derive(Debug, Args, Clone)]
pub struct RunArgs {
    /// Local API address; port 0 picks a free port (written to DIR/api.addr).
    #[arg(long, env = "TOKENIM_API")]
    pub api: Option<SocketAddr>,
    /// libp2p listen address (repeatable), e.g. /ip4/127.0.0.1/tcp/0.
    #[arg(long, env = "TOKENIM_LISTEN", value_delimiter = ',')]
    pub listen: Vec<String>,
    /// Kademlia bootstrap peer (repeatable), ending in /p2p/<peer id>.
    #[arg(long, env = "TOKENIM_BOOTSTRAP", value_delimiter = ',')]
    pub bootstrap: Vec<String>,
    /// Home relay (repeatable) that keeps this node's mailbox: MULTIADDR/p2p/PEERID.
    #[arg(long, env = "TOKENIM_HOME_RELAY", value_delimiter = ',')]
    pub home_relay: Vec<String>,
    /// Public address of this node (repeatable); a relay offers it to NAT-ed nodes.
    #[arg(long, env = "TOKENIM_EXTERNAL_ADDR", value_delimiter = ',')]
    pub external_addr: Vec<String>,
    /// Run as a relay: keep mailboxes for registered users and answer the DHT.
    #[arg(long, env = "TOKENIM_RELAY")]
    pub relay: bool,
    /// Discover peers on the local network with mDNS.
    #[arg(long, env = "TOKENIM_MDNS")]
    pub mdns: bool,
    /// Log format: text or json.
    #[arg(long, env = "TOKENIM_LOG_FORMAT")]
    pub log_format: Option<String>,
}

#[derive(Debug, Args, Clone)]
pub struct ClientArgs {
    /// API address of the node (default: read from DIR/api.addr).
    #[arg(long, env = "TOKENIM_API")]
    pub api: Option<SocketAddr>,
    /// File holding the API token (default: DIR/api.token). The token itself is taken only
    /// from a file or the TOKENIM_TOKEN environment variable, never from the command line,
    /// where other local users could read it in the process list.
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
}

impl ClientArgs {
    /// The token from TOKENIM_TOKEN or `--token-file`, if either is given.
    pub fn token(&self) -> std::io::Result<Option<String>> {
        // What is read is wiped; the trimmed copy is the caller's (the client wipes it).
        if let Ok(t) = std::env::var("TOKENIM_TOKEN") {
            return Ok(Some(zeroize::Zeroizing::new(t).trim().to_owned()));
        }
        self.token_file
            .as_ref()
            .map(|p| {
                std::fs::read_to_string(p).map(|t| zeroize::Zeroizing::new(t).trim().to_owned())
            })
            .transpose()
    }
}

#[derive(Debug, Subcommand)]
pub enum DeviceCmd {
    /// Print a one-time `tokenim-link:` URI for a new device (run `tokenim init --link URI`
    /// there). Only the account's first device links devices.
    Link {
        #[command(flatten)]
        client: ClientArgs,
        /// How long the link stays valid, seconds.
        #[arg(long, default_value_t = 600)]
        ttl: u64,
        /// Hand the new device the messages of the last N days.
        #[arg(long, value_name = "N")]
        history_days: Option<u32>,
        /// Hand over at most N messages, the newest (default 10000 with --history-days).
        #[arg(long, value_name = "N")]
        history_messages: Option<u32>,
    },
    /// The account's devices.
    List(ClientArgs),
    /// Take a device off the account.
    Revoke {
        #[command(flatten)]
        client: ClientArgs,
        /// The device id (`device list` prints it).
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ContactCmd {
    /// Import a contact card (a tokenim: URI).
    Add {
        #[command(flatten)]
        client: ClientArgs,
        card: String,
        #[arg(long)]
        name: Option<String>,
    },
    /// List contacts (blocked ones marked).
    List(ClientArgs),
    /// Remove a contact (its conversation stays); its next message is a request.
    Remove {
        #[command(flatten)]
        client: ClientArgs,
        address: String,
    },
    /// Block an address: its messages are dropped unread.
    Block {
        #[command(flatten)]
        client: ClientArgs,
        address: String,
    },
    /// Unblock an address.
    Unblock {
        #[command(flatten)]
        client: ClientArgs,
        address: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum RequestCmd {
    /// List pending requests (read one with `inbox --peer ADDRESS`).
    List(ClientArgs),
    /// Accept a request: the sender becomes a contact and its messages join the inbox.
    Accept {
        #[command(flatten)]
        client: ClientArgs,
        address: String,
        #[arg(long)]
        name: Option<String>,
    },
    /// Block the sender of a request; its messages are deleted.
    Block {
        #[command(flatten)]
        client: ClientArgs,
        address: String,
    },
    /// Delete a request and its messages.
    Delete {
        #[command(flatten)]
        client: ClientArgs,
        address: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Create a token for an app; the secret is printed once.
    Create {
        #[command(flatten)]
        client: ClientArgs,
        name: String,
        /// Scopes: read, send, admin (repeatable).
        #[arg(long = "scope", default_values_t = vec!["read".to_string(), "send".to_string()])]
        scopes: Vec<String>,
    },
    /// List tokens (secrets are never shown again).
    List(ClientArgs),
    /// Revoke a token by id.
    Revoke {
        #[command(flatten)]
        client: ClientArgs,
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum FileCmd {
    /// Every file, uploaded here or offered by a contact, with its state.
    List(ClientArgs),
    /// Save a file (fetching it first if it was not fetched yet).
    Get {
        #[command(flatten)]
        client: ClientArgs,
        id: String,
        /// Where to write it.
        #[arg(short = 'o', long = "output", value_name = "PATH")]
        output: std::path::PathBuf,
    },
}
