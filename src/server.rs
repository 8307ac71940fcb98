//! Starting and stopping a server: open storage, load the signing key, build the services and
//! serve HTTP on the given listeners until `shutdown` resolves, then finish in-flight requests and
//! queued writes before returning.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::serve::ListenerExt;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::federation::Federation;
use crate::federation::listener::TlsListener;
use crate::federation::signing_key::SigningKey;
use crate::metrics::Metrics;
use crate::service::Services;
use crate::service::appservice::Appservices;
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
    let federation = Federation::new(&config, &signing_key, db.clone())?;
    let appservices = Appservices::load(&config)?;
    Ok(Services::new(
        config,
        db,
        signing_key,
        federation,
        appservices,
        Metrics::new(),
    ))
}

/// Serves until `shutdown` resolves. Each listener's address is announced on stdout as
/// `plexus listening on http://ADDR`, and each federation listener's (`[federation] listen`,
/// TLS) as `plexus federation listening on https://ADDR` before those (scripts and the test
/// harness read these lines).
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
    // TLS (federation, push gateways) uses rustls with the ring provider, process-wide.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // The federation listeners are bound here (the client ones arrive bound); as for `listen`,
    // the configuration then names the ports actually bound.
    let mut federation_listeners = Vec::new();
    for addr in &config.federation.listen {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen for federation on {addr}: {e}"))?;
        federation_listeners.push(listener);
    }
    config.federation.listen = federation_listeners
        .iter()
        .map(TcpListener::local_addr)
        .collect::<Result<_, _>>()?;
    let db = open_database(&config)?;
    let federation_tls = match federation_listeners.is_empty() {
        true => None,
        false => Some(crate::federation::tls::server_config(
            &config.federation,
            &config.server_name,
            &config.data_dir,
        )?),
    };
    let services = Arc::new(build_services(config, db.clone())?);
    // Each appservice's own user exists from the start, as in Synapse.
    services.register_appservice_senders().await?;
    let push_evaluator = tokio::spawn(services.clone().run_push_evaluator());
    let pusher_sender = tokio::spawn(services.clone().run_pusher_sender());
    let federation_sender = tokio::spawn(services.clone().run_federation_sender());
    let appservice_sender = tokio::spawn(services.clone().run_appservice_sender());
    let app = crate::api::router(services.clone());

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    // Federation first, so its announcement precedes the client one the test harness waits for.
    if let Some(tls) = federation_tls {
        if !services.config.federation.verify_certificates {
            tracing::warn!(
                "federation.verify_certificates is off: other servers' TLS certificates are not \
                 checked, so anyone on the network path can impersonate them"
            );
        }
        let federation_app = crate::api::federation_router(services.clone());
        for listener in federation_listeners {
            let addr = listener.local_addr()?;
            println!("plexus federation listening on https://{addr}");
            tracing::info!(%addr, server.name = %services.server_name(), "federation listening");
            let listener = TlsListener::new(listener, tls.clone())?.tap_io(|_| {});
            let app = federation_app
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
    }
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
    pusher_sender.abort();
    let _ = pusher_sender.await;
    // Queued transactions stay in the database and are sent after the next start.
    federation_sender.abort();
    let _ = federation_sender.await;
    appservice_sender.abort();
    let _ = appservice_sender.await;
    drop(app);
    drop(services);
    db.close();
    Ok(())
}
