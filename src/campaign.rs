//! Campaigns: what marketing defines — where (stores, brands, regions, kinds), when (schedule in
//! the store's local time, opening hours), who (audience), what (offer template) and how often
//! (per-campaign caps, budgets) — parsed once from JSON or YAML into valid [`Campaign`]s, then
//! compiled against the fences into lookups the engine uses per transition.
//!
//! A file holds one campaign or a list of them; a directory holds such files (`*.json`,
//! `*.yaml`, `*.yml`). Every error names the file, the campaign and the field.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};
use smallvec::SmallVec;

use crate::audience::Rule;
use crate::fence::{Fence, FenceIdx, FenceIndex};
use crate::json_type;
use crate::local_time::{DailyWindow, LocalTime, Weekday, Zone};
use crate::profile::Profile;
use crate::reach::ReachIndex;
use crate::store::{StoreIdx, Stores};
use crate::time::Timestamp;

/// A campaign's position in the loaded set (sorted by id, so ties break by id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CampaignIdx(pub u32);

impl CampaignIdx {
    pub fn get(self) -> usize {
        self.0 as usize
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Active,
    Paused,
    Draft,
    Ended,
}

/// What makes a device a candidate.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum Trigger {
    Enter,
    Dwell {
        /// Seconds inside the fence.
        min_s: u32,
    },
    Exit,
    /// A beacon of a selected store comes in range; `zones` (e.g. `tasting-bar`) narrows which.
    Beacon {
        #[serde(default)]
        zones: Vec<String>,
    },
    /// The device comes within `within_m` metres of a selected fence's edge (or inside it).
    Nearby {
        within_m: f64,
    },
}

/// The `trigger` field of offers (CONTRACTS §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TriggerKind {
    Enter,
    Dwell,
    Exit,
    Beacon,
    Nearby,
}

impl TriggerKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Enter => "enter",
            Self::Dwell => "dwell",
            Self::Exit => "exit",
            Self::Beacon => "beacon",
            Self::Nearby => "nearby",
        }
    }
}

impl Trigger {
    pub fn kind(&self) -> TriggerKind {
        match self {
            Self::Enter => TriggerKind::Enter,
            Self::Dwell { .. } => TriggerKind::Dwell,
            Self::Exit => TriggerKind::Exit,
            Self::Beacon { .. } => TriggerKind::Beacon,
            Self::Nearby { .. } => TriggerKind::Nearby,
        }
    }
}

/// When a campaign runs. Days and hours are read in the store's time zone.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    pub start: Option<Timestamp>,
    /// Exclusive.
    pub end: Option<Timestamp>,
    /// Empty: every day.
    #[serde(default)]
    pub days: Vec<Weekday>,
    /// Local times of day; empty: all day.
    #[serde(default)]
    pub hours: Vec<DailyWindow>,
    /// Only while the store is open (its fence's `hours`); default true.
    #[serde(default = "yes")]
    pub opening_hours: bool,
}

fn yes() -> bool {
    true
}

impl Default for Schedule {
    fn default() -> Self {
        Self {
            start: None,
            end: None,
            days: Vec::new(),
            hours: Vec::new(),
            opening_hours: true,
        }
    }
}

/// Which fences a campaign is about. Each non-empty list must match (any of its values).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Place {
    #[serde(default)]
    pub stores: Vec<String>,
    #[serde(default)]
    pub brands: Vec<String>,
    #[serde(default)]
    pub regions: Vec<String>,
    #[serde(default)]
    pub kinds: Vec<String>,
    #[serde(default)]
    pub fences: Vec<String>,
    /// Only fences whose property lists the device's attribute value, e.g. a brand's shops
    /// authorized for the visitor's home region.
    pub route: Option<Route>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Fence property (metadata): a string or a list of strings, e.g. `authorized_regions`.
    pub property: String,
    /// Profile attribute (a string), e.g. `home_region`.
    pub attribute: String,
}

impl Place {
    fn selects(&self, fence: &Fence) -> bool {
        let p = &fence.props;
        let any = |list: &[String], v: Option<&str>| {
            list.is_empty() || v.is_some_and(|v| list.iter().any(|x| x == v))
        };
        any(&self.stores, Some(&p.store_id))
            && any(&self.brands, p.brand.as_deref())
            && any(&self.regions, p.region.as_deref())
            && any(&self.kinds, p.kind.as_deref())
            && any(&self.fences, Some(&fence.id))
    }

    /// The device-dependent part of the selection.
    pub fn routes(&self, fence: &Fence, profile: Option<&Profile>) -> bool {
        let Some(route) = &self.route else {
            return true;
        };
        let Some(crate::profile::AttrValue::Text(want)) =
            profile.and_then(|p| p.get(&route.attribute))
        else {
            return false;
        };
        match fence.props.metadata.get(&route.property) {
            Some(Value::String(s)) => s == &**want,
            Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(want)),
            _ => false,
        }
    }
}

/// A per-device cap over a sliding window.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowCap {
    pub max: u32,
    pub window_s: u32,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignCaps {
    /// At most `max` offers of this campaign per device within any `window_s`.
    #[serde(default)]
    pub per_device: Vec<WindowCap>,
    /// No offer of this campaign to a device within this many seconds of its previous one.
    #[serde(default)]
    pub cooldown_s: u32,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// Offers over the campaign's life, all devices together.
    pub total: Option<u64>,
    /// Offers per calendar day in `timezone`.
    pub daily: Option<u32>,
    #[serde(default = "Zone::utc")]
    pub timezone: Zone,
}

impl Default for Budget {
    fn default() -> Self {
        Self {
            total: None,
            daily: None,
            timezone: Zone::utc(),
        }
    }
}

/// One piece of an offer text.
#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    Text(String),
    StoreName,
    StoreId,
    FenceId,
    Brand,
    Region,
    CampaignName,
    CouponCode,
    ExpiresAt,
    DistanceM,
    /// A fence metadata value (`{meta.floor}`).
    Meta(String),
}

/// Offer text with `{placeholder}`s, checked at load.
#[derive(Debug, Clone, PartialEq)]
pub struct Template(pub Vec<Piece>);

pub const PLACEHOLDERS: &str = "store_name, store_id, fence_id, brand, region, campaign_name, coupon_code, expires_at, distance_m, meta.<property>";

impl Template {
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut pieces = Vec::new();
        let mut rest = s;
        while let Some(open) = rest.find(['{', '}']) {
            if rest[open..].starts_with('}') {
                return Err(format!(
                    "unmatched '}}' at byte {}",
                    s.len() - rest.len() + open
                ));
            }
            if open > 0 {
                pieces.push(Piece::Text(rest[..open].to_owned()));
            }
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| format!("unclosed '{{' at byte {}", s.len() - rest.len() + open))?;
            let name = &rest[open + 1..open + close];
            pieces.push(match name {
                "store_name" => Piece::StoreName,
                "store_id" => Piece::StoreId,
                "fence_id" => Piece::FenceId,
                "brand" => Piece::Brand,
                "region" => Piece::Region,
                "campaign_name" => Piece::CampaignName,
                "coupon_code" => Piece::CouponCode,
                "expires_at" => Piece::ExpiresAt,
                "distance_m" => Piece::DistanceM,
                m if m.starts_with("meta.") && m.len() > 5 => Piece::Meta(m[5..].to_owned()),
                other => {
                    return Err(format!(
                        "unknown placeholder {{{other}}} (known: {PLACEHOLDERS})"
                    ))
                }
            });
            rest = &rest[open + close + 1..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_owned()));
        }
        Ok(Self(pieces))
    }

    pub fn uses(&self, piece: &Piece) -> bool {
        self.0.contains(piece)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct OfferTemplate {
    pub title: Template,
    pub body: Template,
    /// Coupon codes are this prefix plus 16 characters derived from the offer; none if absent.
    pub coupon_prefix: Option<String>,
    pub ttl_s: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOffer {
    title: String,
    #[serde(default)]
    body: String,
    coupon_prefix: Option<String>,
    ttl_s: u32,
}

/// A valid campaign.
#[derive(Debug, Clone)]
pub struct Campaign {
    pub id: String,
    pub name: String,
    pub status: Status,
    /// Higher wins when several campaigns could make the same offer; ties go to the smaller id.
    pub priority: i32,
    pub schedule: Schedule,
    pub trigger: Trigger,
    pub place: Place,
    /// `None`: everyone who consented.
    pub audience: Option<Rule>,
    /// Devices without a profile qualify (they have not refused consent; they never gave it).
    pub anonymous: bool,
    pub offer: OfferTemplate,
    pub caps: CampaignCaps,
    pub budget: Budget,
}

const MAX_ID_LEN: usize = 64;

/// A campaign that is not valid, and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{source_name}: campaign {campaign}: {field}: {reason}")]
pub struct CampaignError {
    /// The file (and position in it) the campaign came from.
    pub source_name: String,
    /// Its id, or `#n` when it has none.
    pub campaign: String,
    pub field: String,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CampaignFileError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not JSON or YAML: {reason}")]
    Syntax { path: PathBuf, reason: String },
    #[error("{} invalid campaign(s), none loaded:\n  {}", .0.len(), .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  "))]
    Invalid(Vec<CampaignError>),
}

impl Campaign {
    /// Parses one campaign from a JSON value (YAML is converted to one first).
    pub fn from_value(v: Value, source_name: &str, n: usize) -> Result<Self, CampaignError> {
        let mut m = match v {
            Value::Object(m) => m,
            other => {
                return Err(CampaignError {
                    source_name: source_name.into(),
                    campaign: format!("#{n}"),
                    field: "(campaign)".into(),
                    reason: format!("expected an object, got {}", json_type::name(&other)),
                })
            }
        };
        let label = match m.get("id") {
            Some(Value::String(s)) => s.clone(),
            _ => format!("#{n}"),
        };
        let err = |field: &str, reason: String| CampaignError {
            source_name: source_name.into(),
            campaign: label.clone(),
            field: field.into(),
            reason,
        };
        let c = Self::fields(&mut m, &err)?;
        if let Some(k) = m.keys().next() {
            return Err(err(k, format!("unknown field (known: {FIELDS})")));
        }
        Ok(c)
    }

    fn fields(
        m: &mut Map<String, Value>,
        err: &dyn Fn(&str, String) -> CampaignError,
    ) -> Result<Self, CampaignError> {
        fn take<T: DeserializeOwned>(
            m: &mut Map<String, Value>,
            key: &str,
            err: &dyn Fn(&str, String) -> CampaignError,
        ) -> Result<Option<T>, CampaignError> {
            match m.remove(key) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => serde_json::from_value(v)
                    .map(Some)
                    .map_err(|e| err(key, e.to_string())),
            }
        }
        fn required<T>(
            v: Option<T>,
            key: &str,
            err: &dyn Fn(&str, String) -> CampaignError,
        ) -> Result<T, CampaignError> {
            v.ok_or_else(|| err(key, "missing".into()))
        }
        let id: String = required(take(m, "id", err)?, "id", err)?;
        if id.is_empty()
            || id.len() > MAX_ID_LEN
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err(err(
                "id",
                format!("{id:?} must be 1..={MAX_ID_LEN} characters of a-z A-Z 0-9 - _ ."),
            ));
        }
        let name: String = required(take(m, "name", err)?, "name", err)?;
        let status = take(m, "status", err)?.unwrap_or(Status::Active);
        let priority = take(m, "priority", err)?.unwrap_or(0);
        let schedule: Schedule = take(m, "schedule", err)?.unwrap_or_default();
        if let (Some(s), Some(e)) = (schedule.start, schedule.end) {
            if s >= e {
                return Err(err("schedule", format!("start {s} is not before end {e}")));
            }
        }
        let trigger: Trigger = required(take(m, "trigger", err)?, "trigger", err)?;
        match trigger {
            Trigger::Dwell { min_s: 0 } => return Err(err("trigger.min_s", "must be > 0".into())),
            Trigger::Nearby { within_m }
                if !(within_m.is_finite() && within_m > 0.0 && within_m <= 5_000.0) =>
            {
                return Err(err(
                    "trigger.within_m",
                    format!("must be in (0, 5000] metres, got {within_m}"),
                ))
            }
            _ => {}
        }
        let place: Place = take(m, "where", err)?.unwrap_or_default();
        let anonymous = take(m, "anonymous", err)?.unwrap_or(false);
        let audience = match m.remove("audience") {
            None | Some(Value::Null) => None,
            Some(v) => {
                Some(Rule::parse(&v, "audience").map_err(|e| err(&e.path, e.reason.to_string()))?)
            }
        };
        if anonymous && (audience.is_some() || place.route.is_some()) {
            return Err(err(
                "anonymous",
                "anonymous campaigns cannot have an audience or a route: devices without a profile have no attributes".into(),
            ));
        }
        let raw: RawOffer = required(take(m, "offer", err)?, "offer", err)?;
        let offer = OfferTemplate {
            title: Template::parse(&raw.title).map_err(|e| err("offer.title", e))?,
            body: Template::parse(&raw.body).map_err(|e| err("offer.body", e))?,
            coupon_prefix: raw.coupon_prefix,
            ttl_s: raw.ttl_s,
        };
        if raw.title.trim().is_empty() {
            return Err(err("offer.title", "must not be empty".into()));
        }
        if offer.ttl_s == 0 {
            return Err(err("offer.ttl_s", "must be > 0".into()));
        }
        let coupon = Piece::CouponCode;
        if offer.coupon_prefix.is_none() && (offer.title.uses(&coupon) || offer.body.uses(&coupon))
        {
            return Err(err(
                "offer",
                "{coupon_code} is used but there is no coupon_prefix".into(),
            ));
        }
        let caps: CampaignCaps = take(m, "caps", err)?.unwrap_or_default();
        if let Some(w) = caps
            .per_device
            .iter()
            .find(|w| w.max == 0 || w.window_s == 0)
        {
            return Err(err(
                "caps.per_device",
                format!("max and window_s must be > 0, got {w:?}"),
            ));
        }
        let budget: Budget = take(m, "budget", err)?.unwrap_or_default();
        Ok(Self {
            id,
            name,
            status,
            priority,
            schedule,
            trigger,
            place,
            audience,
            anonymous,
            offer,
            caps,
            budget,
        })
    }

    /// Whether the schedule allows an offer at `at`, seen in the store's local time `local`.
    pub fn in_schedule(&self, at: Timestamp, local: LocalTime) -> bool {
        let s = &self.schedule;
        s.start.is_none_or(|t| at >= t)
            && s.end.is_none_or(|t| at < t)
            && (s.days.is_empty() || s.days.contains(&local.weekday))
            && (s.hours.is_empty() || s.hours.iter().any(|w| w.contains(local.second_of_day)))
    }

    /// The longest span of the past its caps look at, in ms.
    pub fn horizon_ms(&self) -> i64 {
        let windows = self.caps.per_device.iter().map(|w| w.window_s);
        i64::from(windows.chain([self.caps.cooldown_s]).max().unwrap_or(0)) * 1000
    }
}

const FIELDS: &str = "id, name, status, priority, schedule, trigger, where, audience, anonymous, offer, caps, budget";

/// Parses campaigns from one file's bytes: a campaign, a list of campaigns, or
/// `{"campaigns": [...]}`; JSON, or YAML when `yaml`.
pub fn parse_campaigns(
    bytes: &[u8],
    yaml: bool,
    source_name: &str,
) -> Result<Vec<Campaign>, CampaignFileError> {
    let syntax = |reason: String| CampaignFileError::Syntax {
        path: source_name.into(),
        reason,
    };
    let v: Value = if yaml {
        serde_yaml_ng::from_slice(bytes).map_err(|e| syntax(e.to_string()))?
    } else {
        serde_json::from_slice(bytes).map_err(|e| syntax(e.to_string()))?
    };
    let items = match v {
        Value::Array(a) => a,
        Value::Object(mut m) if m.len() == 1 && m.contains_key("campaigns") => {
            match m.remove("campaigns") {
                Some(Value::Array(a)) => a,
                _ => return Err(syntax("`campaigns` must be a list".into())),
            }
        }
        other => vec![other],
    };
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (n, v) in items.into_iter().enumerate() {
        match Campaign::from_value(v, source_name, n) {
            Ok(c) => out.push(c),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(CampaignFileError::Invalid(errors))
    }
}

/// Loads a campaign file, or every `*.json` / `*.yaml` / `*.yml` file of a directory (in name
/// order). Ids must be unique across all of them.
pub fn load_campaigns(path: &Path) -> Result<Vec<Campaign>, CampaignFileError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| CampaignFileError::Io { path, source }
    };
    let files = if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(io(path))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("json" | "yaml" | "yml")
                )
            })
            .collect();
        files.sort();
        files
    } else {
        vec![path.to_owned()]
    };
    let mut all: Vec<(String, Campaign)> = Vec::new();
    let mut errors = Vec::new();
    for file in files {
        let bytes = std::fs::read(&file).map_err(io(&file))?;
        let yaml = matches!(
            file.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        );
        let name = file.display().to_string();
        match parse_campaigns(&bytes, yaml, &name) {
            Ok(cs) => all.extend(cs.into_iter().map(|c| (name.clone(), c))),
            Err(CampaignFileError::Invalid(es)) => errors.extend(es),
            Err(e) => return Err(e),
        }
    }
    let mut seen: rustc_hash::FxHashMap<&str, &str> = Default::default();
    for (file, c) in &all {
        if let Some(first) = seen.insert(&c.id, file) {
            errors.push(CampaignError {
                source_name: file.clone(),
                campaign: c.id.clone(),
                field: "id".into(),
                reason: format!("duplicate id (first in {first})"),
            });
        }
    }
    if errors.is_empty() {
        Ok(all.into_iter().map(|(_, c)| c).collect())
    } else {
        Err(CampaignFileError::Invalid(errors))
    }
}

/// The loaded campaigns, compiled against the fences: for each fence and store, the active
/// campaigns a transition there can trigger.
pub struct Campaigns {
    list: Vec<Campaign>,
    /// The campaigns selecting each fence, by trigger (enter, dwell, exit, nearby): a
    /// transition looks only at the campaigns it can trigger.
    by_fence: [Vec<SmallVec<[CampaignIdx; 2]>>; 4],
    /// Beacon campaigns selecting each store (through any of its fences).
    by_store: Vec<SmallVec<[CampaignIdx; 2]>>,
    /// Where nearby campaigns reach.
    reach: ReachIndex,
}

impl fmt::Debug for Campaigns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Campaigns")
            .field("campaigns", &self.list.len())
            .finish()
    }
}

impl Campaigns {
    /// `reach_slack_m`: how far beyond a nearby campaign's reach fixes are still reported (the
    /// presence exit buffer).
    pub fn compile(
        mut list: Vec<Campaign>,
        fences: &FenceIndex,
        stores: &Stores,
        reach_slack_m: f64,
    ) -> Self {
        list.sort_by(|a, b| a.id.cmp(&b.id));
        let mut by_fence: [Vec<SmallVec<[CampaignIdx; 2]>>; 4] =
            std::array::from_fn(|_| vec![SmallVec::new(); fences.len()]);
        let mut by_store = vec![SmallVec::new(); stores.len()];
        let mut reach_radius = vec![0.0f64; fences.len()];
        for (ci, c) in list.iter().enumerate() {
            if c.status != Status::Active {
                continue;
            }
            let ci = CampaignIdx(ci as u32);
            for (fi, fence) in fences.fences().iter().enumerate() {
                if !c.place.selects(fence) {
                    continue;
                }
                match &c.trigger {
                    Trigger::Enter => by_fence[0][fi].push(ci),
                    Trigger::Dwell { .. } => by_fence[1][fi].push(ci),
                    Trigger::Exit => by_fence[2][fi].push(ci),
                    Trigger::Nearby { within_m } => {
                        by_fence[3][fi].push(ci);
                        reach_radius[fi] = reach_radius[fi].max(*within_m);
                    }
                    Trigger::Beacon { .. } => {
                        let s: &mut SmallVec<_> =
                            &mut by_store[stores.of_fence(FenceIdx(fi as u32)).get()];
                        if s.last() != Some(&ci) {
                            s.push(ci);
                        }
                    }
                }
            }
        }
        let reach = ReachIndex::new(reach_radius, fences, reach_slack_m);
        Self {
            list,
            by_fence,
            by_store,
            reach,
        }
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn get(&self, c: CampaignIdx) -> &Campaign {
        &self.list[c.get()]
    }

    /// [`Campaign::horizon_ms`] of `c`, or 0 past the loaded campaigns: an engine's slot for a
    /// campaign a reload removed, whose offers then count only for the daily cap.
    pub fn horizon_ms(&self, c: CampaignIdx) -> i64 {
        self.list.get(c.get()).map_or(0, Campaign::horizon_ms)
    }

    pub fn iter(&self) -> impl Iterator<Item = (CampaignIdx, &Campaign)> {
        self.list
            .iter()
            .enumerate()
            .map(|(i, c)| (CampaignIdx(i as u32), c))
    }

    /// The active campaigns a `trigger` at fence `f` can make offers for (beacon campaigns are
    /// by store: [`Campaigns::at_store`]).
    pub fn at_fence(&self, f: FenceIdx, trigger: TriggerKind) -> &[CampaignIdx] {
        let k = match trigger {
            TriggerKind::Enter => 0,
            TriggerKind::Dwell => 1,
            TriggerKind::Exit => 2,
            TriggerKind::Nearby => 3,
            TriggerKind::Beacon => return &[],
        };
        &self.by_fence[k][f.get()]
    }

    pub fn at_store(&self, s: StoreIdx) -> &[CampaignIdx] {
        &self.by_store[s.get()]
    }

    /// Where nearby campaigns reach: see [`ReachIndex::query`].
    pub fn reach(&self) -> &ReachIndex {
        &self.reach
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Vec<Campaign>, CampaignFileError> {
        parse_campaigns(json.as_bytes(), false, "c.json")
    }

    fn error(json: &str) -> String {
        match parse(json) {
            Err(e) => e.to_string(),
            Ok(c) => panic!("accepted {c:?}"),
        }
    }

    const MINIMAL: &str = r#"{"id":"x","name":"X","trigger":{"type":"enter"},"offer":{"title":"Hi {store_name}","ttl_s":60}}"#;

    #[test]
    fn a_minimal_campaign_gets_defaults() {
        let c = &parse(MINIMAL).unwrap()[0];
        assert_eq!(
            (c.status, c.priority, c.anonymous),
            (Status::Active, 0, false)
        );
        assert!(c.schedule.opening_hours);
        assert_eq!(
            c.offer.title.0,
            [Piece::Text("Hi ".into()), Piece::StoreName]
        );
    }

    #[test]
    fn yaml_and_json_give_the_same_campaign() {
        let yaml = "id: x\nname: X\ntrigger: {type: dwell, min_s: 300}\noffer: {title: Hi, ttl_s: 60}\nschedule: {days: [sat, sun], hours: ['10:00-14:00']}\n";
        let json = r#"{"id":"x","name":"X","trigger":{"type":"dwell","min_s":300},"offer":{"title":"Hi","ttl_s":60},"schedule":{"days":["sat","sun"],"hours":["10:00-14:00"]}}"#;
        let (a, b) = (
            parse_campaigns(yaml.as_bytes(), true, "c.yaml").unwrap(),
            parse(json).unwrap(),
        );
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
    }

    #[test]
    fn errors_name_the_file_the_campaign_and_the_field() {
        let cases = [
            (
                r#"{"name":"X","trigger":{"type":"enter"},"offer":{"title":"t","ttl_s":1}}"#,
                "c.json: campaign #0: id: missing",
            ),
            (
                r#"{"id":"a b","name":"X","trigger":{"type":"enter"},"offer":{"title":"t","ttl_s":1}}"#,
                "campaign a b: id: \"a b\" must be",
            ),
            (
                r#"{"id":"x","name":"X","trigger":{"type":"teleport"},"offer":{"title":"t","ttl_s":1}}"#,
                "campaign x: trigger: unknown variant `teleport`",
            ),
            (
                r#"{"id":"x","name":"X","trigger":{"type":"dwell","min_s":0},"offer":{"title":"t","ttl_s":1}}"#,
                "campaign x: trigger.min_s: must be > 0",
            ),
            (
                r#"{"id":"x","name":"X","trigger":{"type":"nearby","within_m":-5},"offer":{"title":"t","ttl_s":1}}"#,
                "trigger.within_m: must be in (0, 5000]",
            ),
            (
                r#"{"id":"x","name":"X","trigger":{"type":"enter"},"offer":{"title":"{shop}","ttl_s":1}}"#,
                "offer.title: unknown placeholder {shop}",
            ),
            (
                r#"{"id":"x","name":"X","trigger":{"type":"enter"},"offer":{"title":"{coupon_code}","ttl_s":1}}"#,
                "offer: {coupon_code} is used but there is no coupon_prefix",
            ),
            (
                r#"{"id":"x","name":"X","trigger":{"type":"enter"},"offer":{"title":"t","ttl_s":1},"schedule":{"days":["someday"]}}"#,
                "campaign x: schedule: ",
            ),
            (
                r#"{"id":"x","name":"X","trigger":{"type":"enter"},"offer":{"title":"t","ttl_s":1},"schedule":{"start":"2026-12-01T00:00:00Z","end":"2026-11-01T00:00:00Z"}}"#,
                "schedule: start 2026-12-01T00:00:00.000Z is not before end",
            ),
            (
                r#"{"id":"x","name":"X","trigger":{"type":"enter"},"offer":{"title":"t","ttl_s":1},"audience":{"all":[{"attr":"age","between":[60,20]}]}}"#,
                "campaign x: audience.all[0].between: min 60 is greater than max 20",
            ),
            (
                r#"{"id":"x","name":"X","trigger":{"type":"enter"},"offer":{"title":"t","ttl_s":1},"budget":{"daily":5,"timezone":"Mars/Olympus"}}"#,
                "campaign x: budget: ",
            ),
            (
                r#"{"id":"x","name":"X","trigger":{"type":"enter"},"offer":{"title":"t","ttl_s":1},"colour":"red"}"#,
                "campaign x: colour: unknown field",
            ),
            (
                r#"{"id":"x","name":"X","trigger":{"type":"enter"},"offer":{"title":"t","ttl_s":1},"caps":{"per_device":[{"max":0,"window_s":60}]}}"#,
                "caps.per_device: max and window_s must be > 0",
            ),
            (
                r#"{"id":"x","name":"X","anonymous":true,"audience":{"attr":"age","gte":18},"trigger":{"type":"enter"},"offer":{"title":"t","ttl_s":1}}"#,
                "anonymous: anonymous campaigns cannot have an audience",
            ),
        ];
        for (json, want) in cases {
            let got = error(json);
            assert!(got.contains(want), "{json}\n  want: {want}\n  got:  {got}");
        }
    }

    #[test]
    fn every_bad_campaign_of_a_file_is_listed_and_none_loads() {
        let file = format!(r#"[{MINIMAL}, {{"id":"y"}}, {{"id":"z","name":"Z"}}]"#);
        let e = error(&file);
        assert!(e.starts_with("2 invalid campaign(s), none loaded"), "{e}");
        assert!(
            e.contains("campaign y: name: missing") && e.contains("campaign z: trigger: missing"),
            "{e}"
        );
    }

    #[test]
    fn schedules_are_read_in_local_time() {
        let json = r#"{"id":"x","name":"X","trigger":{"type":"enter"},"offer":{"title":"t","ttl_s":1},
            "schedule":{"start":"2026-11-01T00:00:00+08:00","end":"2026-12-01T00:00:00+08:00","days":["sun"],"hours":["10:00-12:00","21:00-02:00"]}}"#;
        let c = &parse(json).unwrap()[0];
        let zone = Zone::named("Asia/Shanghai").unwrap();
        let at = |s: &str| {
            let t = Timestamp::parse(s).unwrap();
            c.in_schedule(t, zone.local(t))
        };
        assert!(at("2026-11-22T10:00:00+08:00"));
        assert!(!at("2026-11-22T12:00:00+08:00"), "hours are half-open");
        assert!(
            at("2026-11-22T23:30:00+08:00"),
            "a window may cross midnight"
        );
        assert!(!at("2026-11-21T10:30:00+08:00"), "Saturday");
        assert!(!at("2026-12-06T10:30:00+08:00"), "after the end");
    }
}
