//! `beckon run` put together: the world from its files, the HTTP endpoints, the reloader that
//! watches the files, the signal handlers, and the streaming pipeline — and the order they stop
//! in: stop fetching, finish and flush what is in flight, commit, then stop serving HTTP.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::config::{RunConfig, WorldConfig};
use crate::engine::EngineConfig;
use crate::http::{self, Health};
use crate::metrics::Metrics;
use crate::profile::load_profiles;
use crate::stream::{self, Inputs, StreamError, Totals};
use crate::world::{World, WorldError};

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{}", chain(.0))]
    World(#[from] WorldError),
    #[error("profiles {path}: {reason}")]
    Profiles { path: PathBuf, reason: String },
    #[error("serving HTTP on {addr}: {source}")]
    Http {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("starting the runtime: {0}")]
    Runtime(std::io::Error),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error(transparent)]
    Stream(#[from] StreamError),
}

/// How the caller hears about the service (the demo prints the metrics URL).
pub struct Hooks {
    /// Called once the HTTP endpoints listen, with their address.
    pub on_listen: Box<dyn FnOnce(SocketAddr) + Send>,
    /// SIGTERM and SIGINT set `shutdown` (the binary); tests and the demo set it themselves.
    pub signals: bool,
}

/// Runs the service until `shutdown` is set (or SIGTERM/SIGINT, with `hooks.signals`).
pub fn run(
    cfg: &RunConfig,
    shutdown: Arc<AtomicBool>,
    hooks: Hooks,
) -> Result<Totals, ServiceError> {
    let metrics = Arc::new(Metrics::new()?);
    let world = Arc::new(load_world(&cfg.world, &cfg.engine)?);
    tracing::info!(
        fences = world.fences.len(),
        beacons = world.beacons.len(),
        campaigns = world.campaigns.len(),
        "world loaded"
    );
    let profiles = match &cfg.world.profiles {
        Some(path) => load_profiles(path).map_err(|e| ServiceError::Profiles {
            path: path.clone(),
            reason: e.to_string(),
        })?,
        None => Vec::new(),
    };
    let ready = Arc::new(AtomicBool::new(false));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("beckon-http")
        .enable_all()
        .build()
        .map_err(ServiceError::Runtime)?;
    let health = Health {
        metrics: metrics.clone(),
        ready: ready.clone(),
    };
    let stop_http = tokio_util::sync::CancellationToken::new();
    let addr = cfg.http.listen;
    let (bound, server) = runtime
        .block_on(http::bind(
            addr,
            health,
            stop_http.clone().cancelled_owned(),
        ))
        .map_err(|source| ServiceError::Http { addr, source })?;
    let server = runtime.spawn(server);
    tracing::info!(%bound, "serving /metrics, /livez and /readyz");
    (hooks.on_listen)(bound);
    if hooks.signals {
        runtime.spawn(stop_on_signals(shutdown.clone()));
    }

    let (reload_tx, reloads) = sync_channel(1);
    let reloader = (cfg.world.reload_interval_s > 0).then(|| {
        let (files, engine, metrics, shutdown) = (
            cfg.world.clone(),
            cfg.engine.clone(),
            metrics.clone(),
            shutdown.clone(),
        );
        std::thread::Builder::new()
            .name("beckon-reload".into())
            .spawn(move || watch(&files, &engine, &metrics, &shutdown, &reload_tx))
    });

    let mut inputs = Inputs {
        world,
        profiles: Arc::new(profiles),
        reloads,
        metrics,
        shutdown: shutdown.clone(),
        ready,
    };
    let result = loop {
        let committed = inputs.metrics.transactions_committed.get();
        match stream::run(&cfg.kafka, &cfg.pipeline, &cfg.engine, &mut inputs) {
            // The transaction was aborted (or the producer fenced or broken): a new pipeline
            // (producer, consumer, engines restored from the changelog) goes on from the last
            // commit, as a restarted process would, without a supervisor's back-off. Only
            // after progress, so a failure that repeats at once (no transactions on the
            // brokers, say) still stops the engine.
            Err(e @ StreamError::Transaction(_))
                if inputs.metrics.transactions_committed.get() > committed
                    && !shutdown.load(Ordering::Relaxed) =>
            {
                tracing::warn!("{e}");
            }
            result => break result,
        }
    };
    shutdown.store(true, Ordering::Relaxed);
    if let Some(Ok(handle)) = reloader {
        let _ = handle.join();
    }
    stop_http.cancel();
    let _ = runtime.block_on(server);
    match &result {
        Ok(t) => tracing::info!(
            pings = t.pings,
            dead_letters = t.dead_letters,
            offers = t.offers,
            presence = t.presence,
            profiles = t.profiles,
            handed_over = t.handed_over,
            "stopped"
        ),
        Err(e) => tracing::error!("stopped: {e}"),
    }
    Ok(result?)
}

/// The world from its files; lenient loading is not offered here, so nothing is skipped.
fn load_world(files: &WorldConfig, engine: &EngineConfig) -> Result<World, WorldError> {
    World::load(&files.files(), engine.presence.exit_buffer_m).map(|loaded| loaded.world)
}

/// An error and its causes on one line (logs have no "Caused by" section).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(c) = source {
        s.push_str(": ");
        s.push_str(&c.to_string());
        source = c.source();
    }
    s
}

async fn stop_on_signals(shutdown: Arc<AtomicBool>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot listen for SIGTERM/SIGINT");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: draining"),
        _ = int.recv() => tracing::info!("SIGINT: draining"),
    }
    shutdown.store(true, Ordering::Relaxed);
}

/// What identifies a version of the world's files: each file's path, size and mtime.
fn fingerprint(files: &WorldConfig) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    let mut out = Vec::new();
    let mut add = |p: &Path| {
        let m = std::fs::metadata(p).ok();
        out.push((
            p.to_owned(),
            m.as_ref().map_or(0, |m| m.len()),
            m.and_then(|m| m.modified().ok()),
        ));
    };
    for p in [&files.fences, &files.beacons].into_iter().flatten() {
        add(p);
    }
    if let Some(c) = &files.campaigns {
        if c.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(c)
                .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
                .unwrap_or_default();
            entries.sort();
            for e in entries {
                add(&e);
            }
        } else {
            add(c);
        }
    }
    out
}

/// Checks the files every `reload_interval_s`; a changed set that loads becomes the new world,
/// one that does not is refused (logged and counted) and the old world keeps serving.
fn watch(
    files: &WorldConfig,
    engine: &EngineConfig,
    metrics: &Metrics,
    shutdown: &AtomicBool,
    to_pipeline: &SyncSender<Arc<World>>,
) {
    let every = Duration::from_secs(files.reload_interval_s);
    let mut seen = fingerprint(files);
    let mut slept = Duration::ZERO;
    while !shutdown.load(Ordering::Relaxed) {
        // Short naps, so shutdown is not held up by the interval.
        std::thread::sleep(Duration::from_millis(100));
        slept += Duration::from_millis(100);
        if slept < every {
            continue;
        }
        slept = Duration::ZERO;
        let now = fingerprint(files);
        if now == seen {
            continue;
        }
        seen = now;
        match load_world(files, engine) {
            Ok(world) => {
                tracing::info!(
                    fences = world.fences.len(),
                    beacons = world.beacons.len(),
                    campaigns = world.campaigns.len(),
                    "files changed: new world loaded"
                );
                if to_pipeline.send(Arc::new(world)).is_err() {
                    return;
                }
            }
            Err(e) => {
                metrics.reloads_refused.inc();
                tracing::error!(
                    "files changed but were refused; the old world keeps serving: {}",
                    chain(&e)
                );
            }
        }
    }
}
