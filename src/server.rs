//! Starting and stopping a server: open storage, load the signing key, build the services and
//! serve HTTP on the given listeners until `shutdown` resolves, then finish in-flight requests and
//! queued writes before returning.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::config::Config;
use crate::federation::signing_key::SigningKey;
use crate::metrics::Metrics;
use crate::service::Services;
use crate::storage::Db;

/// Opens the data directory: creates it if needed and opens (migrating) the database.
pub fn open_database(config: &Config) -> anyhow::Result<Db> {
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        anyhow::anyhow!(
            "cannot create data directory {}: {e}",
            config.data_dir.display()
        )
    })?;
    Ok(Db::open(&config.database_path(), &config.database)?)
}

/// Builds the services over an open database.
pub fn build_services(config: Config, db: Db) -> anyhow::Result<Services> {
    let signing_key = SigningKey::load_or_generate(&config.data_dir.join("signing.key"))?;
    Ok(Services::new(config, db, signing_key, Metrics::new()))
}

/// Serves until `shutdown` resolves. Each listener's address is announced on stdout as
/// `plexus listening on http://ADDR` (scripts and the test harness read that line).
pub async fn run(
    listeners: Vec<TcpListener>,
    mut config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // Port 0 means "any free port": from here on the configuration names the ports actually bound,
    // so URLs derived from it (the well-known base URL) are reachable.
    config.listen = listeners
        .iter()
        .map(TcpListener::local_addr)
        .collect::<Result<_, _>>()?;
    let db = open_database(&config)?;
    let services = Arc::new(build_services(config, db.clone())?);
    let push_evaluator = tokio::spawn(services.clone().run_push_evaluator());
    let app = crate::api::router(services.clone());

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    for listener in listeners {
        let addr = listener.local_addr()?;
        println!("plexus listening on http://{addr}");
        tracing::info!(%addr, server.name = %services.server_name(), "listening");
        let app = app
            .clone()
            .into_make_service_with_connect_info::<SocketAddr>();
        let mut stop = stop_rx.clone();
        tasks.spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|stopped| *stopped).await;
                })
                .await
        });
    }
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    while let Some(result) = tasks.join_next().await {
        result??;
    }
    tracing::info!("stopped accepting requests; flushing writes");
    // The evaluator resumes from its recorded position on the next start.
    push_evaluator.abort();
    let _ = push_evaluator.await;
    drop(app);
    drop(services);
    db.close();
    Ok(())
}
