//! Runs the WhatsApp Cloud API simulator for demos and manual testing:
//! `whatsapp-simulator --listen 127.0.0.1:8090 --webhook http://127.0.0.1:29318/webhook …`.
//! Point the bridge's Cloud API base URL at `http://<listen>/<api-version>` and drive the
//! WhatsApp side through the control API under `/_sim/` (see the crate README).

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use plexus_whatsapp::simulator::{Config, Simulator};

#[derive(Parser)]
#[command(about = "A local simulator of the WhatsApp Business Cloud API")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8090")]
    listen: SocketAddr,
    /// The bridge's webhook callback URL.
    #[arg(long)]
    webhook: Option<String>,
    /// The app secret signing webhooks (`X-Hub-Signature-256`).
    #[arg(long, env = "WHATSAPP_APP_SECRET")]
    app_secret: String,
    /// The access token the bridge must present.
    #[arg(long, env = "WHATSAPP_ACCESS_TOKEN")]
    access_token: String,
    /// The verify token presented in the subscription handshake.
    #[arg(long, env = "WHATSAPP_VERIFY_TOKEN")]
    verify_token: String,
    #[arg(long, default_value = "v21.0")]
    api_version: String,
    #[arg(long, default_value = "106540352242922")]
    phone_number_id: String,
    #[arg(long, default_value = "15550783881")]
    display_phone_number: String,
    #[arg(long, default_value = "102290129340398")]
    waba_id: String,
    /// Send `sent` and `delivered` statuses for every accepted message.
    #[arg(long)]
    auto_statuses: bool,
    /// First webhook retry delay in milliseconds (doubling on each retry).
    #[arg(long, default_value_t = 1000)]
    retry_base_ms: u64,
    /// Run the verification handshake against the webhook at start.
    #[arg(long)]
    verify_at_start: bool,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let config = Config {
        api_version: args.api_version,
        phone_number_id: args.phone_number_id,
        display_phone_number: args.display_phone_number,
        waba_id: args.waba_id,
        access_token: args.access_token,
        app_secret: args.app_secret,
        verify_token: args.verify_token,
        webhook_url: args.webhook,
        auto_statuses: args.auto_statuses,
        retry_base: Duration::from_millis(args.retry_base_ms),
        ..Config::default()
    };
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let simulator = Simulator::start(listener, config).await?;
    tracing::info!(graph = %simulator.graph_url(), control = %format!("{}/_sim/", simulator.url()), "WhatsApp Cloud API simulator listening");
    if args.verify_at_start {
        let outcome = simulator.verify_webhook().await?;
        tracing::info!(
            verified = outcome.verified,
            status = outcome.status,
            "verification handshake"
        );
    }
    tokio::signal::ctrl_c().await?;
    simulator.stop();
    Ok(())
}
