//! The WhatsApp bridge.
//!
//! ```text
//! whatsapp-bridge --config whatsapp-bridge.toml generate-registration
//! whatsapp-bridge --config whatsapp-bridge.toml run
//! ```

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use plexus_whatsapp::bridge::{self, config::Config};

#[derive(Parser)]
#[command(about = "Bridges WhatsApp (Cloud API) chats into Matrix rooms")]
struct Cli {
    /// The bridge's TOML configuration.
    #[arg(
        long,
        short,
        env = "WHATSAPP_BRIDGE_CONFIG",
        default_value = "whatsapp-bridge.toml"
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Writes the appservice registration to `bridge.registration` (list it in the
    /// homeserver's `appservice_registrations`).
    GenerateRegistration,
    /// Serves the appservice API and the webhook endpoint.
    Run,
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    if let Err(e) = run(cli).await {
        eprintln!("whatsapp-bridge: {e}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    let config = Config::load(&cli.config)?;
    match cli.command {
        Command::GenerateRegistration => {
            let path = config.bridge.registration.clone();
            bridge::generate_registration(&config, &path).map_err(|e| e.to_string())?;
            println!("registration written to {}", path.display());
            Ok(())
        }
        Command::Run => {
            let registration =
                bridge_registration(&config).map_err(|e| format!("registration: {e}"))?;
            let appservice = tokio::net::TcpListener::bind(config.bridge.appservice_listen)
                .await
                .map_err(|e| format!("{}: {e}", config.bridge.appservice_listen))?;
            let webhooks = tokio::net::TcpListener::bind(config.bridge.webhook_listen)
                .await
                .map_err(|e| format!("{}: {e}", config.bridge.webhook_listen))?;
            println!(
                "whatsapp bridge listening on http://{} (webhooks on http://{}/webhook)",
                config.bridge.appservice_listen, config.bridge.webhook_listen
            );
            bridge::run(config, registration, appservice, webhooks)
                .await
                .map_err(|e| e.to_string())
        }
    }
}

fn bridge_registration(
    config: &Config,
) -> Result<bridge_toolkit::registration::Registration, bridge_toolkit::Error> {
    bridge_toolkit::registration::Registration::load(&config.bridge.registration)
}
