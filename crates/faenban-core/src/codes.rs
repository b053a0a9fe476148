//! Validated identifiers: area codes, house codes and Thai national IDs.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::InvalidValue;

/// Keeps the digits of `text`, allowing the separators people type (`-`,
/// spaces), and refuses anything else.
/// A Thai digit (๐–๙), or the Kedmanee keyboard's ๅ (the key of 1, typed
/// without switching to English), as its ASCII digit.
pub fn ascii_digit(c: char) -> Option<char> {
    match c {
        '0'..='9' => Some(c),
        '๐'..='๙' => char::from_digit(c as u32 - '๐' as u32, 10),
        'ๅ' => Some('1'),
        _ => None,
    }
}

/// `text` with Thai digits and ๅ written as ASCII digits, everything else
/// as it was: what a person types on a Thai keyboard, read as they meant it.
pub fn with_ascii_digits(text: &str) -> String {
    text.chars().map(|c| ascii_digit(c).unwrap_or(c)).collect()
}

fn digits_of(
    text: &str,
    field: &'static str,
    expected: &'static str,
) -> Result<String, InvalidValue> {
    let mut digits = String::with_capacity(text.len());
    for c in text.trim().chars() {
        match c {
            '0'..='9' => digits.push(c),
            '-' | ' ' => {}
            // Thai digits (๐–๙), and the Kedmanee layout's "1" key.
            '๐'..='๙' | 'ๅ' => digits.push(ascii_digit(c).unwrap_or('1')),
            _ => {
                return Err(InvalidValue::new(
                    field,
                    format!("contains `{c}`, which is not a digit"),
                    expected,
                )
                .th(format!("มีตัวอักษร `{c}` ซึ่งไม่ใช่ตัวเลข")))
            }
        }
    }
    if digits.is_empty() {
        return Err(InvalidValue::new(field, "is empty", expected).th("ว่างอยู่"));
    }
    Ok(digits)
}

/// The Thai word for an area level named in English.
fn level_th(level: &str) -> &'static str {
    match level {
        "province" => "จังหวัด",
        "district" => "อำเภอ",
        "subdistrict" => "ตำบล",
        _ => "หมู่บ้าน",
    }
}

/// The level of an administrative area.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AreaLevel {
    /// จังหวัด, 2 digits.
    Province,
    /// อำเภอ, 4 digits.
    District,
    /// ตำบล, 6 digits.
    Subdistrict,
    /// หมู่บ้าน, 8 digits: subdistrict code + village number.
    Village,
}

/// A Department of Provincial Administration area code: province (2 digits),
/// district (4), subdistrict (6) or village (8).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AreaCode(String);

const AREA_EXPECTED: &str =
    "an area code of 2 (province), 4 (district), 6 (subdistrict) or 8 (village) digits, e.g. 40010101";

impl AreaCode {
    /// Parses and checks an area code of any level.
    pub fn parse(text: &str) -> Result<AreaCode, InvalidValue> {
        Self::parse_field(text, "area_code")
    }

    fn parse_field(text: &str, field: &'static str) -> Result<AreaCode, InvalidValue> {
        let digits = digits_of(text, field, AREA_EXPECTED)?;
        if !matches!(digits.len(), 2 | 4 | 6 | 8) {
            return Err(InvalidValue::new(
                field,
                format!("has {} digits", digits.len()),
                AREA_EXPECTED,
            )
            .th(format!("มี {} หลัก", digits.len())));
        }
        for (level, end) in [
            ("province", 2),
            ("district", 4),
            ("subdistrict", 6),
            ("village", 8),
        ] {
            if digits.len() >= end && &digits[end - 2..end] == "00" {
                return Err(InvalidValue::new(
                    field,
                    format!("has 00 as its {level} part, which no {level} uses"),
                    AREA_EXPECTED,
                )
                .th(format!("ส่วน{} เป็น 00 ซึ่งไม่มีจริง", level_th(level))));
            }
        }
        Ok(AreaCode(digits))
    }

    /// Parses a code that must be a village (8 digits).
    pub fn parse_village(text: &str) -> Result<AreaCode, InvalidValue> {
        let code = Self::parse_field(text, "village_code")?;
        if code.level() != AreaLevel::Village {
            return Err(InvalidValue::new(
                "village_code",
                format!("has {} digits", code.0.len()),
                "a village code of 8 digits: the subdistrict's 6 and the village number, e.g. 40010101",
            )
            .th(format!("มี {} หลัก", code.0.len())));
        }
        Ok(code)
    }

    /// The level of the area.
    pub fn level(&self) -> AreaLevel {
        match self.0.len() {
            2 => AreaLevel::Province,
            4 => AreaLevel::District,
            6 => AreaLevel::Subdistrict,
            _ => AreaLevel::Village,
        }
    }

    /// The digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The code of the area one level up, if any.
    pub fn parent(&self) -> Option<AreaCode> {
        (self.0.len() > 2).then(|| AreaCode(self.0[..self.0.len() - 2].to_owned()))
    }

    /// The province this area is in.
    pub fn province(&self) -> AreaCode {
        AreaCode(self.0[..2].to_owned())
    }

    /// True when `other` is this area or lies inside it.
    pub fn contains(&self, other: &AreaCode) -> bool {
        other.0.starts_with(&self.0)
    }
}

impl fmt::Debug for AreaCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AreaCode({})", self.0)
    }
}

impl fmt::Display for AreaCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for AreaCode {
    type Err = InvalidValue;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        AreaCode::parse(text)
    }
}

/// A house code (รหัสประจำบ้าน): 11 digits, the first 4 naming the
/// registration office; shown `xxxx-xxxxxx-x`. It has no known check digit.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HouseCode(String);

const HOUSE_EXPECTED: &str = "a house code of 11 digits, written 1234-567890-1";

impl HouseCode {
    /// Parses a house code, with or without dashes.
    pub fn parse(text: &str) -> Result<HouseCode, InvalidValue> {
        let digits = digits_of(text, "house_code", HOUSE_EXPECTED)?;
        if digits.len() != 11 {
            return Err(InvalidValue::new(
                "house_code",
                format!("has {} digits", digits.len()),
                HOUSE_EXPECTED,
            )
            .th(format!("มี {} หลัก", digits.len())));
        }
        if digits.bytes().all(|b| b == b'0') {
            return Err(
                InvalidValue::new("house_code", "is all zeros", HOUSE_EXPECTED)
                    .th("เป็นเลขศูนย์ทั้งหมด"),
            );
        }
        Ok(HouseCode(digits))
    }

    /// The 11 digits without dashes.
    pub fn digits(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for HouseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", &self.0[..4], &self.0[4..10], &self.0[10..])
    }
}

impl fmt::Debug for HouseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HouseCode({self})")
    }
}

impl FromStr for HouseCode {
    type Err = InvalidValue;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        HouseCode::parse(text)
    }
}

/// A Thai national ID (เลขประจำตัวประชาชน): 13 digits, the first (person
/// type) 1–8, the last a check digit. Personal data: `Debug` masks it.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NationalId(String);

const NATIONAL_ID_EXPECTED: &str =
    "a national ID of 13 digits starting with 1-8, written 1-2345-67890-12-1, whose last digit matches the check digit";

/// The check digit of the first 12 digits: (11 − Σ dᵢ × (14 − i) mod 11) mod 10.
fn national_id_check_digit(first_twelve: &[u8]) -> u8 {
    let sum: u32 = first_twelve
        .iter()
        .enumerate()
        .map(|(i, d)| u32::from(*d) * (13 - i as u32))
        .sum();
    ((11 - sum % 11) % 10) as u8
}

impl NationalId {
    /// Parses and checks a national ID, with or without dashes.
    pub fn parse(text: &str) -> Result<NationalId, InvalidValue> {
        let digits = digits_of(text, "national_id", NATIONAL_ID_EXPECTED)?;
        if digits.len() != 13 {
            return Err(InvalidValue::new(
                "national_id",
                format!("has {} digits", digits.len()),
                NATIONAL_ID_EXPECTED,
            )
            .th(format!("มี {} หลัก", digits.len())));
        }
        let values: Vec<u8> = digits.bytes().map(|b| b - b'0').collect();
        if !(1..=8).contains(&values[0]) {
            return Err(InvalidValue::new(
                "national_id",
                format!("starts with {}, which is not a person type", values[0]),
                NATIONAL_ID_EXPECTED,
            )
            .th(format!("ขึ้นต้นด้วย {} ซึ่งไม่ใช่ประเภทบุคคล", values[0])));
        }
        if national_id_check_digit(&values[..12]) != values[12] {
            return Err(InvalidValue::new(
                "national_id",
                "has a wrong check digit (a digit is mistyped)",
                NATIONAL_ID_EXPECTED,
            )
            .th("เลขตรวจสอบหลักสุดท้ายไม่ตรง (น่าจะพิมพ์ผิดสักหลัก)"));
        }
        Ok(NationalId(digits))
    }

    /// The valid ID that starts with these 12 digits: used to make synthetic
    /// IDs for tests and fixtures. Returns `None` unless given exactly 12
    /// digits starting with 1–8.
    pub fn with_check_digit(first_twelve: &str) -> Option<NationalId> {
        let values: Vec<u8> = first_twelve.bytes().map(|b| b.wrapping_sub(b'0')).collect();
        if values.len() != 12 || values.iter().any(|d| *d > 9) || !(1..=8).contains(&values[0]) {
            return None;
        }
        let check = national_id_check_digit(&values);
        Some(NationalId(format!("{first_twelve}{check}")))
    }

    /// The 13 digits without dashes.
    pub fn digits(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NationalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.0;
        write!(
            f,
            "{}-{}-{}-{}-{}",
            &d[..1],
            &d[1..5],
            &d[5..10],
            &d[10..12],
            &d[12..]
        )
    }
}

impl fmt::Debug for NationalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "NationalId(x-xxxx-xxxxx-{}-{})",
            &self.0[10..12],
            &self.0[12..]
        )
    }
}

impl FromStr for NationalId {
    type Err = InvalidValue;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        NationalId::parse(text)
    }
}

macro_rules! serde_as_digits {
    ($type:ty, $accessor:ident, $parse:path) => {
        impl Serialize for $type {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.$accessor())
            }
        }
        impl<'de> Deserialize<'de> for $type {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                $parse(&text).map_err(serde::de::Error::custom)
            }
        }
    };
}

serde_as_digits!(AreaCode, as_str, AreaCode::parse);
serde_as_digits!(HouseCode, digits, HouseCode::parse);
serde_as_digits!(NationalId, digits, NationalId::parse);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_national_id_in_every_message_is_a_valid_one() {
        assert!(NATIONAL_ID_EXPECTED.contains("1-2345-67890-12-1"));
        assert!(NationalId::parse("1-2345-67890-12-1").is_ok());
    }

    #[test]
    fn a_valid_national_id_is_accepted_with_or_without_dashes() {
        // 1-1017-00230-70-8 is a synthetic ID whose check digit is right:
        // 1·13+1·12+0·11+1·10+7·9+0·8+0·7+2·6+3·5+0·4+7·3+0·2 = 146; 146 mod 11 = 3; 11−3 = 8.
        let id = NationalId::parse("1-1017-00230-70-8").unwrap();
        assert_eq!(id.digits(), "1101700230708");
        assert_eq!(id.to_string(), "1-1017-00230-70-8");
        assert_eq!(NationalId::parse("1101700230708").unwrap(), id);
        assert_eq!(NationalId::parse("๑๑๐๑๗๐๐๒๓๐๗๐๘").unwrap(), id);
    }

    #[test]
    fn check_digit_ten_wraps_to_zero() {
        let id = NationalId::with_check_digit("300000000001").unwrap();
        // 3·13 + 1·2 = 41; 41 mod 11 = 8; 11 − 8 = 3.
        assert_eq!(id.digits(), "3000000000013");
        let wrapped = NationalId::with_check_digit("100000000000").unwrap();
        // 1·13 = 13; 13 mod 11 = 2; 11 − 2 = 9.
        assert_eq!(wrapped.digits(), "1000000000009");
        let ten = NationalId::with_check_digit("100000000005").unwrap();
        // 13 + 5·2 = 23; 23 mod 11 = 1; (11 − 1) mod 10 = 0.
        assert_eq!(ten.digits(), "1000000000050");
        assert!(NationalId::parse("1000000000050").is_ok());
    }

    #[test]
    fn a_mistyped_national_id_is_refused_with_the_reason() {
        let error = NationalId::parse("1-1017-00230-70-9").unwrap_err();
        assert_eq!(error.field, "national_id");
        assert!(error.problem.contains("check digit"), "{error}");
        assert!(NationalId::parse("110170023070")
            .unwrap_err()
            .problem
            .contains("12 digits"));
        assert!(NationalId::parse("9101700230708")
            .unwrap_err()
            .problem
            .contains("person type"));
        assert!(NationalId::parse("0101700230708")
            .unwrap_err()
            .problem
            .contains("person type"));
        assert!(NationalId::parse("1101700x30708")
            .unwrap_err()
            .problem
            .contains("`x`"));
        assert!(NationalId::parse("").unwrap_err().problem.contains("empty"));
    }

    #[test]
    fn debug_output_masks_a_national_id() {
        let id = NationalId::parse("1101700230708").unwrap();
        let shown = format!("{id:?}");
        assert!(!shown.contains("11017"), "{shown}");
    }

    #[test]
    fn every_synthetic_id_passes_its_own_check() {
        for n in 0..2_000u64 {
            let first = format!("{}{:011}", 1 + n % 8, n * 7_919);
            let id = NationalId::with_check_digit(&first).unwrap();
            assert!(NationalId::parse(id.digits()).is_ok());
            // Any single-digit change to the last digit breaks it.
            let mut wrong = id.digits().to_owned();
            let last = wrong.pop().unwrap();
            wrong.push(if last == '9' {
                '0'
            } else {
                (last as u8 + 1) as char
            });
            assert!(NationalId::parse(&wrong).is_err());
        }
        assert!(NationalId::with_check_digit("012345678901").is_none());
        assert!(NationalId::with_check_digit("12345").is_none());
    }

    #[test]
    fn house_codes_are_11_digits_and_shown_with_dashes() {
        let code = HouseCode::parse("4001-012345-6").unwrap();
        assert_eq!(code.digits(), "40010123456");
        assert_eq!(code.to_string(), "4001-012345-6");
        assert!(HouseCode::parse("4001-01234-6")
            .unwrap_err()
            .problem
            .contains("10 digits"));
        assert!(HouseCode::parse("00000000000")
            .unwrap_err()
            .problem
            .contains("zeros"));
        assert!(HouseCode::parse("4001/012345/6").is_err());
    }

    #[test]
    fn area_codes_know_their_level_and_parents() {
        let village = AreaCode::parse("40010203").unwrap();
        assert_eq!(village.level(), AreaLevel::Village);
        assert_eq!(village.parent().unwrap().as_str(), "400102");
        assert_eq!(village.province().as_str(), "40");
        assert!(AreaCode::parse("4001").unwrap().contains(&village));
        assert!(!AreaCode::parse("4002").unwrap().contains(&village));
        assert_eq!(AreaCode::parse("40").unwrap().level(), AreaLevel::Province);
        assert!(AreaCode::parse("400")
            .unwrap_err()
            .problem
            .contains("3 digits"));
        assert!(AreaCode::parse("40010200")
            .unwrap_err()
            .problem
            .contains("village"));
        assert!(AreaCode::parse("00").is_err());
        assert!(AreaCode::parse_village("400102")
            .unwrap_err()
            .problem
            .contains("6 digits"));
    }

    #[test]
    fn codes_deserialize_only_when_valid() {
        let ok: NationalId = serde_json::from_str("\"1101700230708\"").unwrap();
        assert_eq!(serde_json::to_string(&ok).unwrap(), "\"1101700230708\"");
        let bad = serde_json::from_str::<NationalId>("\"1101700230709\"").unwrap_err();
        assert!(bad.to_string().contains("check digit"));
    }
}
