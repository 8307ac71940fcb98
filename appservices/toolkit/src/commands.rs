//! The bridge bot's commands. In any room the bot is in, `!prefix command args` runs a command;
//! in a management room (a direct chat a user opened with the bot) the prefix may be left out.
//! Commands are registered with their help text; `help` lists them. Answers are `m.notice`s from
//! the bot, so other bots do not answer them in turn.
//!
//! [`Commands::handle_event`] takes the events a bridge receives: it accepts direct-chat invites
//! of the bot (recording the room as the inviter's management room) and runs commands, and
//! answers whether the event was its.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use ruma::events::room::member::MembershipState;
use ruma::events::room::message::MessageType;
use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId, UserId};

use crate::client::Client;
use crate::store::Store;
use crate::{Error, MatrixEvent};

/// What a command gets.
#[derive(Clone)]
pub struct CommandContext {
    pub client: Client,
    pub room_id: OwnedRoomId,
    pub sender: OwnedUserId,
    pub event_id: OwnedEventId,
    /// The arguments, split at spaces; `"quoted words"` stay one argument.
    pub args: Vec<String>,
    /// Everything after the command name, as written.
    pub raw_args: String,
}

type Reply = Pin<Box<dyn Future<Output = Result<String, Error>> + Send>>;
type Handler = Arc<dyn Fn(CommandContext) -> Reply + Send + Sync>;
type Permission = Arc<dyn Fn(&UserId) -> bool + Send + Sync>;

/// A command registry.
#[derive(Clone)]
pub struct Commands {
    prefix: String,
    commands: BTreeMap<String, (String, Handler)>,
    permitted: Permission,
}

impl Commands {
    /// A registry answering `<prefix> command` (e.g. `!wa`), with `help` built in; everyone may
    /// run commands until [`Commands::permit`] says otherwise.
    pub fn new(prefix: &str) -> Commands {
        Commands {
            prefix: prefix.to_owned(),
            commands: BTreeMap::new(),
            permitted: Arc::new(|_| true),
        }
    }

    /// Who may run commands (e.g. the organisation's staff).
    pub fn permit(
        mut self,
        permitted: impl Fn(&UserId) -> bool + Send + Sync + 'static,
    ) -> Commands {
        self.permitted = Arc::new(permitted);
        self
    }

    /// Adds `name`, described by `help` (`<args> — what it does`).
    pub fn add<F, Fut>(mut self, name: &str, help: &str, handler: F) -> Commands
    where
        F: Fn(CommandContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String, Error>> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |context| Box::pin(handler(context)));
        self.commands
            .insert(name.to_lowercase(), (help.to_owned(), handler));
        self
    }

    /// The command and its arguments in a message `body`; `None` when it is not a command.
    pub fn parse<'a>(&self, body: &'a str, in_management_room: bool) -> Option<(String, &'a str)> {
        let body = body.trim();
        let text = match body.strip_prefix(&self.prefix) {
            Some(rest) if rest.is_empty() || rest.starts_with(char::is_whitespace) => rest.trim(),
            _ if in_management_room => body,
            _ => return None,
        };
        if text.is_empty() {
            return Some(("help".into(), ""));
        }
        let (name, args) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
        Some((name.to_lowercase(), args.trim()))
    }

    /// The help text: every command with its description.
    pub fn help(&self) -> String {
        let mut text = format!(
            "Commands (prefix `{}`, not needed in this bot's direct chat):\n• help — this list",
            self.prefix
        );
        for (name, (help, _)) in &self.commands {
            text.push_str(&format!("\n• {name} {help}"));
        }
        text
    }

    /// Runs command `name` and answers the text to reply with.
    pub async fn run(&self, name: &str, context: CommandContext) -> String {
        if name == "help" && !self.commands.contains_key("help") {
            return self.help();
        }
        let Some((_, handler)) = self.commands.get(name) else {
            return format!(
                "Unknown command `{name}`. Say `{} help` for the list.",
                self.prefix
            );
        };
        match handler(context).await {
            Ok(reply) => reply,
            Err(e) => format!("⚠ {name} failed: {e}"),
        }
    }

    /// Handles `event` if it is the bot's: a direct-chat invite of the bot, or a command.
    /// Answers whether it was.
    pub async fn handle_event(
        &self,
        client: &Client,
        store: &Store,
        event: &MatrixEvent,
    ) -> Result<bool, Error> {
        if client.is_bridge_user(&event.sender) {
            return Ok(false);
        }
        if let Some((user, MembershipState::Invite)) = event.membership() {
            if user != client.bot() {
                return Ok(false);
            }
            client.join(client.bot(), &event.room_id).await?;
            if event.is_direct_invite() {
                store.set_management_room(&event.room_id, &event.sender)?;
                client
                    .send_notice(&event.room_id, &format!("Hello! {}", self.help()))
                    .await?;
            }
            return Ok(true);
        }
        let Some(message) = event.message() else {
            return Ok(false);
        };
        let MessageType::Text(text) = &message.msgtype else {
            return Ok(false);
        };
        let management =
            store.management_room_owner(&event.room_id)?.as_ref() == Some(&event.sender);
        let Some((name, raw_args)) = self.parse(&text.body, management) else {
            return Ok(false);
        };
        let reply = if (self.permitted)(&event.sender) {
            let context = CommandContext {
                client: client.clone(),
                room_id: event.room_id.clone(),
                sender: event.sender.clone(),
                event_id: event.event_id.clone(),
                args: split_args(raw_args),
                raw_args: raw_args.to_owned(),
            };
            self.run(&name, context).await
        } else {
            "You may not run commands of this bridge.".to_owned()
        };
        client.send_notice(&event.room_id, &reply).await?;
        Ok(true)
    }
}

/// Splits arguments at spaces, keeping `"quoted words"` together.
pub fn split_args(text: &str) -> Vec<String> {
    let mut args = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut started = false;
    for c in text.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                started = true;
            }
            c if c.is_whitespace() && !quoted => {
                if started {
                    args.push(std::mem::take(&mut current));
                    started = false;
                }
            }
            c => {
                current.push(c);
                started = true;
            }
        }
    }
    if started {
        args.push(current);
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commands() -> Commands {
        Commands::new("!wa").add("start", "<phone> — open a chat", |context| async move {
            Ok(format!("starting {}", context.args.join(",")))
        })
    }

    #[test]
    fn parses_prefixed_and_management_room_commands() {
        let commands = commands();
        let cases = [
            ("!wa start +4477", false, Some(("start", "+4477"))),
            ("  !wa   START  +4477 ", false, Some(("start", "+4477"))),
            ("!wa", false, Some(("help", ""))),
            ("start +4477", true, Some(("start", "+4477"))),
            ("!wa help", true, Some(("help", ""))),
            ("start +4477", false, None),
            ("!wasomething", false, None),
            ("hello there", false, None),
        ];
        for (body, management, expected) in cases {
            let parsed = commands.parse(body, management);
            assert_eq!(
                parsed.as_ref().map(|(n, a)| (n.as_str(), *a)),
                expected,
                "{body:?}"
            );
        }
    }

    #[test]
    fn splits_arguments_with_quotes() {
        assert_eq!(split_args("a  \"b c\" d"), vec!["a", "b c", "d"]);
        assert_eq!(split_args("\"\""), vec![""]);
        assert!(split_args("   ").is_empty());
    }

    #[test]
    fn help_lists_every_command() {
        let help = commands().help();
        assert!(help.contains("• help"));
        assert!(help.contains("• start <phone> — open a chat"));
    }

    fn context(args: &[&str]) -> CommandContext {
        let registration = crate::registration::Registration::generate(
            "wa",
            "http://127.0.0.1:1",
            "wabot",
            "wa_",
            ruma::server_name!("hs"),
        );
        CommandContext {
            client: Client::new(
                "http://127.0.0.1:1",
                &registration,
                ruma::server_name!("hs"),
            )
            .unwrap(),
            room_id: ruma::owned_room_id!("!r:hs"),
            sender: ruma::owned_user_id!("@staff:hs"),
            event_id: ruma::owned_event_id!("$e"),
            args: args.iter().map(|a| a.to_string()).collect(),
            raw_args: args.join(" "),
        }
    }

    #[tokio::test]
    async fn runs_commands_and_answers_failures_and_unknown_names() {
        let commands = commands().add("broken", "— always fails", |_| async {
            Err(Error::bridge("the network is down"))
        });
        assert_eq!(
            commands.run("start", context(&["1", "2"])).await,
            "starting 1,2"
        );
        assert_eq!(
            commands.run("broken", context(&[])).await,
            "⚠ broken failed: the network is down"
        );
        assert!(
            commands
                .run("nope", context(&[]))
                .await
                .starts_with("Unknown command `nope`")
        );
        assert!(commands.run("help", context(&[])).await.contains("• start"));
    }
}
