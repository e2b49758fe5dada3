//! The `beckon` command line. Errors become `anyhow` reports here and only here.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

use beckon::beacon::BeaconRegistry;
use beckon::config::{LogFormat, Overrides, RunConfig};
use beckon::demo::DemoOptions;
use beckon::engine::EngineConfig;
use beckon::fence::{CellScheme, FenceError, FenceIndex, IndexOptions, LoadMode};
use beckon::generate::{self, GenSpec};
use beckon::match_cmd;
use beckon::profile::{load_profiles, ProfileRecord};
use beckon::replay::{self, Partitions, Sinks};
use beckon::service::{self, Hooks};
use beckon::world::{FenceFile, LoadedWorld, World, WorldFiles};

#[derive(Parser)]
#[command(
    name = "beckon",
    version,
    about = "Location-triggered proximity marketing engine"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// For each ping of a JSON Lines file, the fences that cover it (CONTRACTS §7).
    Match {
        #[command(flatten)]
        fences: FenceArgs,
        /// JSON Lines file of pings ("-" for standard input).
        #[arg(long)]
        pings: PathBuf,
    },
    /// Validate fence and beacon files and summarise them.
    Check {
        #[command(flatten)]
        fences: FenceArgs,
        /// Beacon registry (JSON array or JSON Lines).
        #[arg(long)]
        beacons: Option<PathBuf>,
    },
    /// Run the decision core over a JSON Lines ping file: the offers and presence events it
    /// would emit, and a summary (CONTRACTS §7).
    Replay {
        #[command(flatten)]
        fences: FenceArgs,
        /// Beacon registry (JSON array or JSON Lines).
        #[arg(long)]
        beacons: Option<PathBuf>,
        /// Campaign file (JSON or YAML; one campaign or a list) or a directory of them.
        #[arg(long)]
        campaigns: PathBuf,
        /// Device profiles, JSON Lines (CONTRACTS §5).
        #[arg(long)]
        profiles: Option<PathBuf>,
        /// JSON Lines file of pings ("-" for standard input).
        #[arg(long)]
        pings: PathBuf,
        /// Engine tuning (JSON or YAML with `presence` and `caps` sections).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Where offers go ("-": standard output).
        #[arg(long, default_value = "-")]
        offers: PathBuf,
        /// Where presence events go (none if absent).
        #[arg(long)]
        presence: Option<PathBuf>,
        /// Where invalid lines go, with their line number and reason.
        #[arg(long)]
        dead_letters: Option<PathBuf>,
        /// Where the JSON summary goes (also printed to standard error).
        #[arg(long)]
        summary: Option<PathBuf>,
        /// Exit devices still present when the input ends (forecast a closed day).
        #[arg(long)]
        close_at_end: bool,
        /// Partitions of the pings topic: devices are split over them as Kafka's default
        /// partitioner splits keyed records, one engine each with its share of every budget,
        /// as `beckon run` decides them.
        #[arg(long, default_value = "1")]
        partitions: NonZeroU32,
    },
    /// The streaming engine: a Kafka consumer group on the pings and profiles topics, producing
    /// offers, presence events and dead letters, with /metrics, /livez and /readyz over HTTP.
    /// Settings: the config file, then BECKON_* environment variables, then these flags.
    Run(RunArgs),
    /// The embedded default, no setup: an in-process Kafka broker, the fixtures, simulated
    /// devices and the streaming engine, with offers shown live as they are emitted.
    Demo {
        /// Where the engine serves /metrics (port 0: any free port).
        #[arg(long, default_value = "127.0.0.1:0")]
        http: std::net::SocketAddr,
        /// Seconds the engine keeps running after the devices are done (to look at /metrics).
        #[arg(long, default_value_t = 0)]
        linger: u64,
    },
    /// Write deterministic synthetic fences and pings (DIR/fences.geojson, DIR/pings.jsonl);
    /// with --devices, also campaigns, profiles and walking devices' pings for `replay`
    /// (DIR/campaigns.json, DIR/profiles.jsonl, DIR/device-pings.jsonl).
    Gen {
        #[arg(long, default_value_t = 10_000)]
        fences: usize,
        /// Random pings over the fences' cities (for `match`).
        #[arg(long, default_value_t = 1_000_000)]
        pings: usize,
        /// Devices walking into, past and around the fences (for `replay`); 0: none.
        #[arg(long, default_value_t = 0)]
        devices: usize,
        /// Mean location fixes per device.
        #[arg(long, default_value_t = 20)]
        fixes_per_device: usize,
        /// Generated campaigns (with --devices).
        #[arg(long, default_value_t = 120)]
        campaigns: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Args)]
struct RunArgs {
    /// YAML or JSON config file (see deploy/beckon.yaml).
    #[arg(long, env = "BECKON_CONFIG")]
    config: Option<PathBuf>,
    /// Kafka bootstrap servers (kafka.brokers).
    #[arg(long)]
    brokers: Option<String>,
    /// Consumer group (kafka.group_id).
    #[arg(long)]
    group_id: Option<String>,
    /// Static group membership id, unique per instance (kafka.instance_id).
    #[arg(long)]
    instance_id: Option<String>,
    /// Address of the HTTP endpoints (http.listen).
    #[arg(long)]
    http_listen: Option<std::net::SocketAddr>,
    #[arg(long)]
    fences: Option<PathBuf>,
    #[arg(long)]
    beacons: Option<PathBuf>,
    #[arg(long)]
    campaigns: Option<PathBuf>,
    #[arg(long)]
    profiles: Option<PathBuf>,
    /// Log lines as text or JSON (log.format).
    #[arg(long, value_parser = beckon::config::parse_log_format)]
    log_format: Option<LogFormat>,
    /// A librdkafka setting, KEY=VALUE (repeatable), e.g. -X security.protocol=SASL_SSL.
    #[arg(short = 'X', value_parser = parse_key_value)]
    client: Vec<(String, String)>,
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

impl RunArgs {
    fn config(self) -> Result<RunConfig> {
        let overrides = Overrides {
            brokers: self.brokers,
            group_id: self.group_id,
            instance_id: self.instance_id,
            http_listen: self.http_listen,
            fences: self.fences,
            beacons: self.beacons,
            campaigns: self.campaigns,
            profiles: self.profiles,
            log_format: self.log_format,
            client: self.client,
        };
        Ok(RunConfig::load(
            self.config.as_deref(),
            std::env::vars(),
            &overrides,
        )?)
    }
}

/// Logs to standard error, as text or JSON lines, filtered by `level` (a `tracing` filter).
fn init_logging(format: LogFormat, level: &str) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .with_context(|| format!("log.level {level:?} is not a valid filter"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr);
    match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    }
    .map_err(|e| anyhow::anyhow!("installing the logger: {e}"))
}

#[derive(Args)]
struct FenceArgs {
    /// GeoJSON FeatureCollection of fences (CONTRACTS §2).
    #[arg(long = "fences")]
    path: PathBuf,
    /// Load the valid fences and report the invalid ones, instead of refusing the file.
    #[arg(long)]
    lenient: bool,
    /// Cells of the cache in front of the R-tree: "grid:DEG" (square lon/lat cells of DEG
    /// degrees), "h3:RES" (H3 cells at resolution RES), or "off" (R-tree alone). See README,
    /// "Performance", for what each costs.
    #[arg(long, default_value = "grid:0.008", value_parser = parse_cells)]
    cells: Cells,
}

/// `Some(scheme)`, or `None` for "off" (a newtype, as clap reads a bare `Option` as "may be
/// absent").
#[derive(Clone, Copy)]
struct Cells(Option<CellScheme>);

fn parse_cells(s: &str) -> Result<Cells, String> {
    let bad = || format!("{s:?} is not \"grid:DEG\" (0 < DEG <= 1), \"h3:RES\" (0-15) or \"off\"");
    match s.split_once(':') {
        None if s == "off" => Ok(Cells(None)),
        Some(("grid", deg)) => match deg.parse::<f64>() {
            Ok(d) if d > 0.0 && d <= 1.0 => Ok(Cells(Some(CellScheme::Grid { deg: d }))),
            _ => Err(bad()),
        },
        Some(("h3", res)) => {
            let n: u8 = res.parse().map_err(|_| bad())?;
            let res = h3o::Resolution::try_from(n).map_err(|_| bad())?;
            Ok(Cells(Some(CellScheme::H3(res))))
        }
        _ => Err(bad()),
    }
}

impl FenceArgs {
    fn file(&self) -> FenceFile {
        FenceFile {
            path: self.path.clone(),
            mode: if self.lenient {
                LoadMode::Lenient
            } else {
                LoadMode::Strict
            },
            index: IndexOptions {
                cells: self.cells.0,
                ..IndexOptions::default()
            },
        }
    }

    fn load(&self) -> Result<FenceIndex> {
        let (index, skipped) = self.file().load()?;
        warn_skipped(&self.path, &skipped);
        Ok(index)
    }
}

fn warn_skipped(path: &Path, skipped: &[FenceError]) {
    for e in skipped {
        eprintln!("warning: {}: skipped {e}", path.display());
    }
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Match { fences, pings } => {
            let t = Instant::now();
            let index = fences.load()?;
            let load = t.elapsed();
            let stats = if pings == Path::new("-") {
                match_cmd::run(&index, io::stdin().lock(), io::stdout().lock())
            } else {
                let file = File::open(&pings)
                    .with_context(|| format!("opening pings {}", pings.display()))?;
                match_cmd::run(
                    &index,
                    BufReader::with_capacity(1 << 20, file),
                    io::stdout().lock(),
                )
            }
            .with_context(|| format!("matching {}", pings.display()))?;
            eprintln!("{}", stats.summary(index.len(), load));
        }
        Command::Check { fences, beacons } => {
            let t = Instant::now();
            let index = fences.load()?;
            let mut kinds = std::collections::BTreeMap::<&str, usize>::new();
            for f in index.fences() {
                *kinds
                    .entry(f.props.kind.as_deref().unwrap_or("-"))
                    .or_default() += 1;
            }
            println!(
                "{}: {} fences ({kinds:?}), indexed in {:.2} s, {} too large for the cell cache",
                fences.path.display(),
                index.len(),
                t.elapsed().as_secs_f64(),
                index.untiled_fences().unwrap_or(0)
            );
            if let Some(path) = beacons {
                let registry = BeaconRegistry::load(&path)
                    .with_context(|| format!("loading beacons from {}", path.display()))?;
                let stores: std::collections::HashSet<&str> = index
                    .fences()
                    .iter()
                    .map(|f| f.props.store_id.as_str())
                    .collect();
                let unknown: Vec<String> = registry
                    .iter()
                    .filter(|b| !stores.contains(b.store_id.as_str()))
                    .map(|b| format!("{} → {}", b.id, b.store_id))
                    .collect();
                if !unknown.is_empty() {
                    bail!(
                        "{}: {} beacon(s) name a store with no fence: {}",
                        path.display(),
                        unknown.len(),
                        unknown.join(", ")
                    );
                }
                println!(
                    "{}: {} beacons, every store_id has a fence",
                    path.display(),
                    registry.len()
                );
            }
        }
        Command::Replay {
            fences,
            beacons,
            campaigns,
            profiles,
            pings,
            config,
            offers,
            presence,
            dead_letters,
            summary,
            close_at_end,
            partitions,
        } => {
            let cfg: EngineConfig = match &config {
                Some(path) => beckon::config::read_file::<EngineConfig>(path)?,
                None => EngineConfig::default(),
            };
            if let Err((setting, e)) = cfg.validate() {
                bail!("invalid engine config: {setting}: {e}");
            }
            let files = WorldFiles {
                fences: fences.file(),
                beacons,
                campaigns,
            };
            let LoadedWorld { world, skipped } = World::load(&files, cfg.presence.exit_buffer_m)?;
            warn_skipped(&fences.path, &skipped);
            let mut engines = Partitions::new(Arc::new(world), cfg, partitions);
            if let Some(path) = &profiles {
                for (device_id, profile) in load_profiles(path)
                    .with_context(|| format!("loading profiles from {}", path.display()))?
                {
                    engines.on_profile(ProfileRecord::Upsert {
                        device_id: device_id.into(),
                        profile,
                    });
                }
            }
            let create = |p: &Path| -> Result<Box<dyn Write>> {
                if p == Path::new("-") {
                    return Ok(Box::new(io::stdout().lock()));
                }
                Ok(Box::new(BufWriter::new(
                    File::create(p).with_context(|| format!("creating {}", p.display()))?,
                )))
            };
            let mut offers_w = create(&offers)?;
            let mut presence_w = presence.as_deref().map(create).transpose()?;
            let mut dead_w = dead_letters.as_deref().map(create).transpose()?;
            let sinks = Sinks {
                offers: &mut offers_w,
                presence: presence_w.as_mut().map(|w| w as &mut dyn Write),
                dead_letters: dead_w.as_mut().map(|w| w as &mut dyn Write),
            };
            let input: Box<dyn BufRead> = if pings == Path::new("-") {
                Box::new(io::stdin().lock())
            } else {
                Box::new(BufReader::with_capacity(
                    1 << 20,
                    File::open(&pings)
                        .with_context(|| format!("opening pings {}", pings.display()))?,
                ))
            };
            let report = replay::run(&mut engines, input, sinks, close_at_end)
                .with_context(|| format!("replaying {}", pings.display()))?;
            for w in [Some(&mut offers_w), presence_w.as_mut(), dead_w.as_mut()]
                .into_iter()
                .flatten()
            {
                w.flush().context("writing output")?;
            }
            let json = serde_json::to_string_pretty(&report)?;
            eprintln!("{json}");
            if let Some(path) = summary {
                std::fs::write(&path, json + "\n")
                    .with_context(|| format!("writing {}", path.display()))?;
            }
        }
        Command::Run(args) => {
            let cfg = args.config().context("invalid configuration")?;
            init_logging(cfg.log.format, &cfg.log.level)?;
            let shutdown = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let hooks = Hooks {
                on_listen: Box::new(|_| {}),
                signals: true,
            };
            service::run(&cfg, shutdown, hooks)?;
        }
        Command::Demo { http, linger } => {
            let opts = DemoOptions {
                http,
                linger: std::time::Duration::from_secs(linger),
                ..DemoOptions::default()
            };
            let stop = opts.stop.clone();
            // Ctrl-C ends the demo early but cleanly: the engine drains and commits.
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                if let Ok(rt) = rt {
                    if rt.block_on(tokio::signal::ctrl_c()).is_ok() {
                        stop.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
            beckon::demo::run(io::stdout().lock(), &opts).context("running the demo")?
        }
        Command::Gen {
            fences,
            pings,
            devices,
            fixes_per_device,
            campaigns,
            seed,
            out,
        } => {
            let spec = GenSpec {
                fences,
                pings,
                seed,
            };
            std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
            let create = |name: &str| -> Result<BufWriter<File>> {
                let p = out.join(name);
                Ok(BufWriter::with_capacity(
                    1 << 20,
                    File::create(&p).with_context(|| format!("creating {}", p.display()))?,
                ))
            };
            let t = Instant::now();
            generate::write_fences(&spec, create("fences.geojson")?).context("writing fences")?;
            generate::write_pings(&spec, create("pings.jsonl")?).context("writing pings")?;
            if devices > 0 {
                let list = generate::campaign_values(&spec, campaigns);
                serde_json::to_writer_pretty(create("campaigns.json")?, &list)
                    .context("writing campaigns")?;
                generate::write_profiles(&spec, devices, create("profiles.jsonl")?)
                    .context("writing profiles")?;
                let fixes = devices.saturating_mul(fixes_per_device);
                generate::write_device_pings(&spec, devices, fixes, create("device-pings.jsonl")?)
                    .context("writing device pings")?;
            }
            eprintln!(
                "wrote {fences} fences and {pings} pings (seed {seed}) to {} in {:.1} s",
                out.display(),
                t.elapsed().as_secs_f64()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
