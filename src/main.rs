//! The `plexus` command line: `serve`, `generate-config` and `register-user`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use plexus::config::Config;
use tokio::net::TcpListener;

/// The example configuration, printed by `generate-config`.
const EXAMPLE_CONFIG: &str = include_str!("../conf/plexus.example.toml");

#[derive(Parser)]
#[command(
    name = "plexus",
    version,
    about = "A Matrix homeserver for care organisations"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the homeserver.
    Serve {
        /// TOML configuration file; without one every option takes its default.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Overrides `server_name`.
        #[arg(long)]
        server_name: Option<String>,
        /// Overrides `listen` (repeat for several addresses).
        #[arg(long)]
        listen: Vec<SocketAddr>,
        /// Overrides `data_dir`.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Print a commented configuration file with every option at its default.
    GenerateConfig,
    /// Create a user account (works whether or not the server is running).
    RegisterUser {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Overrides `data_dir`.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// The localpart (or full user id on this server) of the new user.
        user: String,
        password: String,
        /// Make the user a server admin.
        #[arg(long)]
        admin: bool,
    },
}

fn main() -> ExitCode {
    tune_the_allocator();
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("plexus: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Two settings of glibc's allocator that keep the server's memory close to what it uses:
///
/// - Each password hash (argon2id) takes a 19 MiB buffer. glibc raises its mmap threshold after
///   freeing such a buffer, so later ones come from the heap of whichever thread hashed, and the
///   heaps keep the memory: after a burst of registrations the server stayed at ~700 MB. A fixed
///   threshold keeps large buffers in their own mappings, returned to the system when freed.
/// - glibc gives threads up to eight heaps ("arenas") per core, and each keeps its own free
///   memory. The runtime's workers and the database's blocking threads spread allocations over
///   all of them: the load benchmark's initial syncs took the server from 42 to 63 MB, and it
///   stayed there. With two arenas it stayed at 41 MB, at no measurable cost in speed.
fn tune_the_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only changes allocator parameters; it is called once, before any
    // thread is started.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::GenerateConfig => {
            print!("{EXAMPLE_CONFIG}");
            Ok(())
        }
        Command::Serve {
            config,
            server_name,
            listen,
            data_dir,
        } => {
            let mut config = Config::load(config.as_deref(), std::env::vars())?;
            if let Some(name) = server_name {
                config.server_name = name
                    .try_into()
                    .map_err(|e| anyhow::anyhow!("--server-name: {e}"))?;
            }
            if !listen.is_empty() {
                config.listen = listen;
            }
            if let Some(dir) = data_dir {
                config.data_dir = dir;
            }
            config.validate()?;
            init_tracing(&config.log.level)?;
            runtime()?.block_on(serve(config))
        }
        Command::RegisterUser {
            config,
            data_dir,
            user,
            password,
            admin,
        } => {
            let mut config = Config::load(config.as_deref(), std::env::vars())?;
            if let Some(dir) = data_dir {
                config.data_dir = dir;
            }
            init_tracing("warn")?;
            runtime()?.block_on(async {
                let db = plexus::server::open_database(&config)?;
                let services = plexus::server::build_services(config, db.clone())?;
                // A full user id is accepted when it belongs to this server.
                let localpart = match user.strip_prefix('@').and_then(|rest| rest.split_once(':')) {
                    Some((local, server)) if server == services.server_name().as_str() => local,
                    Some((_, server)) => anyhow::bail!("{user} is not on this server ({server})"),
                    None => user.as_str(),
                };
                let user_id = services.create_user(localpart, &password, admin).await?;
                drop(services);
                db.close();
                println!("created {user_id}{}", if admin { " (admin)" } else { "" });
                Ok(())
            })
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let mut listeners = Vec::new();
    for addr in &config.listen {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
        listeners.push(listener);
    }
    plexus::server::run(listeners, config, shutdown_signal()).await
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM");
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    tracing::info!("shutdown requested");
}

fn init_tracing(level: &str) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.is_empty() => tracing_subscriber::EnvFilter::new(directives),
        _ => tracing_subscriber::EnvFilter::try_new(level)
            .map_err(|e| anyhow::anyhow!("log.level {level:?} is not a valid filter: {e}"))?,
    };
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .init();
    Ok(())
}
