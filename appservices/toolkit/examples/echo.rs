//! The echo bridge: a complete, minimal bridge to a fake network whose every contact answers
//! each message by repeating it. It shows the whole toolkit at work — registration, the
//! receiver, ghosts, portals, the loop-breaking store, formats, delivery states and commands —
//! and the complement tests run it against a real Plexus.
//!
//! ```text
//! echo generate-registration <file.yaml> <bridge-url> <server-name>
//! echo run <file.yaml> <homeserver-url> <server-name> <listen-addr> <store.db>
//! ```
//!
//! Inviting the ghost `@echo_<name>` into a room makes that room the portal of the chat with
//! `<name>` (so does `!echo start <name>` to the bot). A message there is "sent" to the contact,
//! marked delivered, and the contact's echo comes back from the ghost. A message containing
//! `fail` is refused by the fake network, which the sender sees as a failure notice.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bridge_toolkit::client::{BridgeInfo, Client, PortalRoom};
use bridge_toolkit::commands::Commands;
use bridge_toolkit::delivery::Delivery;
use bridge_toolkit::format::{self, Style};
use bridge_toolkit::registration::Registration;
use bridge_toolkit::store::{Direction, Store};
use bridge_toolkit::{Bridge, Error, MatrixEvent, receiver};
use ruma::events::room::member::MembershipState;
use ruma::{MilliSecondsSinceUnixEpoch, OwnedUserId, RoomId, ServerName, UserId};

const GHOST_PREFIX: &str = "echo_";

/// A message of the fake network.
struct RemoteMessage {
    id: String,
    text: String,
    ts: MilliSecondsSinceUnixEpoch,
}

/// The fake network: it accepts a message (answering its id) unless it says "fail".
#[derive(Default)]
struct EchoNetwork {
    next_id: AtomicU64,
}

impl EchoNetwork {
    fn send(&self, text: &str) -> Result<String, String> {
        if text.contains("fail") {
            return Err("the echo network refuses messages that say \"fail\"".into());
        }
        Ok(format!(
            "echo-{}",
            self.next_id.fetch_add(1, Ordering::Relaxed)
        ))
    }
}

struct Echo {
    client: Client,
    store: Store,
    delivery: Delivery,
    commands: Commands,
    network: EchoNetwork,
}

impl Bridge for Echo {
    async fn handle_event(&self, event: MatrixEvent) -> Result<(), Error> {
        if self
            .commands
            .handle_event(&self.client, &self.store, &event)
            .await?
        {
            return Ok(());
        }
        if let Some((user, MembershipState::Invite)) = event.membership()
            && let Some(contact) = user.localpart().strip_prefix(GHOST_PREFIX)
            && !self.client.is_bridge_user(&event.sender)
        {
            return self.open_portal(contact, &event.room_id).await;
        }
        // The bridge's own users' events are its copies of remote messages: never echo them.
        if self.client.is_bridge_user(&event.sender) {
            return Ok(());
        }
        let (Some(message), Some(contact)) =
            (event.message(), self.store.portal_remote(&event.room_id)?)
        else {
            return Ok(());
        };
        if !self.store.claim_outbound(&event.event_id, &event.room_id)? {
            return Ok(());
        }
        let text = format::matrix_to_remote(&message, Style::WhatsApp, &|_| None);
        match self.network.send(&text) {
            Ok(remote_id) => {
                self.store.record_remote_id(&event.event_id, &remote_id)?;
                self.delivery
                    .delivered(&event.room_id, &event.event_id)
                    .await?;
                // The contact answers by repeating the message.
                let echo = RemoteMessage {
                    id: format!("{remote_id}.reply"),
                    text,
                    ts: MilliSecondsSinceUnixEpoch::now(),
                };
                self.inbound(&contact, echo).await
            }
            Err(reason) => {
                self.delivery
                    .failed(&event.room_id, &event.event_id, &reason)
                    .await
            }
        }
    }

    async fn query_user(&self, user_id: OwnedUserId) -> Result<bool, Error> {
        let Some(contact) = user_id.localpart().strip_prefix(GHOST_PREFIX) else {
            return Ok(false);
        };
        self.ghost(contact).await?;
        Ok(true)
    }
}

impl Echo {
    /// The ghost of `contact`, registered and named.
    async fn ghost(&self, contact: &str) -> Result<OwnedUserId, Error> {
        let ghost = self
            .client
            .ensure_registered(&format!("{GHOST_PREFIX}{contact}"))
            .await?;
        self.store.set_ghost(contact, &ghost)?;
        let name = format!("{contact} (echo)");
        if self
            .store
            .ghost_profile(&ghost)?
            .and_then(|p| p.displayname)
            .as_deref()
            != Some(name.as_str())
        {
            self.client.set_profile(&ghost, Some(&name), None).await?;
            self.store.set_ghost_profile(&ghost, Some(&name), None)?;
        }
        Ok(ghost)
    }

    /// Makes `room` the portal of the chat with `contact`, with the contact's ghost in it, and
    /// the bot, which shows delivery states.
    async fn open_portal(&self, contact: &str, room: &RoomId) -> Result<(), Error> {
        let ghost = self.ghost(contact).await?;
        self.client.ensure_joined(&ghost, room).await?;
        let bot = self.client.bot();
        self.client.invite(&ghost, room, bot).await?;
        self.client.ensure_joined(bot, room).await?;
        self.store.set_portal(contact, room)?;
        Ok(())
    }

    /// A message of the fake network into its portal, as the contact's ghost, at its time.
    async fn inbound(&self, contact: &str, message: RemoteMessage) -> Result<(), Error> {
        let (Some(room), Some(ghost)) = (
            self.store.portal_room(contact)?,
            self.store.ghost_user(contact)?,
        ) else {
            return Ok(());
        };
        if !self.store.claim_inbound(&message.id, &room)? {
            return Ok(());
        }
        let content = format::remote_to_matrix(&message.text, Style::WhatsApp, &|_| None);
        let sent = async {
            self.client.ensure_joined(&ghost, &room).await?;
            self.client
                .send_message(&ghost, &room, &content, Some(message.ts))
                .await
        };
        match sent.await {
            Ok(event_id) => self.store.record_event_id(&message.id, &event_id),
            Err(e) => {
                self.store.release_claim(Direction::Inbound, &message.id)?;
                Err(e)
            }
        }
    }
}

/// `!echo start <name>`: a new portal with `<name>`'s ghost, the asking user invited.
fn commands(store: Store) -> Commands {
    Commands::new("!echo")
        .add("ping", "— answers pong", |_| async {
            Ok("pong".to_owned())
        })
        .add(
            "start",
            "<name> — opens a chat with <name>",
            move |context| {
                let store = store.clone();
                async move {
                    let Some(contact) = context.args.first() else {
                        return Ok("Usage: start <name>".to_owned());
                    };
                    let client = &context.client;
                    let ghost = client
                        .ensure_registered(&format!("{GHOST_PREFIX}{contact}"))
                        .await?;
                    let room = client
                        .create_portal_room(&PortalRoom {
                            name: Some(format!("{contact} (echo)")),
                            invite: vec![context.sender.clone()],
                            bridge_info: Some(BridgeInfo {
                                protocol_id: "echo".into(),
                                protocol_name: "Echo".into(),
                                channel_id: contact.clone(),
                                channel_name: Some(contact.clone()),
                            }),
                            ..PortalRoom::default()
                        })
                        .await?;
                    client.ensure_joined(&ghost, &room).await?;
                    store.set_ghost(contact, &ghost)?;
                    store.set_portal(contact, &room)?;
                    Ok(format!("Started a chat with {contact}: {room}"))
                }
            },
        )
}

async fn run(args: &[String]) -> Result<(), Error> {
    let [registration, homeserver, server_name, listen, store] = args else {
        return Err(Error::Invalid(
            "usage: echo run <file.yaml> <homeserver-url> <server-name> <listen-addr> <store.db>"
                .into(),
        ));
    };
    let registration = Registration::load(Path::new(registration))?;
    let server_name = <&ServerName>::try_from(server_name.as_str())
        .map_err(|e| Error::Invalid(format!("server name: {e}")))?;
    let store = Store::open(Path::new(store))?;
    let client = Client::new(homeserver, &registration, server_name)?;
    let bot: &UserId = client.bot();
    client.ensure_registered(bot.localpart()).await?;
    let bridge = Arc::new(Echo {
        delivery: Delivery::new(client.clone(), store.clone()),
        commands: commands(store.clone()),
        network: EchoNetwork::default(),
        client: client.clone(),
        store: store.clone(),
    });
    let listen: SocketAddr = listen
        .parse()
        .map_err(|e| Error::Invalid(format!("listen address: {e}")))?;
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("echo bridge listening on http://{}", listener.local_addr()?);
    // The homeserver's ping of the receiver proves both directions work (mautrix does the same).
    tokio::spawn(async move {
        match client.ping().await {
            Ok(ms) => tracing::info!(duration_ms = ms, "the homeserver reached the bridge"),
            Err(e) => tracing::warn!(error = %e, "the homeserver could not ping the bridge"),
        }
    });
    axum::serve(
        listener,
        receiver::router(bridge, &registration.hs_token, store),
    )
    .await?;
    Ok(())
}

fn generate_registration(args: &[String]) -> Result<(), Error> {
    let [file, url, server_name] = args else {
        return Err(Error::Invalid(
            "usage: echo generate-registration <file.yaml> <bridge-url> <server-name>".into(),
        ));
    };
    let server_name = <&ServerName>::try_from(server_name.as_str())
        .map_err(|e| Error::Invalid(format!("server name: {e}")))?;
    Registration::generate("echo", url, "echobot", GHOST_PREFIX, server_name).write(Path::new(file))
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("generate-registration") => generate_registration(&args[1..]),
        Some("run") => run(&args[1..]).await,
        _ => Err(Error::Invalid(
            "usage: echo generate-registration … | echo run …".into(),
        )),
    };
    if let Err(e) = result {
        eprintln!("echo: {e}");
        std::process::exit(1);
    }
}
