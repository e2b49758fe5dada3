//! Audience rules: who a campaign is for, as a predicate over a device's profile attributes.
//!
//! A rule is parsed once from JSON (campaign files hand over a [`serde_json::Value`]; the YAML
//! form is converted to one first) into a [`Rule`], which then answers [`Rule::matches`] without
//! allocating. This module does not look at consent, nor decide what to do with a device that has
//! no profile: that is the campaign stage's call (CONTRACTS §5).
//!
//! # Grammar
//! A rule is a JSON object of exactly one of these forms:
//!
//! | form | matches when |
//! |---|---|
//! | `{"all": [r, …]}` | every `r` matches (list non-empty) |
//! | `{"any": [r, …]}` | some `r` matches (list non-empty) |
//! | `{"not": r}` | `r` does not match |
//! | `{"attr": "gender", "eq": "f"}` | the attribute equals the string, number or bool |
//! | `{"attr": "income_tier", "in": ["high", "mid"]}` | it equals one of them (list non-empty) |
//! | `{"attr": "age", "between": [20, 55]}` | it is a number in `[20, 55]`, inclusive (min ≤ max) |
//! | `{"attr": "age", "gte": 18}`, `{"attr": "age", "lte": 65}` | it is a number ≥ / ≤; `gte` and `lte` may share one rule |
//! | `{"attr": "interests", "contains": "tea"}` | it is a list holding that string |
//! | `{"attr": "interests", "contains_any": ["tea", "coffee"]}` | it is a list holding one of them |
//! | `{"attr": "loyalty", "exists": true}` | the profile has (`true`) / lacks (`false`) it |
//! | `{"purchased": "tea", "min": 2}` | `purchases_90d.tea` ≥ 2; `"max"` too, e.g. `"max": 0` = never bought tea |
//!
//! An `attr` rule has exactly one operator (or `gte` with `lte`); unknown keys are errors.
//! `purchased` needs `min`, `max` or both, each a number ≥ 0.
//!
//! # Semantics
//! - An attribute that is absent, or of the wrong type for the operator (`eq` against a list,
//!   `gte` against a string), makes that test false — so `not` of it is true.
//! - `purchased` is the exception: a missing `purchases_90d` (or one that is not an object of
//!   counts), or a missing category, counts as 0 purchases.
//! - Text comparisons are exact and case-sensitive; numbers compare as `f64`.
//!
//! # Errors and limits
//! [`Rule::parse`] takes the path of the rule in its file (e.g. `"audience"`) and every
//! [`RuleError`] names the failing node below it, e.g.
//! `audience.all[1].between: min 60 is greater than max 20`. A rule nests at most
//! [`MAX_DEPTH`] levels and has at most [`MAX_NODES`] nodes (every object counts).
//!
//! # Example
//! ```
//! use beckon::audience::Rule;
//! use beckon::profile::{decode, ProfileRecord};
//! use serde_json::json;
//!
//! let women_buying_tea = Rule::parse(
//!     &json!({"all": [{"attr": "gender", "eq": "f"}, {"purchased": "tea", "min": 2}]}),
//!     "audience",
//! )?;
//! let value = br#"{"device_id":"d-1","consent":true,
//!     "attributes":{"gender":"f","purchases_90d":{"tea":3}}}"#;
//! let ProfileRecord::Upsert { profile, .. } = decode(None, Some(value))? else {
//!     unreachable!("a body is never a delete")
//! };
//! assert!(women_buying_tea.matches(&profile));
//!
//! let err = Rule::parse(&json!({"any": [{"attr": "age", "between": [60, 20]}]}), "audience")
//!     .unwrap_err();
//! assert_eq!(err.to_string(), "audience.any[0].between: min 60 is greater than max 20");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt::{self, Write as _};

use serde_json::{Map, Value};

use crate::profile::{AttrValue, Name, Profile};

/// Deepest allowed nesting: a rule with no `all`/`any`/`not` is 1 level.
pub const MAX_DEPTH: usize = 16;
/// Most rule objects (combinators and tests alike) in one rule.
pub const MAX_NODES: usize = 256;

/// The profile attribute `purchased` rules read: category → count over the last 90 days.
pub const PURCHASES_ATTRIBUTE: &str = "purchases_90d";

/// A parsed, valid audience rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule(Node);

#[derive(Debug, Clone, PartialEq)]
enum Node {
    /// Empty only for [`Rule::always`]; parsed lists are non-empty.
    All(Box<[Node]>),
    Any(Box<[Node]>),
    Not(Box<Node>),
    Attr {
        name: Name,
        test: Test,
    },
    /// Inclusive; an open end is ±∞.
    Purchased {
        category: Name,
        min: f64,
        max: f64,
    },
}

#[derive(Debug, Clone, PartialEq)]
enum Test {
    Eq(Scalar),
    In(Box<[Scalar]>),
    /// `between`, `gte`, `lte`: inclusive; an open end is ±∞.
    Range {
        min: f64,
        max: f64,
    },
    Contains(Name),
    ContainsAny(Box<[Name]>),
    Exists(bool),
}

#[derive(Debug, Clone, PartialEq)]
enum Scalar {
    Bool(bool),
    Num(f64),
    Text(Name),
}

impl Scalar {
    fn equals(&self, v: &AttrValue) -> bool {
        match (self, v) {
            (Scalar::Bool(a), AttrValue::Bool(b)) => a == b,
            (Scalar::Num(a), AttrValue::Num(b)) => a == b,
            (Scalar::Text(a), AttrValue::Text(b)) => a == b,
            _ => false,
        }
    }
}

impl Rule {
    /// Matches every profile.
    pub fn always() -> Self {
        Rule(Node::All(Box::new([])))
    }

    /// Parses a rule. `path` is where the rule sits in its file (e.g. `"audience"`, or `""`);
    /// errors carry it extended to the failing node.
    pub fn parse(value: &Value, path: &str) -> Result<Self, RuleError> {
        let mut parser = Parser {
            path: path.to_owned(),
            nodes: 0,
        };
        parser.node(value, 1).map(Rule)
    }

    /// Whether the profile is in the audience. Consent is not considered here.
    pub fn matches(&self, profile: &Profile) -> bool {
        self.0.matches(profile)
    }
}

impl Node {
    fn matches(&self, profile: &Profile) -> bool {
        match self {
            Node::All(rules) => rules.iter().all(|r| r.matches(profile)),
            Node::Any(rules) => rules.iter().any(|r| r.matches(profile)),
            Node::Not(rule) => !rule.matches(profile),
            Node::Attr { name, test } => test.holds(profile.get(name)),
            Node::Purchased { category, min, max } => {
                let n = profile
                    .get(PURCHASES_ATTRIBUTE)
                    .and_then(|p| p.count(category))
                    .unwrap_or(0.0);
                *min <= n && n <= *max
            }
        }
    }
}

impl Test {
    fn holds(&self, value: Option<&AttrValue>) -> bool {
        let Some(value) = value else {
            return matches!(self, Test::Exists(false));
        };
        match (self, value) {
            (Test::Exists(present), _) => *present,
            (Test::Eq(s), v) => s.equals(v),
            (Test::In(set), v) => set.iter().any(|s| s.equals(v)),
            (Test::Range { min, max }, AttrValue::Num(n)) => min <= n && n <= max,
            (Test::Contains(want), AttrValue::List(items)) => items.contains(want),
            (Test::ContainsAny(wants), AttrValue::List(items)) => {
                wants.iter().any(|w| items.contains(w))
            }
            _ => false,
        }
    }
}

/// Why a rule was refused, and where.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleError {
    /// The failing node: the `path` given to [`Rule::parse`] extended with `.key` and `[index]`.
    pub path: String,
    pub reason: RuleReason,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.reason)
        } else {
            write!(f, "{}: {}", self.path, self.reason)
        }
    }
}

impl std::error::Error for RuleError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.reason)
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RuleReason {
    #[error("expected a rule: an object with one of `all`, `any`, `not`, `attr` or `purchased`")]
    NotARule,
    #[error(
        "a rule has one of `all`, `any`, `not`, `attr` or `purchased`, not both `{0}` and `{1}`"
    )]
    Mixed(&'static str, &'static str),
    #[error("unknown key (expected {})", .0.join(", "))]
    UnknownKey(&'static [&'static str]),
    #[error("expected {0}")]
    Expected(&'static str),
    #[error("needs an operator: eq, in, between, gte, lte, contains, contains_any or exists")]
    NoOperator,
    #[error("has two operators, `{0}` and `{1}` (only gte with lte may share a rule; combine tests with `all`)")]
    TwoOperators(&'static str, &'static str),
    #[error("needs `min`, `max` or both")]
    NoBounds,
    #[error("{min_key} {min} is greater than {max_key} {max}")]
    MinAboveMax {
        min_key: &'static str,
        min: f64,
        max_key: &'static str,
        max: f64,
    },
    #[error("nested more than {MAX_DEPTH} levels deep")]
    TooDeep,
    #[error("more than {MAX_NODES} rule nodes")]
    TooManyNodes,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Eq,
    In,
    Between,
    Gte,
    Lte,
    Contains,
    ContainsAny,
    Exists,
}

/// In this order, so `gte` is seen before `lte` and two operators are named consistently.
const OPERATORS: [(&str, Op); 8] = [
    ("eq", Op::Eq),
    ("in", Op::In),
    ("between", Op::Between),
    ("gte", Op::Gte),
    ("lte", Op::Lte),
    ("contains", Op::Contains),
    ("contains_any", Op::ContainsAny),
    ("exists", Op::Exists),
];
const KINDS: [&str; 5] = ["all", "any", "not", "attr", "purchased"];
const ATTR_KEYS: &[&str] = &[
    "attr",
    "eq",
    "in",
    "between",
    "gte",
    "lte",
    "contains",
    "contains_any",
    "exists",
];
const PURCHASED_KEYS: &[&str] = &["purchased", "min", "max"];

enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

struct Parser {
    /// The path of the node being parsed; extended and truncated as parsing descends.
    path: String,
    nodes: usize,
}

impl Parser {
    fn fail<T>(&self, reason: RuleReason) -> Result<T, RuleError> {
        Err(RuleError {
            path: self.path.clone(),
            reason,
        })
    }

    /// Runs `f` with the path extended by `seg`.
    fn at<T>(
        &mut self,
        seg: Seg<'_>,
        f: impl FnOnce(&mut Self) -> Result<T, RuleError>,
    ) -> Result<T, RuleError> {
        let len = self.path.len();
        match seg {
            Seg::Key(key) => {
                if !self.path.is_empty() {
                    self.path.push('.');
                }
                self.path.push_str(key);
            }
            Seg::Index(i) => {
                let _ = write!(self.path, "[{i}]");
            }
        }
        let out = f(self);
        self.path.truncate(len);
        out
    }

    fn node(&mut self, value: &Value, depth: usize) -> Result<Node, RuleError> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return self.fail(RuleReason::TooManyNodes);
        }
        if depth > MAX_DEPTH {
            return self.fail(RuleReason::TooDeep);
        }
        let Value::Object(map) = value else {
            return self.fail(RuleReason::NotARule);
        };
        let mut kinds = KINDS.into_iter().filter(|k| map.contains_key(*k));
        let kind = match (kinds.next(), kinds.next()) {
            (None, _) => return self.fail(RuleReason::NotARule),
            (Some(a), Some(b)) => return self.fail(RuleReason::Mixed(a, b)),
            (Some(kind), None) => kind,
        };
        match kind {
            "all" | "any" => {
                self.only(map, if kind == "all" { &["all"] } else { &["any"] })?;
                let rules = self.at(Seg::Key(kind), |p| match map.get(kind) {
                    Some(Value::Array(items)) if !items.is_empty() => items
                        .iter()
                        .enumerate()
                        .map(|(i, item)| p.at(Seg::Index(i), |p| p.node(item, depth + 1)))
                        .collect::<Result<Box<[Node]>, _>>(),
                    _ => p.fail(RuleReason::Expected("a non-empty list of rules")),
                })?;
                Ok(if kind == "all" {
                    Node::All(rules)
                } else {
                    Node::Any(rules)
                })
            }
            "not" => {
                self.only(map, &["not"])?;
                let inner = map.get("not").unwrap_or(&Value::Null);
                let rule = self.at(Seg::Key("not"), |p| p.node(inner, depth + 1))?;
                Ok(Node::Not(Box::new(rule)))
            }
            "attr" => self.attr(map),
            _ => self.purchased(map),
        }
    }

    /// Refuses keys outside `allowed`.
    fn only(
        &mut self,
        map: &Map<String, Value>,
        allowed: &'static [&'static str],
    ) -> Result<(), RuleError> {
        match map.keys().find(|k| !allowed.contains(&k.as_str())) {
            Some(key) => self.at(Seg::Key(key), |p| p.fail(RuleReason::UnknownKey(allowed))),
            None => Ok(()),
        }
    }

    fn attr(&mut self, map: &Map<String, Value>) -> Result<Node, RuleError> {
        self.only(map, ATTR_KEYS)?;
        let name = self.at(Seg::Key("attr"), |p| match map.get("attr") {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.as_str()),
            _ => p.fail(RuleReason::Expected(
                "an attribute name (a non-empty string)",
            )),
        })?;
        let mut ops = OPERATORS
            .iter()
            .filter_map(|&(key, op)| Some((key, op, map.get(key)?)));
        let test = match (ops.next(), ops.next(), ops.next()) {
            (None, ..) => return self.fail(RuleReason::NoOperator),
            (Some(("gte", _, low)), Some(("lte", _, high)), None) => {
                let min = self.at(Seg::Key("gte"), |p| p.number(low))?;
                let max = self.at(Seg::Key("lte"), |p| p.number(high))?;
                if min > max {
                    return self.at(Seg::Key("lte"), |p| {
                        p.fail(RuleReason::MinAboveMax {
                            min_key: "gte",
                            min,
                            max_key: "lte",
                            max,
                        })
                    });
                }
                Test::Range { min, max }
            }
            (Some((a, ..)), Some((b, ..)), _) => {
                return self.fail(RuleReason::TwoOperators(a, b));
            }
            (Some((key, op, value)), None, _) => self.at(Seg::Key(key), |p| p.test(op, value))?,
        };
        Ok(Node::Attr {
            name: name.into(),
            test,
        })
    }

    fn test(&mut self, op: Op, value: &Value) -> Result<Test, RuleError> {
        Ok(match op {
            Op::Eq => Test::Eq(self.scalar(value)?),
            Op::In => Test::In(self.list(
                value,
                "a non-empty list of strings, numbers or bools",
                Self::scalar,
            )?),
            Op::Between => {
                let (min, max) = match value.as_array().map(Vec::as_slice) {
                    Some([low, high]) => (
                        self.at(Seg::Index(0), |p| p.number(low))?,
                        self.at(Seg::Index(1), |p| p.number(high))?,
                    ),
                    _ => return self.fail(RuleReason::Expected("[min, max], two numbers")),
                };
                if min > max {
                    return self.fail(RuleReason::MinAboveMax {
                        min_key: "min",
                        min,
                        max_key: "max",
                        max,
                    });
                }
                Test::Range { min, max }
            }
            Op::Gte => Test::Range {
                min: self.number(value)?,
                max: f64::INFINITY,
            },
            Op::Lte => Test::Range {
                min: f64::NEG_INFINITY,
                max: self.number(value)?,
            },
            Op::Contains => Test::Contains(self.text(value)?),
            Op::ContainsAny => {
                Test::ContainsAny(self.list(value, "a non-empty list of strings", Self::text)?)
            }
            Op::Exists => match value {
                Value::Bool(b) => Test::Exists(*b),
                _ => return self.fail(RuleReason::Expected("true or false")),
            },
        })
    }

    fn purchased(&mut self, map: &Map<String, Value>) -> Result<Node, RuleError> {
        self.only(map, PURCHASED_KEYS)?;
        let category = self.at(Seg::Key("purchased"), |p| match map.get("purchased") {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.as_str()),
            _ => p.fail(RuleReason::Expected(
                "a purchase category (a non-empty string)",
            )),
        })?;
        let mut bound = |key| {
            map.get(key)
                .map(|v| {
                    self.at(Seg::Key(key), |p| match v.as_f64() {
                        Some(n) if n >= 0.0 && n.is_finite() => Ok(n),
                        _ => p.fail(RuleReason::Expected("a number ≥ 0")),
                    })
                })
                .transpose()
        };
        let (min, max) = (bound("min")?, bound("max")?);
        let (min, max) = match (min, max) {
            (None, None) => return self.fail(RuleReason::NoBounds),
            (Some(min), Some(max)) if min > max => {
                return self.at(Seg::Key("max"), |p| {
                    p.fail(RuleReason::MinAboveMax {
                        min_key: "min",
                        min,
                        max_key: "max",
                        max,
                    })
                })
            }
            (min, max) => (
                min.unwrap_or(f64::NEG_INFINITY),
                max.unwrap_or(f64::INFINITY),
            ),
        };
        Ok(Node::Purchased {
            category: category.into(),
            min,
            max,
        })
    }

    /// A non-empty JSON array, each item parsed by `item` at its index.
    fn list<T>(
        &mut self,
        value: &Value,
        expected: &'static str,
        mut item: impl FnMut(&mut Self, &Value) -> Result<T, RuleError>,
    ) -> Result<Box<[T]>, RuleError> {
        match value {
            Value::Array(items) if !items.is_empty() => items
                .iter()
                .enumerate()
                .map(|(i, v)| self.at(Seg::Index(i), |p| item(p, v)))
                .collect(),
            _ => self.fail(RuleReason::Expected(expected)),
        }
    }

    fn scalar(&mut self, value: &Value) -> Result<Scalar, RuleError> {
        match value {
            Value::Bool(b) => Ok(Scalar::Bool(*b)),
            Value::String(s) => Ok(Scalar::Text(s.as_str().into())),
            Value::Number(_) => self.number(value).map(Scalar::Num),
            _ => self.fail(RuleReason::Expected("a string, number or bool")),
        }
    }

    fn number(&mut self, value: &Value) -> Result<f64, RuleError> {
        match value.as_f64() {
            Some(n) if n.is_finite() => Ok(n),
            _ => self.fail(RuleReason::Expected("a number")),
        }
    }

    fn text(&mut self, value: &Value) -> Result<Name, RuleError> {
        match value {
            Value::String(s) => Ok(s.as_str().into()),
            _ => self.fail(RuleReason::Expected("a string")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{decode, load_profiles, ProfileRecord};
    use proptest::prelude::*;
    use serde_json::json;
    use std::path::Path;
    use std::sync::LazyLock;

    static FIXTURE: LazyLock<Vec<(String, Profile)>> = LazyLock::new(|| {
        load_profiles(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/profiles.jsonl"
        )))
        .unwrap()
    });

    fn rule(v: Value) -> Rule {
        Rule::parse(&v, "audience").unwrap_or_else(|e| panic!("{v}: {e}"))
    }

    /// The fixture devices the rule matches, in file order.
    fn who(v: Value) -> Vec<&'static str> {
        let r = rule(v);
        FIXTURE
            .iter()
            .filter(|(_, p)| r.matches(p))
            .map(|(id, _)| id.as_str())
            .collect()
    }

    fn profile(fixture_id: &str) -> &'static Profile {
        &FIXTURE.iter().find(|(id, _)| id == fixture_id).unwrap().1
    }

    #[test]
    fn women_20_to_55_with_high_income() {
        assert_eq!(
            who(
                json!({"all":[{"attr":"gender","eq":"f"},{"attr":"age","between":[20,55]},{"attr":"income_tier","eq":"high"}]})
            ),
            ["d-000102", "d-000103", "d-000107", "d-000110"]
        );
    }

    #[test]
    fn fixture_audiences() {
        assert_eq!(
            who(json!({"attr":"loyalty","in":["gold","silver"]})),
            [
                "d-000102", "d-000103", "d-000104", "d-000106", "d-000107", "d-000110", "d-000111",
                "d-000115", "d-000116"
            ]
        );
        assert_eq!(
            who(json!({"any":[{"attr":"loyalty","eq":"gold"},{"attr":"loyalty","eq":"silver"}]})),
            who(json!({"attr":"loyalty","in":["gold","silver"]}))
        );
        assert_eq!(
            who(json!({"purchased":"tea","min":1})),
            ["d-000102", "d-000104", "d-000106", "d-000107", "d-000109", "d-000111", "d-000116"]
        );
        assert_eq!(
            who(json!({"purchased":"tea","min":2,"max":4})),
            ["d-000106", "d-000107", "d-000116"]
        );
        assert_eq!(
            who(json!({"purchased":"tea","max":0})),
            [
                "d-000101", "d-000103", "d-000105", "d-000110", "d-000112", "d-000113", "d-000114",
                "d-000115"
            ]
        );
        // d-000114 has no gender, so `eq` is false and `not` of it true.
        assert_eq!(
            who(json!({"not":{"attr":"gender","eq":"f"}})),
            [
                "d-000101", "d-000104", "d-000105", "d-000109", "d-000111", "d-000112", "d-000114",
                "d-000115"
            ]
        );
        assert_eq!(
            who(json!({"attr":"age","gte":18,"lte":30})),
            ["d-000103", "d-000106", "d-000109", "d-000113"]
        );
        assert_eq!(who(json!({"attr":"age","eq":41})), ["d-000101"]);
        assert_eq!(
            who(json!({"attr":"interests","contains":"travel"})),
            ["d-000103", "d-000114", "d-000116"]
        );
        // Exact: d-000109's "bubble-tea" is not "tea".
        assert_eq!(
            who(json!({"attr":"interests","contains_any":["tea","coffee"]})),
            ["d-000101", "d-000102", "d-000104", "d-000106", "d-000107", "d-000111", "d-000116"]
        );
        assert_eq!(who(json!({"attr":"gender","eq":"F"})), Vec::<&str>::new());
        // Wrong type for the operator: false.
        assert_eq!(
            who(json!({"attr":"interests","eq":"tea"})),
            Vec::<&str>::new()
        );
        assert_eq!(who(json!({"attr":"gender","gte":0})), Vec::<&str>::new());
        assert_eq!(
            who(json!({"attr":"age","contains":"4"})),
            Vec::<&str>::new()
        );
        assert_eq!(
            FIXTURE
                .iter()
                .filter(|(_, p)| Rule::always().matches(p))
                .count(),
            15
        );
    }

    #[test]
    fn missing_attributes_on_the_sparse_profile() {
        let sparse = profile("d-000114");
        let m = |v: Value| rule(v).matches(sparse);
        assert!(!m(json!({"attr":"age","gte":0})));
        assert!(m(json!({"not":{"attr":"age","gte":0}})));
        assert!(!m(json!({"attr":"gender","in":["f","m"]})));
        assert!(!m(json!({"attr":"loyalty","exists":true})));
        assert!(m(json!({"attr":"loyalty","exists":false})));
        assert!(m(json!({"attr":"income_tier","exists":true})));
        assert!(m(json!({"purchased":"tea","max":0})));
        assert!(!m(json!({"purchased":"tea","min":1})));
        assert!(m(
            json!({"all":[{"attr":"income_tier","eq":"high"},{"attr":"interests","contains":"travel"}]})
        ));
        assert_eq!(who(json!({"attr":"age","exists":false})), ["d-000114"]);
    }

    #[test]
    fn scalars_compare_by_type() {
        let value =
            br#"{"device_id":"d","consent":true,"attributes":{"vip":true,"code":"1","n":1}}"#;
        let Ok(ProfileRecord::Upsert { profile, .. }) = decode(None, Some(value)) else {
            panic!()
        };
        let m = |v: Value| rule(v).matches(&profile);
        assert!(m(json!({"attr":"vip","eq":true})));
        assert!(!m(json!({"attr":"vip","eq":"true"})));
        assert!(m(json!({"attr":"code","eq":"1"})));
        assert!(!m(json!({"attr":"code","eq":1})));
        assert!(m(json!({"attr":"n","in":["1",false,1.0]})));
        assert!(m(json!({"attr":"n","between":[1,1]})));
    }

    #[test]
    fn parse_errors_name_the_node() {
        let cases: &[(Value, &str)] = &[
            (json!({"all":[{"attr":"gender","eq":"f"},{"attr":"age","between":[60,20]}]}), "audience.all[1].between: min 60 is greater than max 20"),
            (json!([1]), "audience: expected a rule"),
            (json!({}), "audience: expected a rule"),
            (json!({"all":[]}), "audience.all: expected a non-empty list of rules"),
            (json!({"any":{"attr":"a","eq":1}}), "audience.any: expected a non-empty list of rules"),
            (json!({"all":[{"attr":"a","eq":1}],"any":[]}), "audience: a rule has one of `all`, `any`, `not`, `attr` or `purchased`, not both `all` and `any`"),
            (json!({"all":[{"attr":"a","eq":1}],"note":"x"}), "audience.note: unknown key (expected all)"),
            (json!({"not":[{"attr":"a","eq":1}]}), "audience.not: expected a rule"),
            (json!({"any":[{"attr":"x"}]}), "audience.any[0]: needs an operator"),
            (json!({"attr":"age","gte":18,"eq":3}), "audience: has two operators, `eq` and `gte`"),
            (json!({"attr":"age","between":[1,2],"lte":3}), "audience: has two operators, `between` and `lte`"),
            (json!({"attr":"age","gte":60,"lte":20}), "audience.lte: gte 60 is greater than lte 20"),
            (json!({"attr":"age","eq":3,"equals":1}), "audience.equals: unknown key (expected attr, eq, in"),
            (json!({"not":{"attr":"a","in":["x",[1]]}}), "audience.not.in[1]: expected a string, number or bool"),
            (json!({"attr":"a","in":[]}), "audience.in: expected a non-empty list"),
            (json!({"attr":"","eq":1}), "audience.attr: expected an attribute name"),
            (json!({"attr":7,"eq":1}), "audience.attr: expected an attribute name"),
            (json!({"attr":"a","eq":null}), "audience.eq: expected a string, number or bool"),
            (json!({"attr":"age","between":[1]}), "audience.between: expected [min, max], two numbers"),
            (json!({"attr":"age","between":[1,"9"]}), "audience.between[1]: expected a number"),
            (json!({"attr":"age","gte":"18"}), "audience.gte: expected a number"),
            (json!({"attr":"i","contains":1}), "audience.contains: expected a string"),
            (json!({"attr":"i","contains_any":["a",2]}), "audience.contains_any[1]: expected a string"),
            (json!({"attr":"l","exists":"yes"}), "audience.exists: expected true or false"),
            (json!({"purchased":"tea"}), "audience: needs `min`, `max` or both"),
            (json!({"purchased":"tea","min":3,"max":1}), "audience.max: min 3 is greater than max 1"),
            (json!({"purchased":"tea","min":-1}), "audience.min: expected a number ≥ 0"),
            (json!({"purchased":"","min":1}), "audience.purchased: expected a purchase category"),
            (json!({"purchased":"tea","min":1,"within_days":30}), "audience.within_days: unknown key (expected purchased, min, max)"),
        ];
        for (input, want) in cases {
            let got = Rule::parse(input, "audience")
                .expect_err(&input.to_string())
                .to_string();
            assert!(
                got.starts_with(want),
                "{input} gave {got:?}, expected {want:?}"
            );
        }
        let e = Rule::parse(&json!({"all":[{"attr":"a","between":[2,1]}]}), "").unwrap_err();
        assert_eq!(e.path, "all[0].between");
        let e = Rule::parse(&json!(null), "").unwrap_err();
        assert_eq!(
            (e.path.as_str(), e.reason.clone()),
            ("", RuleReason::NotARule)
        );
        assert!(e.to_string().starts_with("expected a rule"));
    }

    #[test]
    fn depth_and_size_limits() {
        let nest = |levels: usize| {
            (1..levels).fold(json!({"attr":"a","exists":true}), |r, _| json!({"not": r}))
        };
        assert!(Rule::parse(&nest(MAX_DEPTH), "audience").is_ok());
        let e = Rule::parse(&nest(MAX_DEPTH + 1), "audience").unwrap_err();
        assert_eq!(e.reason, RuleReason::TooDeep);
        assert_eq!(e.path, format!("audience{}", ".not".repeat(MAX_DEPTH)));
        assert_eq!(
            e.to_string().rsplit(": ").next(),
            Some("nested more than 16 levels deep")
        );

        let leaves = |n: usize| json!({"any": vec![json!({"attr":"a","eq":1}); n]});
        assert!(Rule::parse(&leaves(MAX_NODES - 1), "audience").is_ok());
        let e = Rule::parse(&leaves(MAX_NODES), "audience").unwrap_err();
        assert_eq!(e.to_string(), "audience.any[255]: more than 256 rule nodes");
    }

    /// Attribute values of every shape, so rules meet the wrong type too.
    fn attr_value() -> impl Strategy<Value = Value> {
        let text = prop_oneof![Just("x"), Just("y")];
        prop_oneof![
            text.clone().prop_map(|s| json!(s)),
            (0..4i32).prop_map(|n| json!(n)),
            any::<bool>().prop_map(|b| json!(b)),
            proptest::collection::vec(text, 0..3).prop_map(|l| json!(l)),
            (proptest::option::of(0..3i32), proptest::option::of(0..3i32)).prop_map(|(x, y)| {
                let mut m = Map::new();
                if let Some(x) = x {
                    m.insert("x".into(), json!(x));
                }
                if let Some(y) = y {
                    m.insert("y".into(), json!(y));
                }
                Value::Object(m)
            }),
        ]
    }

    fn small_profile() -> impl Strategy<Value = Profile> {
        proptest::collection::vec(proptest::option::of(attr_value()), 3).prop_map(|values| {
            let mut attributes = Map::new();
            for (name, v) in ["a", "b", PURCHASES_ATTRIBUTE].into_iter().zip(values) {
                if let Some(v) = v {
                    attributes.insert(name.into(), v);
                }
            }
            let body = json!({"device_id":"d","consent":true,"attributes":attributes}).to_string();
            match decode(None, Some(body.as_bytes())) {
                Ok(ProfileRecord::Upsert { profile, .. }) => profile,
                other => panic!("{body}: {other:?}"),
            }
        })
    }

    fn leaf() -> impl Strategy<Value = Value> {
        let text = || prop_oneof![Just("x"), Just("y")];
        let scalar = || {
            prop_oneof![
                text().prop_map(|s| json!(s)),
                (0..4i32).prop_map(|n| json!(n)),
                any::<bool>().prop_map(|b| json!(b)),
            ]
        };
        let name = || {
            prop_oneof![
                Just("a"),
                Just("b"),
                Just(PURCHASES_ATTRIBUTE),
                Just("absent")
            ]
        };
        prop_oneof![
            (name(), scalar()).prop_map(|(a, v)| json!({"attr":a,"eq":v})),
            (name(), proptest::collection::vec(scalar(), 1..3))
                .prop_map(|(a, v)| json!({"attr":a,"in":v})),
            (name(), 0..4i32, 0..4i32)
                .prop_map(|(a, x, y)| json!({"attr":a,"between":[x.min(y),x.max(y)]})),
            (name(), 0..4i32).prop_map(|(a, x)| json!({"attr":a,"gte":x})),
            (name(), 0..4i32).prop_map(|(a, x)| json!({"attr":a,"lte":x})),
            (name(), text()).prop_map(|(a, t)| json!({"attr":a,"contains":t})),
            (name(), proptest::collection::vec(text(), 1..3))
                .prop_map(|(a, t)| json!({"attr":a,"contains_any":t})),
            (name(), any::<bool>()).prop_map(|(a, b)| json!({"attr":a,"exists":b})),
            (text(), 0..3i32, 0..3i32, 0..3u8).prop_map(|(c, x, y, which)| match which {
                0 => json!({"purchased":c,"min":x}),
                1 => json!({"purchased":c,"max":x}),
                _ => json!({"purchased":c,"min":x.min(y),"max":x.max(y)}),
            }),
        ]
    }

    fn rule_json() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(3, 16, 2, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 1..3).prop_map(|v| json!({"all": v})),
                proptest::collection::vec(inner.clone(), 1..3).prop_map(|v| json!({"any": v})),
                inner.prop_map(|r| json!({"not": r})),
            ]
        })
    }

    proptest! {
        #[test]
        fn combinators_are_boolean_algebra(a in rule_json(), b in rule_json(), p in small_profile()) {
            let (ra, rb) = (rule(a.clone()), rule(b.clone()));
            let (ma, mb) = (ra.matches(&p), rb.matches(&p));
            prop_assert_eq!(rule(json!({"not": a.clone()})).matches(&p), !ma);
            prop_assert_eq!(rule(json!({"all": [a.clone(), b.clone()]})).matches(&p), ma && mb);
            prop_assert_eq!(rule(json!({"any": [a, b]})).matches(&p), ma || mb);
        }
    }
}
