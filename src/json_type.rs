//! JSON types as error messages name them: what a value is, and which field of a message that
//! failed typed decoding has the wrong type (so the error names the field, not a byte offset).

use serde_json::Value;

/// The JSON types a field may be expected to have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    String,
    Number,
    Integer,
    Bool,
    Object,
}

impl Expected {
    /// As error messages say it: "a string", "an integer"….
    pub fn name(self) -> &'static str {
        match self {
            Self::String => "a string",
            Self::Number => "a number",
            Self::Integer => "an integer",
            Self::Bool => "a boolean",
            Self::Object => "an object",
        }
    }

    fn admits(self, v: &Value) -> bool {
        match self {
            Self::String => v.is_string(),
            Self::Number => v.is_number(),
            Self::Integer => v.is_i64(),
            Self::Bool => v.is_boolean(),
            Self::Object => v.is_object(),
        }
    }
}

/// "a string", "a list"…: what a value is.
pub fn name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// The first of `fields` whose value in `bytes` (a JSON object) has another type than expected
/// (absent and null are fine). Only messages that already failed typed decoding pay for this
/// second, untyped parse.
pub fn ill_typed(
    bytes: &[u8],
    fields: &[(&'static str, Expected)],
) -> Option<(&'static str, Expected)> {
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(bytes) else {
        return None;
    };
    fields.iter().copied().find(|&(field, expected)| {
        map.get(field)
            .is_some_and(|v| !v.is_null() && !expected.admits(v))
    })
}
