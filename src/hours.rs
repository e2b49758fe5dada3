//! Weekly opening hours of a store (the fence property `hours`), parsed once at load and asked
//! "open at this local time?" by the campaign stage.
//!
//! Hours are in the store's wall-clock time; turning an instant into that time is
//! [`Zone::local`](crate::local_time::Zone::local)'s job, not this module's.

use serde_json::Value;
use smallvec::SmallVec;

use crate::json_type;
use crate::local_time::{ClockTime, DailyWindow, LocalTime, Weekday, WindowError};

/// Opening hours per weekday: a few non-overlapping `[start, end)` ranges within each day.
#[derive(Debug, Clone, PartialEq)]
pub struct WeeklyHours {
    /// Indexed by [`Weekday::index`]; each day's ranges sorted by start, none crossing midnight.
    days: [SmallVec<[DailyWindow; 2]>; 7],
}

/// Why an `hours` object is not valid opening hours; names the key and the entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HoursError {
    #[error("hours: expected an object keyed by weekday (mon..sun), not {found}")]
    NotAnObject { found: &'static str },
    #[error("hours.{key}: unknown key (expected mon, tue, wed, thu, fri, sat or sun)")]
    UnknownKey { key: String },
    #[error("hours.{day}: expected a list of \"HH:MM-HH:MM\" ranges, not {found}")]
    NotAList { day: Weekday, found: &'static str },
    #[error("hours.{day}[{index}]: expected a \"HH:MM-HH:MM\" string, not {found}")]
    NotAString {
        day: Weekday,
        index: usize,
        found: &'static str,
    },
    #[error("hours.{day}[{index}]: {source}")]
    Range {
        day: Weekday,
        index: usize,
        source: WindowError,
    },
    #[error("hours.{day}[{index}] {entry:?}: start is not before end")]
    NotIncreasing {
        day: Weekday,
        index: usize,
        entry: String,
    },
    #[error("hours.{day}[{index}] {entry:?}: overlaps hours.{day}[{other_index}] {other:?}")]
    Overlap {
        day: Weekday,
        index: usize,
        entry: String,
        other_index: usize,
        other: String,
    },
}

impl WeeklyHours {
    /// Open around the clock, every day.
    pub fn always() -> WeeklyHours {
        WeeklyHours {
            days: std::array::from_fn(|_| SmallVec::from_slice(&[DailyWindow::ALL_DAY])),
        }
    }

    /// Parses the `hours` object: keys `mon`..`sun` (an absent day is closed), each a list of
    /// `"HH:MM-HH:MM"` ranges with start < end (`24:00` ends the day; no range crosses midnight),
    /// not overlapping one another (touching is fine: `09:00-12:00`, `12:00-14:00`).
    pub fn from_json(v: &Value) -> Result<WeeklyHours, HoursError> {
        let Value::Object(map) = v else {
            return Err(HoursError::NotAnObject {
                found: json_type::name(v),
            });
        };
        let mut days: [SmallVec<[DailyWindow; 2]>; 7] = Default::default();
        for (key, entries) in map {
            let day =
                Weekday::parse(key).map_err(|_| HoursError::UnknownKey { key: key.clone() })?;
            let Value::Array(entries) = entries else {
                return Err(HoursError::NotAList {
                    day,
                    found: json_type::name(entries),
                });
            };
            let windows = &mut days[day.index()];
            for (index, entry) in entries.iter().enumerate() {
                let Value::String(text) = entry else {
                    return Err(HoursError::NotAString {
                        day,
                        index,
                        found: json_type::name(entry),
                    });
                };
                let w = match DailyWindow::parse(text) {
                    Ok(w) if !w.crosses_midnight() => w,
                    // Opening hours must run forward within the day; `start == end` is the
                    // same mistake here, not an ambiguity.
                    Ok(_) | Err(WindowError::Empty(_)) => {
                        return Err(HoursError::NotIncreasing {
                            day,
                            index,
                            entry: text.clone(),
                        })
                    }
                    Err(source) => return Err(HoursError::Range { day, index, source }),
                };
                if let Some(other_index) = windows.iter().position(|o| overlap(*o, w)) {
                    return Err(HoursError::Overlap {
                        day,
                        index,
                        entry: text.clone(),
                        other_index,
                        other: entries[other_index].as_str().unwrap_or_default().to_owned(),
                    });
                }
                windows.push(w);
            }
        }
        for windows in &mut days {
            windows.sort_unstable_by_key(|w| w.start());
        }
        Ok(WeeklyHours { days })
    }

    /// Whether the store is open at wall-clock time `t` (in the store's zone). On a fall-back
    /// day the repeated hour counts twice, on a spring-forward day the skipped hour never comes.
    pub fn is_open(&self, t: LocalTime) -> bool {
        self.days[t.weekday.index()]
            .iter()
            .any(|w| w.contains(t.second_of_day))
    }

    /// The opening ranges of `day`, sorted by start; empty when closed all day.
    pub fn ranges(&self, day: Weekday) -> &[DailyWindow] {
        &self.days[day.index()]
    }
}

/// Two ranges that do not cross midnight share an instant.
fn overlap(a: DailyWindow, b: DailyWindow) -> bool {
    let start: ClockTime = a.start().max(b.start());
    start < a.end().min(b.end())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local_time::{LocalDay, Zone};
    use crate::time::Timestamp;
    use serde_json::json;

    fn at(weekday: Weekday, hms: &str) -> LocalTime {
        let s: Vec<u32> = hms.split(':').map(|p| p.parse().unwrap()).collect();
        LocalTime {
            day: LocalDay(0),
            weekday,
            second_of_day: s[0] * 3600 + s[1] * 60 + s.get(2).copied().unwrap_or(0),
        }
    }

    fn err(v: Value) -> String {
        WeeklyHours::from_json(&v).unwrap_err().to_string()
    }

    fn fixture_hours() -> Vec<(String, WeeklyHours)> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/fences.geojson");
        let file: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        file["features"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["properties"].get("hours").is_some())
            .map(|f| {
                let id = f["id"].as_str().unwrap().to_owned();
                let hours = WeeklyHours::from_json(&f["properties"]["hours"])
                    .unwrap_or_else(|e| panic!("{id}: {e}"));
                (id, hours)
            })
            .collect()
    }

    #[test]
    fn fixture_hours_parse() {
        let all = fixture_hours();
        assert!(all.len() >= 30, "{}", all.len());
        let get = |id: &str| &all.iter().find(|(i, _)| i == id).unwrap().1;

        let clearshield = get("f-sh-clearshield-0001");
        assert!(clearshield.ranges(Weekday::Mon).is_empty());
        assert!(!clearshield.is_open(at(Weekday::Mon, "10:00")));
        assert!(!clearshield.is_open(at(Weekday::Tue, "08:59:59")));
        assert!(clearshield.is_open(at(Weekday::Tue, "09:00")));
        assert!(clearshield.is_open(at(Weekday::Tue, "11:59:59")));
        assert!(!clearshield.is_open(at(Weekday::Tue, "12:00")));
        assert!(!clearshield.is_open(at(Weekday::Tue, "12:30")));
        assert!(clearshield.is_open(at(Weekday::Tue, "13:30")));
        assert!(!clearshield.is_open(at(Weekday::Tue, "18:30")));
        assert!(clearshield.is_open(at(Weekday::Sun, "16:59:59")));
        assert!(!clearshield.is_open(at(Weekday::Sun, "17:00")));

        let jade = get("f-sh-jadeharbour-0001");
        assert_eq!(jade, &WeeklyHours::always());
        for d in Weekday::ALL {
            assert!(jade.is_open(at(d, "00:00:00")));
            assert!(jade.is_open(at(d, "23:59:59")));
        }

        let chayun = get("f-sh-chayun-0001");
        assert!(chayun.is_open(at(Weekday::Fri, "22:29:59")));
        assert!(!chayun.is_open(at(Weekday::Fri, "22:30")));
        assert!(!chayun.is_open(at(Weekday::Sat, "09:29:59")));
        assert!(chayun.is_open(at(Weekday::Sat, "09:30")));
    }

    #[test]
    fn open_at_an_instant_in_the_store_zone() {
        let hours = fixture_hours()
            .into_iter()
            .find(|(id, _)| id == "f-sh-clearshield-0001")
            .unwrap()
            .1;
        let sh = Zone::named("Asia/Shanghai").unwrap();
        let open = |s| hours.is_open(sh.local(Timestamp::parse(s).unwrap()));
        // Tuesday 2026-11-24, 12:30 and 13:30 in Shanghai.
        assert!(!open("2026-11-24T04:30:00Z"));
        assert!(open("2026-11-24T05:30:00Z"));
        assert!(open("2026-11-24T13:30:00+08:00"));
        // Monday 10:00 in Shanghai (still Sunday in UTC): closed all day.
        assert!(!open("2026-11-23T02:00:00Z"));
    }

    #[test]
    fn absent_days_are_closed_and_ranges_are_sorted() {
        let h =
            WeeklyHours::from_json(&json!({"sat": ["14:00-18:00", "09:00-12:00", "12:00-14:00"]}))
                .unwrap();
        for d in Weekday::ALL {
            assert_eq!(h.ranges(d).is_empty(), d != Weekday::Sat, "{d}");
        }
        let sat: Vec<String> = h
            .ranges(Weekday::Sat)
            .iter()
            .map(|w| w.to_string())
            .collect();
        assert_eq!(sat, ["09:00-12:00", "12:00-14:00", "14:00-18:00"]);
        assert!(h.is_open(at(Weekday::Sat, "12:00")));
        assert!(!h.is_open(at(Weekday::Sat, "18:00")));
        assert_eq!(
            WeeklyHours::from_json(&json!({})).unwrap(),
            WeeklyHours::from_json(&json!({"mon": [], "sun": []})).unwrap()
        );
    }

    #[test]
    fn errors_name_the_key_and_the_entry() {
        assert_eq!(
            err(json!({"tue": ["09:00-12:00", "13:30-12:00"]})),
            r#"hours.tue[1] "13:30-12:00": start is not before end"#
        );
        assert_eq!(
            err(json!({"fri": ["22:00-02:00"]})),
            r#"hours.fri[0] "22:00-02:00": start is not before end"#
        );
        assert_eq!(
            err(json!({"fri": ["10:00-10:00"]})),
            r#"hours.fri[0] "10:00-10:00": start is not before end"#
        );
        assert_eq!(
            err(json!({"wed": ["09:00-12:00", "11:00-14:00"]})),
            r#"hours.wed[1] "11:00-14:00": overlaps hours.wed[0] "09:00-12:00""#
        );
        assert_eq!(
            err(json!({"wed": ["08:00-20:00", "11:00-14:00"]})),
            r#"hours.wed[1] "11:00-14:00": overlaps hours.wed[0] "08:00-20:00""#
        );
        assert_eq!(
            err(json!({"mon": ["9:00-12:00"]})),
            r#"hours.mon[0]: time window "9:00-12:00": "9:00" is not a time of day: expected HH:MM, two digits each"#
        );
        assert_eq!(
            err(json!({"mon": ["09:00 to 12:00"]})),
            r#"hours.mon[0]: "09:00 to 12:00" is not a time window: expected HH:MM-HH:MM"#
        );
        assert_eq!(
            err(json!({"sun": ["24:00-24:00"]})),
            r#"hours.sun[0]: time window "24:00-24:00": 24:00 can only end a window"#
        );
        assert_eq!(
            err(json!({"Mon": []})),
            "hours.Mon: unknown key (expected mon, tue, wed, thu, fri, sat or sun)"
        );
        assert_eq!(
            err(json!({"holidays": []})),
            "hours.holidays: unknown key (expected mon, tue, wed, thu, fri, sat or sun)"
        );
        assert_eq!(
            err(json!({"sat": "10:00-22:00"})),
            r#"hours.sat: expected a list of "HH:MM-HH:MM" ranges, not a string"#
        );
        assert_eq!(
            err(json!({"sat": null})),
            r#"hours.sat: expected a list of "HH:MM-HH:MM" ranges, not null"#
        );
        assert_eq!(
            err(json!({"thu": ["10:00-12:00", 14]})),
            r#"hours.thu[1]: expected a "HH:MM-HH:MM" string, not a number"#
        );
        assert_eq!(
            err(json!(["mon"])),
            "hours: expected an object keyed by weekday (mon..sun), not a list"
        );
    }
}
