//! Local wall-clock time in a store's IANA time zone: weekdays, local calendar days, times of
//! day and daily windows — what campaign schedules, opening hours, quiet hours and "per local
//! day" caps are written in.
//!
//! Zones come from the tz database bundled into the binary (jiff's `tzdb-bundle-always`), never
//! from the host, so a replay gives the same local times on every machine. Converting an instant
//! ([`Zone::local`]) allocates nothing; parsing (zone names, `"HH:MM"`, `"HH:MM-HH:MM"`) happens
//! once, at the edge. This module knows nothing about fences or campaigns.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use crate::time::Timestamp;

const MS_PER_DAY: i64 = 86_400_000;

/// A day of the week; `Mon` < … < `Sun`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Weekday {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

/// A string that is not one of `mon`..`sun`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a weekday (expected one of mon, tue, wed, thu, fri, sat, sun)")]
pub struct WeekdayError(pub String);

impl Weekday {
    /// Monday first, in [`Weekday::index`] order.
    pub const ALL: [Weekday; 7] = [
        Weekday::Mon,
        Weekday::Tue,
        Weekday::Wed,
        Weekday::Thu,
        Weekday::Fri,
        Weekday::Sat,
        Weekday::Sun,
    ];

    /// Accepts exactly `mon`, `tue`, `wed`, `thu`, `fri`, `sat`, `sun` (lower case).
    pub fn parse(s: &str) -> Result<Weekday, WeekdayError> {
        Weekday::ALL
            .into_iter()
            .find(|d| d.name() == s)
            .ok_or_else(|| WeekdayError(s.to_owned()))
    }

    /// 0 for Monday … 6 for Sunday.
    pub fn index(self) -> usize {
        self as usize
    }

    /// `"mon"` … `"sun"`, the spelling [`Weekday::parse`] accepts.
    pub fn name(self) -> &'static str {
        match self {
            Weekday::Mon => "mon",
            Weekday::Tue => "tue",
            Weekday::Wed => "wed",
            Weekday::Thu => "thu",
            Weekday::Fri => "fri",
            Weekday::Sat => "sat",
            Weekday::Sun => "sun",
        }
    }

    /// The weekday of a civil day number; 1970-01-01 was a Thursday.
    fn of_day(day: LocalDay) -> Weekday {
        Weekday::ALL[(i64::from(day.0) + 3).rem_euclid(7) as usize]
    }
}

impl fmt::Display for Weekday {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Weekday {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(ParseVisitor {
            expecting: "a weekday: mon, tue, wed, thu, fri, sat or sun",
            parse: Weekday::parse,
        })
    }
}

/// A civil day in some zone's local calendar: days since 1970-01-01 (negative before it).
///
/// Only meaningful together with the [`Zone`] it came from; the key for "per local day" caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LocalDay(pub i32);

/// An instant as read on a wall clock in some zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalTime {
    pub day: LocalDay,
    pub weekday: Weekday,
    /// Wall-clock seconds since local midnight, `0..86_400`. Skips an hour on a spring-forward
    /// day and repeats one on a fall-back day, as the clock on the shop wall does.
    pub second_of_day: u32,
}

/// A name that is not in the bundled IANA time zone database.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name:?} is not an IANA time zone name (e.g. Asia/Shanghai, Europe/Berlin, UTC)")]
pub struct ZoneError {
    pub name: String,
}

/// An IANA time zone from the bundled database. Cheap to clone (reference-counted).
#[derive(Debug, Clone)]
pub struct Zone {
    tz: jiff::tz::TimeZone,
}

/// Zones are equal when they have the same IANA name (the database is the same for both).
impl PartialEq for Zone {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name()
    }
}

impl Zone {
    /// Looks `name` up in the bundled tz database (case-insensitively, as jiff does).
    pub fn named(name: &str) -> Result<Zone, ZoneError> {
        match jiff::tz::db().get(name) {
            Ok(tz) => Ok(Zone { tz }),
            Err(_) => Err(ZoneError {
                name: name.to_owned(),
            }),
        }
    }

    pub fn utc() -> Zone {
        Zone {
            tz: jiff::tz::TimeZone::UTC,
        }
    }

    /// The canonical IANA name (`"america/new_york"` was looked up as `"America/New_York"`).
    pub fn name(&self) -> &str {
        // Every zone built here comes from the database or is UTC, so it always has a name.
        self.tz.iana_name().unwrap_or("UTC")
    }

    /// The wall-clock reading of `t` in this zone. Instants beyond jiff's range (years
    /// -9999..=9999) are clamped to it.
    pub fn local(&self, t: Timestamp) -> LocalTime {
        let ts = jiff_timestamp(t.0);
        let offset_ms = i64::from(self.tz.to_offset(ts).seconds()) * 1000;
        let wall_ms = ts.as_millisecond() + offset_ms;
        // Bounded by jiff's range (±3.7 M days), so the day fits an i32.
        let day = LocalDay(wall_ms.div_euclid(MS_PER_DAY) as i32);
        LocalTime {
            day,
            weekday: Weekday::of_day(day),
            second_of_day: (wall_ms.rem_euclid(MS_PER_DAY) / 1000) as u32,
        }
    }

    /// The first instant of local day `day`: local midnight, or — where the clocks jump over
    /// midnight (e.g. America/Havana, America/Santiago on their spring-forward days) — the
    /// instant just after the gap, as jiff's `start_of_day` gives. Days beyond jiff's range
    /// saturate at its ends.
    pub fn day_start(&self, day: LocalDay) -> Timestamp {
        let utc_midnight = jiff_timestamp(i64::from(day.0) * MS_PER_DAY);
        // The civil date of `day` at 00:00 (clamping may have moved it off midnight).
        let midnight = jiff::tz::Offset::UTC
            .to_datetime(utc_midnight)
            .start_of_day();
        // "Compatible" disambiguation: in a gap take the instant after it, in a fold the first.
        match self.tz.to_ambiguous_timestamp(midnight).compatible() {
            Ok(ts) => Timestamp(ts.as_millisecond()),
            Err(_) => Timestamp(utc_midnight.as_millisecond()),
        }
    }
}

fn jiff_timestamp(ms: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_millisecond(ms).unwrap_or(if ms < 0 {
        jiff::Timestamp::MIN
    } else {
        jiff::Timestamp::MAX
    })
}

impl<'de> Deserialize<'de> for Zone {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(ParseVisitor {
            expecting: "an IANA time zone name such as \"Asia/Shanghai\"",
            parse: Zone::named,
        })
    }
}

/// A time of day on the wall clock, to the minute: `00:00` … `23:59`, and `24:00` for the end
/// of the day (only useful as the end of a window).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClockTime(u16);

/// Text that is not `"HH:MM"`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClockError {
    #[error("{0:?} is not a time of day: expected HH:MM, two digits each")]
    Format(String),
    #[error("{0:?} is not a time of day: hours run 00-23 and minutes 00-59 (24:00 = end of day)")]
    Range(String),
}

impl ClockTime {
    pub const MIDNIGHT: ClockTime = ClockTime(0);
    pub const END_OF_DAY: ClockTime = ClockTime(24 * 60);

    /// Strict `"HH:MM"`: two ASCII digits each, `00:00`..`23:59` or exactly `24:00`.
    pub fn parse(s: &str) -> Result<ClockTime, ClockError> {
        let &[h1, h2, b':', m1, m2] = s.as_bytes() else {
            return Err(ClockError::Format(s.to_owned()));
        };
        if ![h1, h2, m1, m2].iter().all(u8::is_ascii_digit) {
            return Err(ClockError::Format(s.to_owned()));
        }
        let h = u16::from(h1 - b'0') * 10 + u16::from(h2 - b'0');
        let m = u16::from(m1 - b'0') * 10 + u16::from(m2 - b'0');
        if m > 59 || h > 24 || (h == 24 && m != 0) {
            return Err(ClockError::Range(s.to_owned()));
        }
        Ok(ClockTime(h * 60 + m))
    }

    /// Minutes since midnight, `0..=1440`.
    pub fn minutes(self) -> u16 {
        self.0
    }

    /// Seconds since midnight, `0..=86_400`, comparable with [`LocalTime::second_of_day`].
    pub fn second_of_day(self) -> u32 {
        u32::from(self.0) * 60
    }
}

impl fmt::Display for ClockTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.0 / 60, self.0 % 60)
    }
}

impl<'de> Deserialize<'de> for ClockTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(ParseVisitor {
            expecting: "a time of day \"HH:MM\"",
            parse: ClockTime::parse,
        })
    }
}

/// A daily stretch of wall-clock time `[start, end)`. With `start > end` it crosses midnight:
/// `22:00-07:00` is 22:00 to 24:00 plus 00:00 to 07:00 (quiet hours).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DailyWindow {
    start: ClockTime,
    end: ClockTime,
}

/// Text that is not a usable `"HH:MM-HH:MM"` window.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    #[error("{0:?} is not a time window: expected HH:MM-HH:MM")]
    Format(String),
    #[error("time window {window:?}: {source}")]
    Clock { window: String, source: ClockError },
    #[error("time window {0:?}: 24:00 can only end a window")]
    StartsAtEndOfDay(String),
    #[error("time window {0:?}: start equals end (ambiguous: empty or all day)")]
    Empty(String),
}

impl DailyWindow {
    /// `00:00-24:00`.
    pub const ALL_DAY: DailyWindow = DailyWindow {
        start: ClockTime::MIDNIGHT,
        end: ClockTime::END_OF_DAY,
    };

    /// `"HH:MM-HH:MM"` with [`ClockTime::parse`] on each side. `start > end` crosses midnight;
    /// `start == end` and a start of `24:00` are rejected.
    pub fn parse(s: &str) -> Result<DailyWindow, WindowError> {
        let Some((a, b)) = s.split_once('-') else {
            return Err(WindowError::Format(s.to_owned()));
        };
        let clock = |part| {
            ClockTime::parse(part).map_err(|source| WindowError::Clock {
                window: s.to_owned(),
                source,
            })
        };
        let (start, end) = (clock(a)?, clock(b)?);
        if start == ClockTime::END_OF_DAY {
            return Err(WindowError::StartsAtEndOfDay(s.to_owned()));
        }
        if start == end {
            return Err(WindowError::Empty(s.to_owned()));
        }
        Ok(DailyWindow { start, end })
    }

    pub fn start(self) -> ClockTime {
        self.start
    }

    pub fn end(self) -> ClockTime {
        self.end
    }

    pub fn crosses_midnight(self) -> bool {
        self.start > self.end
    }

    /// Whether wall-clock second `second_of_day` (as in [`LocalTime`]) lies in `[start, end)`.
    pub fn contains(self, second_of_day: u32) -> bool {
        let (start, end) = (self.start.second_of_day(), self.end.second_of_day());
        if start < end {
            start <= second_of_day && second_of_day < end
        } else {
            start <= second_of_day || second_of_day < end
        }
    }
}

impl fmt::Display for DailyWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

impl<'de> Deserialize<'de> for DailyWindow {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(ParseVisitor {
            expecting: "a time window \"HH:MM-HH:MM\"",
            parse: DailyWindow::parse,
        })
    }
}

/// Deserializes a string through a parser, keeping the parser's error message.
struct ParseVisitor<T, E> {
    expecting: &'static str,
    parse: fn(&str) -> Result<T, E>,
}

impl<T, E: fmt::Display> Visitor<'_> for ParseVisitor<T, E> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<DE: de::Error>(self, s: &str) -> Result<T, DE> {
        (self.parse)(s).map_err(DE::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ts(s: &str) -> Timestamp {
        Timestamp::parse(s).unwrap()
    }

    fn day(ymd: &str) -> LocalDay {
        LocalDay(ts(&format!("{ymd}T00:00:00Z")).0.div_euclid(MS_PER_DAY) as i32)
    }

    fn at(ymd: &str, hms: &str, weekday: Weekday) -> LocalTime {
        let s: Vec<u32> = hms.split(':').map(|p| p.parse().unwrap()).collect();
        LocalTime {
            day: day(ymd),
            weekday,
            second_of_day: s[0] * 3600 + s[1] * 60 + s[2],
        }
    }

    fn zone(name: &str) -> Zone {
        Zone::named(name).unwrap()
    }

    #[test]
    fn weekday_names() {
        for (i, d) in Weekday::ALL.into_iter().enumerate() {
            assert_eq!(d.index(), i);
            assert_eq!(Weekday::parse(d.name()), Ok(d));
        }
        assert_eq!(Weekday::parse("sun"), Ok(Weekday::Sun));
        for bad in ["Mon", "monday", "", " mon", "MON"] {
            assert_eq!(Weekday::parse(bad), Err(WeekdayError(bad.into())));
        }
        assert_eq!(
            Weekday::parse("Tue").unwrap_err().to_string(),
            r#""Tue" is not a weekday (expected one of mon, tue, wed, thu, fri, sat, sun)"#
        );
        let d: Vec<Weekday> = serde_json::from_str(r#"["sat","mon"]"#).unwrap();
        assert_eq!(d, [Weekday::Sat, Weekday::Mon]);
        let e = serde_json::from_str::<Weekday>(r#""Fri""#).unwrap_err();
        assert!(e.to_string().contains("mon, tue, wed"), "{e}");
        assert!(serde_json::from_str::<Weekday>("3").is_err());
    }

    #[test]
    fn zone_names() {
        assert_eq!(zone("Asia/Shanghai").name(), "Asia/Shanghai");
        assert_eq!(zone("america/new_york").name(), "America/New_York");
        assert_eq!(Zone::utc().name(), "UTC");
        assert_eq!(zone("UTC").name(), "UTC");
        for bad in ["", "Mars/Olympus_Mons", "+08:00", "CST-8", "Asia/Shanghai "] {
            let e = Zone::named(bad).unwrap_err();
            assert_eq!(e.name, bad);
            assert!(
                e.to_string().contains("is not an IANA time zone name"),
                "{e}"
            );
        }
        let z: Zone = serde_json::from_str(r#""Europe/Berlin""#).unwrap();
        assert_eq!(z.name(), "Europe/Berlin");
        let e = serde_json::from_str::<Zone>(r#""Europe/Berlinn""#).unwrap_err();
        assert!(
            e.to_string().contains(r#""Europe/Berlinn" is not an IANA"#),
            "{e}"
        );
    }

    #[test]
    fn shanghai() {
        let sh = zone("Asia/Shanghai");
        assert_eq!(
            sh.local(ts("2026-11-22T10:00:00.123Z")),
            at("2026-11-22", "18:00:00", Weekday::Sun)
        );
        // Past UTC's day end it is already Monday in Shanghai.
        assert_eq!(
            sh.local(ts("2026-11-22T16:00:00Z")),
            at("2026-11-23", "00:00:00", Weekday::Mon)
        );
        assert_eq!(
            sh.local(ts("2026-11-22T15:59:59.999Z")),
            at("2026-11-22", "23:59:59", Weekday::Sun)
        );
        assert_eq!(sh.day_start(day("2026-11-23")), ts("2026-11-22T16:00:00Z"));
    }

    #[test]
    fn utc_before_the_epoch() {
        assert_eq!(
            Zone::utc().local(Timestamp(-500)),
            at("1969-12-31", "23:59:59", Weekday::Wed)
        );
        assert_eq!(
            Zone::utc().local(Timestamp(0)),
            at("1970-01-01", "00:00:00", Weekday::Thu)
        );
        assert_eq!(Zone::utc().day_start(LocalDay(-1)), Timestamp(-MS_PER_DAY));
    }

    #[test]
    fn new_york_spring_forward() {
        let ny = zone("America/New_York");
        // 2026-03-08 02:00 EST becomes 03:00 EDT at 07:00Z.
        assert_eq!(
            ny.local(ts("2026-03-08T06:59:59Z")),
            at("2026-03-08", "01:59:59", Weekday::Sun)
        );
        assert_eq!(
            ny.local(ts("2026-03-08T07:00:00Z")),
            at("2026-03-08", "03:00:00", Weekday::Sun)
        );
        assert_eq!(ny.day_start(day("2026-03-08")), ts("2026-03-08T05:00:00Z"));
        // The next day starts 23 hours later, at midnight EDT.
        assert_eq!(ny.day_start(day("2026-03-09")), ts("2026-03-09T04:00:00Z"));
        assert_eq!(
            ny.local(ts("2026-03-08T04:59:59.999Z")),
            at("2026-03-07", "23:59:59", Weekday::Sat)
        );
        assert_eq!(
            ny.local(ts("2026-03-08T05:00:00Z")),
            at("2026-03-08", "00:00:00", Weekday::Sun)
        );
        assert_eq!(
            ny.local(ts("2026-03-09T03:59:59Z")),
            at("2026-03-08", "23:59:59", Weekday::Sun)
        );
        assert_eq!(
            ny.local(ts("2026-03-09T04:00:00Z")),
            at("2026-03-09", "00:00:00", Weekday::Mon)
        );
    }

    #[test]
    fn new_york_fall_back() {
        let ny = zone("America/New_York");
        // 2026-11-01 02:00 EDT becomes 01:00 EST at 06:00Z: 01:xx happens twice.
        assert_eq!(
            ny.local(ts("2026-11-01T05:59:59Z")),
            at("2026-11-01", "01:59:59", Weekday::Sun)
        );
        assert_eq!(
            ny.local(ts("2026-11-01T06:00:00Z")),
            at("2026-11-01", "01:00:00", Weekday::Sun)
        );
        assert_eq!(
            ny.local(ts("2026-11-01T07:00:00Z")),
            at("2026-11-01", "02:00:00", Weekday::Sun)
        );
        assert_eq!(ny.day_start(day("2026-11-01")), ts("2026-11-01T04:00:00Z"));
        // 25 hours later.
        assert_eq!(ny.day_start(day("2026-11-02")), ts("2026-11-02T05:00:00Z"));
        assert_eq!(
            ny.local(ts("2026-11-01T03:59:59Z")),
            at("2026-10-31", "23:59:59", Weekday::Sat)
        );
        assert_eq!(
            ny.local(ts("2026-11-02T04:59:59Z")),
            at("2026-11-01", "23:59:59", Weekday::Sun)
        );
        assert_eq!(
            ny.local(ts("2026-11-02T05:00:00Z")),
            at("2026-11-02", "00:00:00", Weekday::Mon)
        );
    }

    #[test]
    fn berlin() {
        let be = zone("Europe/Berlin");
        assert_eq!(
            be.local(ts("2026-03-29T00:59:59Z")),
            at("2026-03-29", "01:59:59", Weekday::Sun)
        );
        assert_eq!(
            be.local(ts("2026-03-29T01:00:00Z")),
            at("2026-03-29", "03:00:00", Weekday::Sun)
        );
        assert_eq!(be.day_start(day("2026-03-29")), ts("2026-03-28T23:00:00Z"));
        assert_eq!(be.day_start(day("2026-03-30")), ts("2026-03-29T22:00:00Z"));
        assert_eq!(
            be.local(ts("2026-10-25T00:59:59Z")),
            at("2026-10-25", "02:59:59", Weekday::Sun)
        );
        assert_eq!(
            be.local(ts("2026-10-25T01:00:00Z")),
            at("2026-10-25", "02:00:00", Weekday::Sun)
        );
        assert_eq!(be.day_start(day("2026-10-26")), ts("2026-10-25T23:00:00Z"));
    }

    #[test]
    fn midnight_skipped() {
        // Havana springs forward from 00:00 CST to 01:00 CDT on 2026-03-08: there is no midnight,
        // the day begins at 01:00 (05:00Z).
        let hav = zone("America/Havana");
        let start = hav.day_start(day("2026-03-08"));
        assert_eq!(start, ts("2026-03-08T05:00:00Z"));
        assert_eq!(hav.local(start), at("2026-03-08", "01:00:00", Weekday::Sun));
        assert_eq!(
            hav.local(Timestamp(start.0 - 1)),
            at("2026-03-07", "23:59:59", Weekday::Sat)
        );
        assert_eq!(hav.day_start(day("2026-03-07")), ts("2026-03-07T05:00:00Z"));

        // Santiago springs forward from 24:00 -04 on Saturday 2026-09-05 to 01:00 -03.
        let scl = zone("America/Santiago");
        let start = scl.day_start(day("2026-09-06"));
        assert_eq!(start, ts("2026-09-06T04:00:00Z"));
        assert_eq!(scl.local(start), at("2026-09-06", "01:00:00", Weekday::Sun));
        assert_eq!(
            scl.local(Timestamp(start.0 - 1)),
            at("2026-09-05", "23:59:59", Weekday::Sat)
        );
    }

    #[test]
    fn clock_times() {
        assert_eq!(ClockTime::parse("00:00"), Ok(ClockTime::MIDNIGHT));
        assert_eq!(ClockTime::parse("24:00"), Ok(ClockTime::END_OF_DAY));
        assert_eq!(ClockTime::parse("23:59").unwrap().minutes(), 1439);
        assert_eq!(ClockTime::parse("09:30").unwrap().second_of_day(), 34_200);
        assert_eq!(ClockTime::parse("07:05").unwrap().to_string(), "07:05");
        for bad in [
            "7:00", "07:0", "0700", "07:00:00", "07-00", "", " 07:00", "０7:00", "+7:00",
        ] {
            assert_eq!(
                ClockTime::parse(bad),
                Err(ClockError::Format(bad.into())),
                "{bad}"
            );
        }
        for bad in ["24:01", "25:00", "12:60", "99:99"] {
            assert_eq!(
                ClockTime::parse(bad),
                Err(ClockError::Range(bad.into())),
                "{bad}"
            );
        }
        assert_eq!(
            ClockTime::parse("7:00").unwrap_err().to_string(),
            r#""7:00" is not a time of day: expected HH:MM, two digits each"#
        );
        assert_eq!(
            ClockTime::parse("24:30").unwrap_err().to_string(),
            r#""24:30" is not a time of day: hours run 00-23 and minutes 00-59 (24:00 = end of day)"#
        );
        let t: ClockTime = serde_json::from_str(r#""18:30""#).unwrap();
        assert_eq!(t.minutes(), 18 * 60 + 30);
    }

    #[test]
    fn windows() {
        let w = DailyWindow::parse("09:00-12:00").unwrap();
        assert!(!w.crosses_midnight());
        assert!(!w.contains(9 * 3600 - 1));
        assert!(w.contains(9 * 3600));
        assert!(w.contains(12 * 3600 - 1));
        assert!(!w.contains(12 * 3600));
        assert_eq!(w.to_string(), "09:00-12:00");

        let all = DailyWindow::parse("00:00-24:00").unwrap();
        assert!(all.contains(0) && all.contains(86_399));

        let quiet = DailyWindow::parse("22:00-07:00").unwrap();
        assert!(quiet.crosses_midnight());
        assert_eq!(
            (quiet.start().minutes(), quiet.end().minutes()),
            (1320, 420)
        );
        assert!(!quiet.contains(22 * 3600 - 1));
        assert!(quiet.contains(22 * 3600));
        assert!(quiet.contains(23 * 3600));
        assert!(quiet.contains(0));
        assert!(quiet.contains(7 * 3600 - 1)); // 06:59:59
        assert!(!quiet.contains(7 * 3600));
        assert!(!quiet.contains(12 * 3600));

        // Ending at 00:00 crosses midnight with nothing after it: 22:00 to the end of the day.
        let late = DailyWindow::parse("22:00-00:00").unwrap();
        assert!(late.crosses_midnight());
        assert!(late.contains(86_399) && !late.contains(0) && !late.contains(21 * 3600));
    }

    #[test]
    fn window_errors() {
        let err = |s: &str| DailyWindow::parse(s).unwrap_err();
        assert_eq!(err("09:00"), WindowError::Format("09:00".into()));
        assert_eq!(
            err("09:00–12:00"),
            WindowError::Format("09:00–12:00".into())
        );
        assert_eq!(err("12:00-12:00"), WindowError::Empty("12:00-12:00".into()));
        assert_eq!(err("00:00-00:00"), WindowError::Empty("00:00-00:00".into()));
        assert_eq!(
            err("24:00-07:00"),
            WindowError::StartsAtEndOfDay("24:00-07:00".into())
        );
        assert_eq!(
            err("9:00-12:00"),
            WindowError::Clock {
                window: "9:00-12:00".into(),
                source: ClockError::Format("9:00".into())
            }
        );
        assert_eq!(
            err("09:00-12:00-13:00"),
            WindowError::Clock {
                window: "09:00-12:00-13:00".into(),
                source: ClockError::Format("12:00-13:00".into())
            }
        );
        assert_eq!(
            err("09:00-25:00").to_string(),
            r#"time window "09:00-25:00": "25:00" is not a time of day: hours run 00-23 and minutes 00-59 (24:00 = end of day)"#
        );
        assert_eq!(
            err("12:00-12:00").to_string(),
            r#"time window "12:00-12:00": start equals end (ambiguous: empty or all day)"#
        );
        let w: DailyWindow = serde_json::from_str(r#""22:00-07:00""#).unwrap();
        assert!(w.crosses_midnight());
        let e = serde_json::from_str::<DailyWindow>(r#""22:00""#).unwrap_err();
        assert!(e.to_string().contains("expected HH:MM-HH:MM"), "{e}");
    }

    const ZONES: [&str; 8] = [
        "UTC",
        "Asia/Shanghai",
        "America/New_York",
        "Europe/Berlin",
        "America/Havana",
        "America/Santiago",
        "Asia/Gaza",
        "Australia/Lord_Howe",
    ];

    proptest! {
        // Whatever the zone does around midnight, `day_start` is the first instant of its day:
        // it reads as that day, and the millisecond before reads as an earlier day.
        #[test]
        fn day_start_is_the_first_instant_of_the_day(
            z in 0..ZONES.len(),
            d in -25_000i32..40_000,
        ) {
            let zone = zone(ZONES[z]);
            let start = zone.day_start(LocalDay(d));
            prop_assert_eq!(zone.local(start).day, LocalDay(d));
            prop_assert!(zone.local(Timestamp(start.0 - 1)).day < LocalDay(d));
        }

        #[test]
        fn an_instant_lies_within_its_local_day(
            z in 0..ZONES.len(),
            ms in -2_000_000_000_000i64..4_000_000_000_000,
        ) {
            let zone = zone(ZONES[z]);
            let t = Timestamp(ms);
            let lt = zone.local(t);
            prop_assert!(lt.second_of_day < 86_400);
            prop_assert!(zone.day_start(lt.day) <= t);
            prop_assert!(t < zone.day_start(LocalDay(lt.day.0 + 1)));
        }
    }
}
