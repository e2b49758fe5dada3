//! Prometheus metrics of the streaming engine. Every handle is registered once at start and
//! indexed by an enum or a dense index (campaign, reason), so the hot path never formats a
//! label; no label ever holds a device id or a coordinate (bounded cardinality: types, reasons,
//! campaigns, partitions).
//!
//! The core counts in its own [`Stats`]; [`Metrics::record`] adds what changed since the last
//! call, once per batch.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::caps::Suppression;
use crate::engine::Stats;
use crate::ping::PingError;
use crate::world::World;

pub struct Metrics {
    registry: Registry,
    pings: IntCounterVec,
    dead_letters: IntCounterVec,
    offers: IntCounterVec,
    suppressions: Vec<IntCounter>,
    presence: Vec<IntCounter>,
    pub profiles: ProfileCounters,
    pub latency: Histogram,
    pub batch_seconds: Histogram,
    pub restore_seconds: Histogram,
    pub transactions_committed: IntCounter,
    pub transactions_aborted: IntCounter,
    lag: IntGaugeVec,
    pub fences: IntGauge,
    pub beacons: IntGauge,
    pub campaigns: IntGauge,
    pub reloads_applied: IntCounter,
    pub reloads_refused: IntCounter,
    pub devices: IntGauge,
    pub partitions: IntGauge,
}

pub struct ProfileCounters {
    pub upsert: IntCounter,
    pub delete: IntCounter,
    pub invalid: IntCounter,
}

/// Per-campaign offer counters of one world, in campaign index order.
pub struct CampaignCounters(Vec<IntCounter>);

/// What a partition's engine has already reported, so the next report adds only the change.
#[derive(Default)]
pub struct Reported(Stats);

impl From<&Stats> for Reported {
    /// Everything in `stats` counts as reported (e.g. after a reload renumbered campaigns).
    fn from(stats: &Stats) -> Self {
        Self(stats.clone())
    }
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let v = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(v.clone()))?;
            Ok::<_, prometheus::Error>(v)
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok::<_, prometheus::Error>(g)
        };
        let histogram = |name: &str, help: &str, buckets: Vec<f64>| {
            let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))?;
            registry.register(Box::new(h.clone()))?;
            Ok::<_, prometheus::Error>(h)
        };
        let pings = counter_vec(
            "beckon_pings_total",
            "Pings consumed, by type (location, beacon, invalid) and outcome.",
            &["type", "outcome"],
        )?;
        let dead_letters = counter_vec(
            "beckon_dead_letters_total",
            "Messages sent to the dead-letter topic, by reason.",
            &["reason"],
        )?;
        let offers = counter_vec(
            "beckon_offers_total",
            "Offers emitted, by campaign id.",
            &["campaign"],
        )?;
        let suppressions = counter_vec(
            "beckon_suppressions_total",
            "Offer candidates held back, by reason.",
            &["reason"],
        )?;
        let presence = counter_vec(
            "beckon_presence_events_total",
            "Presence events emitted, by event.",
            &["event"],
        )?;
        let profiles = counter_vec(
            "beckon_profiles_total",
            "Profile records consumed, by outcome.",
            &["outcome"],
        )?;
        let lag = IntGaugeVec::new(
            Opts::new(
                "beckon_consumer_lag_messages",
                "Messages of the pings topic not yet consumed, per assigned partition.",
            ),
            &["partition"],
        )?;
        registry.register(Box::new(lag.clone()))?;
        let reloads = counter_vec(
            "beckon_reloads_total",
            "Fence, beacon and campaign file reloads, by outcome (applied, refused).",
            &["outcome"],
        )?;
        let latency = histogram(
            "beckon_ping_to_offer_latency_seconds",
            "From the Kafka timestamp of the oldest ping in the batch that caused an offer to \
             the broker's acknowledgement of the offer (an upper bound per offer).",
            prometheus::exponential_buckets(0.0005, 2.0, 16)?,
        )?;
        let batch_seconds = histogram(
            "beckon_batch_duration_seconds",
            "Time the decision core spent on one consumed batch (decode, decide, encode).",
            prometheus::exponential_buckets(0.000_05, 2.0, 16)?,
        )?;
        let restore_seconds = histogram(
            "beckon_restore_duration_seconds",
            "Time to restore one assigned partition's engine from the state changelog.",
            prometheus::exponential_buckets(0.01, 2.0, 14)?,
        )?;
        let transactions = counter_vec(
            "beckon_transactions_total",
            "Kafka transactions (pipeline.guarantee: exactly_once), by outcome (committed, \
             aborted: the pipeline then starts over from the last commit).",
            &["outcome"],
        )?;
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        // Every label value known up front is created now, so a scrape shows zeros rather than
        // nothing before the first event.
        for (t, outcomes) in [
            ("location", &["accepted", "too_late", "imprecise"][..]),
            ("beacon", &["accepted", "too_late", "unknown_beacon"][..]),
            ("invalid", &["dead_letter"][..]),
        ] {
            for o in outcomes {
                pings.with_label_values(&[t, o]);
            }
        }
        for reason in PingError::KINDS {
            dead_letters.with_label_values(&[reason]);
        }
        Ok(Self {
            suppressions: Suppression::ALL
                .iter()
                .map(|r| suppressions.with_label_values(&[r.name()]))
                .collect(),
            presence: ["enter", "dwell", "exit"]
                .iter()
                .map(|e| presence.with_label_values(&[e]))
                .collect(),
            profiles: ProfileCounters {
                upsert: profiles.with_label_values(&["upsert"]),
                delete: profiles.with_label_values(&["delete"]),
                invalid: profiles.with_label_values(&["invalid"]),
            },
            fences: gauge("beckon_fences_loaded", "Fences in the serving world.")?,
            beacons: gauge("beckon_beacons_loaded", "Beacons in the serving world.")?,
            campaigns: gauge("beckon_campaigns_loaded", "Campaigns in the serving world.")?,
            reloads_applied: reloads.with_label_values(&["applied"]),
            reloads_refused: reloads.with_label_values(&["refused"]),
            devices: gauge(
                "beckon_devices_tracked",
                "Devices with state in this instance's engines.",
            )?,
            partitions: gauge(
                "beckon_assigned_partitions",
                "Pings partitions assigned to this instance.",
            )?,
            pings,
            dead_letters,
            offers,
            latency,
            batch_seconds,
            restore_seconds,
            transactions_committed: transactions.with_label_values(&["committed"]),
            transactions_aborted: transactions.with_label_values(&["aborted"]),
            lag,
            registry,
        })
    }

    /// The world now serving: gauges, and offer counters for its campaigns.
    pub fn world(&self, world: &World) -> CampaignCounters {
        self.fences.set(world.fences.len() as i64);
        self.beacons.set(world.beacons.len() as i64);
        self.campaigns.set(world.campaigns.len() as i64);
        CampaignCounters(
            world
                .campaigns
                .iter()
                .map(|(_, c)| self.offers.with_label_values(&[c.id.as_str()]))
                .collect(),
        )
    }

    pub fn dead_letter(&self, e: &PingError) {
        self.dead_letters.with_label_values(&[e.kind()]).inc();
        self.pings
            .with_label_values(&["invalid", "dead_letter"])
            .inc();
    }

    /// Adds what `stats` counted since `reported`.
    pub fn record(&self, stats: &Stats, reported: &mut Reported, offers: &CampaignCounters) {
        let was = &reported.0;
        let d = |now: u64, then: u64| now.saturating_sub(then);
        let late = [
            d(stats.too_late[0], was.too_late[0]),
            d(stats.too_late[1], was.too_late[1]),
        ];
        let imprecise = d(stats.imprecise, was.imprecise);
        let unknown = d(stats.unknown_beacon, was.unknown_beacon);
        let location = d(stats.location_pings, was.location_pings);
        let beacon = d(stats.beacon_pings, was.beacon_pings);
        for (labels, n) in [
            (["location", "accepted"], location.saturating_sub(imprecise)),
            (["location", "too_late"], late[0]),
            (["location", "imprecise"], imprecise),
            (["beacon", "accepted"], beacon.saturating_sub(unknown)),
            (["beacon", "too_late"], late[1]),
            (["beacon", "unknown_beacon"], unknown),
        ] {
            if n > 0 {
                self.pings.with_label_values(&labels).inc_by(n);
            }
        }
        for (c, (now, then)) in self
            .presence
            .iter()
            .zip(stats.presence.iter().zip(&was.presence))
        {
            c.inc_by(d(*now, *then));
        }
        // Slots past the world's campaigns are campaigns a reload removed: they make no offers.
        for ((&now, counter), i) in stats.offers.iter().zip(&offers.0).zip(0..) {
            let then = was.offers.get(i).copied().unwrap_or(0);
            if now > then {
                counter.inc_by(now - then);
            }
        }
        for (i, per) in stats.suppressed.iter().enumerate() {
            let then = was.suppressed.get(i);
            for (r, &now) in per.iter().enumerate() {
                let then = then.map_or(0, |t| t[r]);
                if now > then {
                    self.suppressions[r].inc_by(now - then);
                }
            }
        }
        reported.0.clone_from(stats);
    }

    pub fn set_lag(&self, partition: i32, lag: i64) {
        self.lag
            .with_label_values(&[partition.to_string().as_str()])
            .set(lag);
    }

    pub fn forget_partition(&self, partition: i32) {
        let _ = self
            .lag
            .remove_label_values(&[partition.to_string().as_str()]);
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        // Encoding into a Vec fails only on metric families the registry never holds.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recording_twice_adds_only_the_change() {
        let m = Metrics::new().unwrap();
        let mut reported = Reported::default();
        let offers = CampaignCounters(vec![m.offers.with_label_values(&["c-1"])]);
        let mut stats = Stats {
            location_pings: 10,
            imprecise: 2,
            offers: vec![3],
            suppressed: vec![[0; Suppression::ALL.len()]],
            ..Stats::default()
        };
        stats.suppressed[0][Suppression::Cooldown.index()] = 4;
        m.record(&stats, &mut reported, &offers);
        stats.location_pings = 15;
        stats.offers[0] = 5;
        m.record(&stats, &mut reported, &offers);
        let text = String::from_utf8(m.encode()).unwrap();
        for want in [
            "beckon_pings_total{outcome=\"accepted\",type=\"location\"} 13",
            "beckon_pings_total{outcome=\"imprecise\",type=\"location\"} 2",
            "beckon_offers_total{campaign=\"c-1\"} 5",
            "beckon_suppressions_total{reason=\"cooldown\"} 4",
            "beckon_dead_letters_total{reason=\"json\"} 0",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
    }
}
