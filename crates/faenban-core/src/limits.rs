//! Bounds on what one change, one field and one record may hold, checked
//! where a change from a device is decoded, so that everything accepted can
//! always be stored, read back and passed on.
//!
//! They are deliberately far above what a person records (a long note is a
//! few kilobytes; a field seldom holds more than two concurrent values) and
//! far below what would make a record unreadable or a push slow.

use serde_json::Value;

use crate::change::Change;
use crate::merge::RecordState;

/// The deepest a value may nest (arrays and objects). The stored record
/// state wraps a value a few levels deeper, and every reader's decoder must
/// still take it (serde_json stops at 128).
pub const MAX_VALUE_DEPTH: usize = 16;

/// The most bytes one value may take as JSON (64 KiB: some 20,000 Thai
/// characters of notes).
pub const MAX_VALUE_BYTES: usize = 64 << 10;

/// The longest field name, in bytes.
pub const MAX_FIELD_NAME_BYTES: usize = 64;

/// The longest record kind name, in bytes.
pub const MAX_KIND_NAME_BYTES: usize = 32;

/// The most stamps one change may supersede.
pub const MAX_SUPERSEDES: usize = 64;

/// The most stamps an archive may say it observed.
pub const MAX_OBSERVED: usize = 1024;

/// The most earlier stamps one change may carry.
pub const MAX_PREVIOUS_STAMPS: usize = 8;

/// The most values one field may hold at once, from every device together.
pub const MAX_LIVE_VALUES: usize = 64;

/// The most values one device may leave in one field at once. A device
/// supersedes its own earlier value when it edits a field; only a laptop
/// restored from a backup (which lost its latest writes) leaves one more,
/// once per restore.
pub const MAX_LIVE_VALUES_PER_DEVICE: usize = 4;

/// The most fields a record may have (a visit has one per indicator, about
/// forty in all).
pub const MAX_FIELDS_PER_RECORD: usize = 256;

/// The most bytes a record's merged state may take as JSON.
pub const MAX_RECORD_STATE_BYTES: usize = 1 << 20;

/// The longest device name, in characters.
pub const MAX_DEVICE_NAME_CHARS: usize = 100;

/// What about a change or a record is out of bounds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LimitExceeded {
    /// A value nests deeper than [`MAX_VALUE_DEPTH`].
    ValueTooDeep,
    /// A value is larger than [`MAX_VALUE_BYTES`].
    ValueTooLarge,
    /// A field name is empty, too long or has characters other than
    /// lowercase letters, digits, `_`, `.` and `-`.
    BadFieldName,
    /// A record kind's name is empty, too long or not lowercase letters and `_`.
    BadKindName,
    /// Too many stamps in `supersedes`, `observed` or `previous_stamps`.
    TooManyStamps,
    /// A field would hold more values than [`MAX_LIVE_VALUES`], or one
    /// device more than [`MAX_LIVE_VALUES_PER_DEVICE`].
    TooManyValues,
    /// A record would have more fields than [`MAX_FIELDS_PER_RECORD`], or a
    /// state larger than [`MAX_RECORD_STATE_BYTES`].
    RecordTooLarge,
}

impl LimitExceeded {
    /// The reason in a sentence.
    pub fn describe(&self) -> String {
        match self {
            LimitExceeded::ValueTooDeep => {
                format!("a value nests more than {MAX_VALUE_DEPTH} levels deep")
            }
            LimitExceeded::ValueTooLarge => {
                format!("a value is larger than {} KiB", MAX_VALUE_BYTES >> 10)
            }
            LimitExceeded::BadFieldName => format!(
                "a field name must be 1 to {MAX_FIELD_NAME_BYTES} lowercase letters, digits, `_`, `.` or `-`"
            ),
            LimitExceeded::BadKindName => format!(
                "a record kind must be 1 to {MAX_KIND_NAME_BYTES} lowercase letters or `_`"
            ),
            LimitExceeded::TooManyStamps => format!(
                "a change may supersede at most {MAX_SUPERSEDES} values, observe at most {MAX_OBSERVED} and carry at most {MAX_PREVIOUS_STAMPS} earlier stamps"
            ),
            LimitExceeded::TooManyValues => format!(
                "a field may hold at most {MAX_LIVE_VALUES} values at once, and at most {MAX_LIVE_VALUES_PER_DEVICE} from one device"
            ),
            LimitExceeded::RecordTooLarge => format!(
                "a record may have at most {MAX_FIELDS_PER_RECORD} fields and {} KiB of state",
                MAX_RECORD_STATE_BYTES >> 10
            ),
        }
    }
}

impl LimitExceeded {
    /// The same, as the error a person typing the value sees (the laptop
    /// refuses what the server would).
    pub fn as_invalid(&self) -> crate::InvalidValue {
        let th = match self {
            LimitExceeded::ValueTooDeep => format!("ข้อมูลซ้อนกันลึกเกิน {MAX_VALUE_DEPTH} ชั้น"),
            LimitExceeded::ValueTooLarge => format!(
                "ข้อมูลยาวเกิน {} KiB (ประมาณ 20,000 ตัวอักษรไทย)",
                MAX_VALUE_BYTES >> 10
            ),
            LimitExceeded::BadFieldName | LimitExceeded::BadKindName => {
                "ชื่อช่องข้อมูลไม่ถูกต้อง".to_owned()
            }
            LimitExceeded::TooManyStamps
            | LimitExceeded::TooManyValues
            | LimitExceeded::RecordTooLarge => "ระเบียนนี้มีข้อมูลมากเกินที่เซิร์ฟเวอร์รับ".to_owned(),
        };
        crate::InvalidValue::new("value", self.describe(), "a shorter value")
            .th(th)
            .th_expected("ข้อมูลที่สั้นลง")
    }
}

/// Checks one change's shape: its value, its field and kind names, and how
/// many stamps it carries.
pub fn check_change(change: &Change) -> Result<(), LimitExceeded> {
    if !is_field_name(&change.field) {
        return Err(LimitExceeded::BadFieldName);
    }
    if !is_kind_name(change.record.kind.as_str()) {
        return Err(LimitExceeded::BadKindName);
    }
    if change.supersedes.len() > MAX_SUPERSEDES
        || change.observed.len() > MAX_OBSERVED
        || change.previous_stamps.len() > MAX_PREVIOUS_STAMPS
    {
        return Err(LimitExceeded::TooManyStamps);
    }
    check_value(&change.value)
}

/// Checks a value's depth and size.
pub fn check_value(value: &Value) -> Result<(), LimitExceeded> {
    if depth(value) > MAX_VALUE_DEPTH {
        return Err(LimitExceeded::ValueTooDeep);
    }
    if encoded_len(value) > MAX_VALUE_BYTES {
        return Err(LimitExceeded::ValueTooLarge);
    }
    Ok(())
}

/// Checks a record's merged state: how many fields it has, how many values
/// each field holds (in all, and from `device`), and its size.
pub fn check_record(state: &RecordState, device: crate::DeviceId) -> Result<(), LimitExceeded> {
    let mut fields = 0;
    for (_, field) in state.fields() {
        fields += 1;
        let live = field.live();
        if live.len() > MAX_LIVE_VALUES
            || live.iter().filter(|entry| entry.author() == device).count()
                > MAX_LIVE_VALUES_PER_DEVICE
        {
            return Err(LimitExceeded::TooManyValues);
        }
    }
    if fields > MAX_FIELDS_PER_RECORD {
        return Err(LimitExceeded::RecordTooLarge);
    }
    if encoded_len(state) > MAX_RECORD_STATE_BYTES {
        return Err(LimitExceeded::RecordTooLarge);
    }
    Ok(())
}

/// True for a device name a person could have typed: 1 to
/// [`MAX_DEVICE_NAME_CHARS`] characters, none of them control characters.
pub fn is_device_name(name: &str) -> bool {
    let count = name.chars().count();
    (1..=MAX_DEVICE_NAME_CHARS).contains(&count)
        && !name.chars().any(char::is_control)
        && !name.trim().is_empty()
}

fn is_field_name(name: &str) -> bool {
    (1..=MAX_FIELD_NAME_BYTES).contains(&name.len())
        && name
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-'))
}

fn is_kind_name(name: &str) -> bool {
    (1..=MAX_KIND_NAME_BYTES).contains(&name.len())
        && name.bytes().all(|b| matches!(b, b'a'..=b'z' | b'_'))
}

/// How deep a value nests, without recursion (a hostile value must not
/// exhaust the stack): a scalar is 0, `[]` is 1, `[[1]]` is 2.
fn depth(value: &Value) -> usize {
    let mut deepest = 0;
    let mut stack: Vec<(&Value, usize)> = vec![(value, 0)];
    while let Some((value, level)) = stack.pop() {
        match value {
            Value::Array(items) => {
                deepest = deepest.max(level + 1);
                if level < MAX_VALUE_DEPTH {
                    stack.extend(items.iter().map(|item| (item, level + 1)));
                }
            }
            Value::Object(map) => {
                deepest = deepest.max(level + 1);
                if level < MAX_VALUE_DEPTH {
                    stack.extend(map.values().map(|item| (item, level + 1)));
                }
            }
            _ => {}
        }
    }
    deepest
}

/// The length of `value` as JSON, counted as it is written, not kept.
fn encoded_len(value: &impl serde::Serialize) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    match serde_json::to_writer(&mut counter, value) {
        Ok(()) => counter.0,
        Err(_) => usize::MAX,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nested(levels: usize) -> Value {
        let mut value = json!(1);
        for _ in 0..levels {
            value = Value::Array(vec![value]);
        }
        value
    }

    #[test]
    fn a_value_nested_too_deep_or_too_large_is_out_of_bounds() {
        assert_eq!(check_value(&nested(MAX_VALUE_DEPTH)), Ok(()));
        assert_eq!(
            check_value(&nested(MAX_VALUE_DEPTH + 1)),
            Err(LimitExceeded::ValueTooDeep)
        );
        assert_eq!(check_value(&nested(123)), Err(LimitExceeded::ValueTooDeep));
        let note = "ก".repeat(MAX_VALUE_BYTES / 3 - 2);
        assert_eq!(check_value(&json!(note)), Ok(()));
        let long = "ก".repeat(MAX_VALUE_BYTES / 3 + 1);
        assert_eq!(check_value(&json!(long)), Err(LimitExceeded::ValueTooLarge));
    }

    #[test]
    fn field_and_kind_names_are_short_and_plain() {
        for good in ["village", "answer.12", "answer.4-1", "income_per_year"] {
            assert!(is_field_name(good), "{good}");
        }
        for bad in ["", "Village", "a b", "ชื่อ", &"x".repeat(65)] {
            assert!(!is_field_name(bad), "{bad}");
        }
        assert!(is_kind_name("garden_plot"));
        assert!(!is_kind_name("Garden"));
        assert!(is_device_name("อสม. มาลี"));
        assert!(!is_device_name(""));
        assert!(!is_device_name("a\u{0}b"));
        assert!(!is_device_name(&"ก".repeat(101)));
    }
}
