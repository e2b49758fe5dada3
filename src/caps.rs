//! Caps: how often a device may be offered anything, and how much a campaign may spend.
//!
//! Per device: a ledger of its recent offers answers cooldowns, per-campaign window caps and the
//! global cap per local calendar day. Per campaign: daily and total budgets. Quiet hours are read
//! in the store's or the device's local time.
//!
//! Windows are checked on both sides of the candidate's time: offers can be decided out of
//! event-time order (an exit is dated at the first outside fix, confirmed later), and a cap must
//! hold for every window of its length whatever order offers were decided in.

use rustc_hash::FxHashMap;
use serde::Deserialize;

use crate::campaign::{Campaign, CampaignIdx};
use crate::local_time::{DailyWindow, LocalDay, Zone};
use crate::reload::CampaignSlots;
use crate::time::Timestamp;

/// Why a candidate offer was not made. The order is the order of the checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Suppression {
    /// The device refused consent, or has no profile and the campaign is not for anonymous
    /// devices.
    NoConsent,
    /// Not in the campaign's audience (or not routed to this store).
    Audience,
    /// Outside the campaign's dates, days or hours.
    Schedule,
    /// The store is closed.
    Closed,
    QuietHours,
    /// This visit already had an offer.
    Visit,
    /// Another candidate of the same ping won the visit (higher priority, or same and smaller id).
    Arbitration,
    Cooldown,
    /// The campaign's per-device window cap.
    CampaignCap,
    /// The global per-device cap per local day.
    DailyCap,
    DailyBudget,
    TotalBudget,
}

impl Suppression {
    pub const ALL: [Suppression; 12] = [
        Self::NoConsent,
        Self::Audience,
        Self::Schedule,
        Self::Closed,
        Self::QuietHours,
        Self::Visit,
        Self::Arbitration,
        Self::Cooldown,
        Self::CampaignCap,
        Self::DailyCap,
        Self::DailyBudget,
        Self::TotalBudget,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::NoConsent => "no_consent",
            Self::Audience => "audience",
            Self::Schedule => "schedule",
            Self::Closed => "closed",
            Self::QuietHours => "quiet_hours",
            Self::Visit => "visit",
            Self::Arbitration => "arbitration",
            Self::Cooldown => "cooldown",
            Self::CampaignCap => "campaign_cap",
            Self::DailyCap => "daily_cap",
            Self::DailyBudget => "daily_budget",
            Self::TotalBudget => "total_budget",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// Whose local time quiet hours and the daily cap are read in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LocalTimeOf {
    Store,
    /// The device's profile attribute `timezone` (an IANA name); the store's when it has none.
    Device,
}

/// Limits across all campaigns.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CapsConfig {
    /// At most this many offers per device per local calendar day, all campaigns together
    /// (0: no cap).
    pub per_device_daily: u32,
    /// No offers during these local hours, e.g. `"21:00-09:00"`.
    pub quiet_hours: Option<DailyWindow>,
    pub local_time: LocalTimeOf,
    /// At most one offer per device per visit to a store.
    pub one_offer_per_visit: bool,
}

impl Default for CapsConfig {
    fn default() -> Self {
        Self {
            per_device_daily: 3,
            quiet_hours: None,
            local_time: LocalTimeOf::Store,
            one_offer_per_visit: true,
        }
    }
}

/// One offer made to a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Issued {
    pub campaign: CampaignIdx,
    pub at: Timestamp,
}

/// A device's recent offers, oldest first. Exactly sized (see `presence::Tracks`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ledger(Vec<Issued>);

const DAY_MS: i64 = 86_400_000;

impl Ledger {
    pub fn iter(&self) -> impl Iterator<Item = &Issued> {
        self.0.iter()
    }

    /// A ledger restored from the changelog, in its order.
    pub(crate) fn restored(mut issued: Vec<Issued>) -> Self {
        issued.shrink_to_fit();
        Self(issued)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The per-device checks for campaign `c` at `at`; `day` is the local calendar day `at`
    /// falls in, as `[start, end)`.
    pub fn check(
        &self,
        ci: CampaignIdx,
        c: &Campaign,
        at: Timestamp,
        day: (Timestamp, Timestamp),
        per_device_daily: u32,
    ) -> Result<(), Suppression> {
        let near = |w: i64| {
            self.0
                .iter()
                .filter(move |e| e.campaign == ci && (e.at.0 - at.0).abs() < w)
        };
        let cooldown = i64::from(c.caps.cooldown_s) * 1000;
        if cooldown > 0 && near(cooldown).next().is_some() {
            return Err(Suppression::Cooldown);
        }
        for w in &c.caps.per_device {
            if near(i64::from(w.window_s) * 1000).count() >= w.max as usize {
                return Err(Suppression::CampaignCap);
            }
        }
        if per_device_daily > 0 {
            let today = self
                .0
                .iter()
                .filter(|e| e.at >= day.0 && e.at < day.1)
                .count();
            if today >= per_device_daily as usize {
                return Err(Suppression::DailyCap);
            }
        }
        Ok(())
    }

    pub fn record(&mut self, campaign: CampaignIdx, at: Timestamp) {
        let i = self.0.partition_point(|e| e.at <= at);
        self.0.reserve_exact(1);
        self.0.insert(i, Issued { campaign, at });
    }

    /// Moves the entries to their campaigns' new slots (see `Engine::replace_world`).
    pub fn renumber(&mut self, slots: &CampaignSlots) {
        for e in self.0.iter_mut() {
            e.campaign = slots.get(e.campaign);
        }
    }

    /// Forgets offers no cap can see any more from `now`, the oldest time an offer still to
    /// come can be dated at: each is kept for its own campaign's `horizon_ms` (longest window or
    /// cooldown), and two days for the daily cap in any zone.
    pub fn prune(&mut self, now: Timestamp, horizon_ms: impl Fn(CampaignIdx) -> i64) {
        let before = self.0.len();
        self.0
            .retain(|e| e.at.0 >= now.0 - horizon_ms(e.campaign).max(2 * DAY_MS));
        if self.0.len() != before {
            self.0.shrink_to_fit();
        }
    }
}

/// Which part of every campaign budget one engine may spend: budgets are shared by all devices,
/// and devices are split over Kafka partitions, one engine each. Partition `index` of `count`
/// gets `budget / count`, plus one of the remainder if `index < budget % count`, so the shares
/// add up to the budget exactly and no engine needs to hear from another (README,
/// "Scale-out").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    pub index: u32,
    pub count: u32,
}

impl Share {
    /// The whole budget: one engine sees every device (`beckon replay --partitions 1`).
    pub const WHOLE: Share = Share { index: 0, count: 1 };

    /// This share of `budget`.
    pub fn of(self, budget: u64) -> u64 {
        let count = u64::from(self.count.max(1));
        budget / count + u64::from(u64::from(self.index) < budget % count)
    }
}

/// Campaign budgets: offers so far, in total and per day in the budget's zone, against this
/// engine's share of each.
#[derive(Debug, Clone)]
pub struct Budgets {
    share: Share,
    total: Vec<u64>,
    daily: FxHashMap<(CampaignIdx, LocalDay), u32>,
}

impl Budgets {
    pub fn new(campaigns: usize, share: Share) -> Self {
        Self {
            share,
            total: vec![0; campaigns],
            daily: FxHashMap::default(),
        }
    }

    pub fn share(&self) -> Share {
        self.share
    }

    /// Campaign slots: the world's campaigns, then retired ones.
    pub fn slots(&self) -> usize {
        self.total.len()
    }

    pub fn spent(&self, c: CampaignIdx) -> u64 {
        self.total[c.get()]
    }

    /// What campaign slot `c` spent per day, by day.
    pub fn daily_spent(&self, c: CampaignIdx) -> Vec<(LocalDay, u32)> {
        let mut days: Vec<_> = (self.daily.iter())
            .filter(|((ci, _), _)| *ci == c)
            .map(|(&(_, day), &n)| (day, n))
            .collect();
        days.sort_unstable_by_key(|&(d, _)| d.0);
        days
    }

    /// Sets what campaign slot `c` spent (a restore from the changelog).
    pub(crate) fn restore(&mut self, c: CampaignIdx, total: u64, daily: &[(LocalDay, u32)]) {
        self.total[c.get()] = total;
        for &(day, n) in daily {
            self.daily.insert((c, day), n);
        }
    }

    /// Moves what each campaign spent to its new slot (see `Engine::replace_world`).
    pub fn renumber(&mut self, slots: &CampaignSlots) {
        self.total = slots.carry(&self.total);
        self.daily = std::mem::take(&mut self.daily)
            .into_iter()
            .map(|((c, day), n)| ((slots.get(c), day), n))
            .collect();
    }

    fn day(c: &Campaign, at: Timestamp) -> LocalDay {
        c.budget.timezone.local(at).day
    }

    pub fn check(&self, ci: CampaignIdx, c: &Campaign, at: Timestamp) -> Result<(), Suppression> {
        if let Some(daily) = c.budget.daily {
            let spent = self.daily.get(&(ci, Self::day(c, at))).copied();
            if u64::from(spent.unwrap_or(0)) >= self.share.of(u64::from(daily)) {
                return Err(Suppression::DailyBudget);
            }
        }
        if (c.budget.total).is_some_and(|t| self.total[ci.get()] >= self.share.of(t)) {
            return Err(Suppression::TotalBudget);
        }
        Ok(())
    }

    pub fn record(&mut self, ci: CampaignIdx, c: &Campaign, at: Timestamp) {
        self.total[ci.get()] += 1;
        if c.budget.daily.is_some() {
            *self.daily.entry((ci, Self::day(c, at))).or_insert(0) += 1;
        }
    }
}

/// The local calendar day `at` falls in, as `[start, end)`.
pub fn local_day(zone: &Zone, at: Timestamp) -> (Timestamp, Timestamp) {
    let day = zone.local(at).day;
    (zone.day_start(day), zone.day_start(LocalDay(day.0 + 1)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::campaign::parse_campaigns;

    #[test]
    fn budget_shares_add_up_to_the_budget_and_differ_by_at_most_one() {
        for count in 1..=12u32 {
            for budget in [0u64, 1, 5, 11, 12, 13, 1000, 1001] {
                let shares: Vec<u64> = (0..count)
                    .map(|index| Share { index, count }.of(budget))
                    .collect();
                assert_eq!(shares.iter().sum::<u64>(), budget, "{budget} over {count}");
                let (lo, hi) = (shares.iter().min().unwrap(), shares.iter().max().unwrap());
                assert!(hi - lo <= 1, "{budget} over {count}: {shares:?}");
            }
        }
    }

    #[test]
    fn window_caps_hold_whatever_order_offers_are_decided_in() {
        let c = parse_campaigns(
            br#"{"id":"x","name":"X","trigger":{"type":"exit"},"offer":{"title":"t","ttl_s":1},
                "caps":{"per_device":[{"max":2,"window_s":3600}]}}"#,
            false,
            "t",
        )
        .unwrap()
        .remove(0);
        let ci = CampaignIdx(0);
        let day = (Timestamp(i64::MIN), Timestamp(i64::MAX));
        let mut ledger = Ledger::default();
        let min = |m: i64| Timestamp(m * 60_000);
        ledger.record(ci, min(100));
        ledger.record(ci, min(130));
        // An exit dated before both, decided after them: an hour from 75 would hold three.
        assert_eq!(
            ledger.check(ci, &c, min(75), day, 0),
            Err(Suppression::CampaignCap)
        );
        assert_eq!(ledger.check(ci, &c, min(30), day, 0), Ok(()));
        assert_eq!(
            ledger.check(CampaignIdx(1), &c, min(100), day, 2),
            Err(Suppression::DailyCap)
        );
        ledger.prune(min(100 + 3 * 24 * 60), |_| 3_600_000);
        assert!(ledger.is_empty());
    }
}
