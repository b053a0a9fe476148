//! Money in baht, exact to the satang: no floating point anywhere.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::InvalidValue;

/// An amount of money, never negative, held in satang (1/100 baht).
///
/// Written and read as a decimal string (`"1234.50"`), so that JSON and CSV
/// carry it exactly; whole baht may also be given as a JSON integer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Baht {
    satang: u64,
}

const BAHT_EXPECTED: &str = "an amount in baht of zero or more, e.g. 1500 or 1,500.50";

impl Baht {
    /// Zero baht.
    pub const ZERO: Baht = Baht { satang: 0 };

    /// An amount in satang.
    pub const fn from_satang(satang: u64) -> Baht {
        Baht { satang }
    }

    /// An amount in whole baht.
    pub const fn from_baht(baht: u64) -> Baht {
        Baht {
            satang: baht.saturating_mul(100),
        }
    }

    /// The amount in satang.
    pub const fn satang(self) -> u64 {
        self.satang
    }

    /// Parses what a person types: `1500`, `1,500`, `1500.5`, `1,500.50 บาท`.
    pub fn parse(text: &str) -> Result<Baht, InvalidValue> {
        Self::parse_field(text, "amount")
    }

    /// Like [`Baht::parse`], naming `field` in the error. Thai digits are
    /// read as digits; commas must group thousands (`1,500`, not `1,50`);
    /// at most [`Baht::CEILING`].
    pub fn parse_field(text: &str, field: &'static str) -> Result<Baht, InvalidValue> {
        Self::parse_at_most(text, field, Baht::CEILING)
    }

    fn parse_at_most(text: &str, field: &'static str, ceiling: Baht) -> Result<Baht, InvalidValue> {
        let text = crate::codes::with_ascii_digits(text);
        let trimmed = text
            .trim()
            .trim_end_matches("บาท")
            .trim_end_matches("THB")
            .trim_end_matches("baht")
            .trim();
        if trimmed.starts_with('-') {
            return Err(InvalidValue::new(field, "is negative", BAHT_EXPECTED).th("ติดลบ"));
        }
        let (whole, fraction) = trimmed.split_once('.').unwrap_or((trimmed, ""));
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        let grouped = whole.contains(',');
        let whole: String = whole.chars().filter(|c| *c != ',').collect();
        if whole.is_empty() || !all_digits(&whole) || !all_digits(fraction) {
            return Err(InvalidValue::new(field, "is not a number", BAHT_EXPECTED).th("ไม่ใช่ตัวเลข"));
        }
        if grouped && !is_grouped_by_thousands(trimmed.split('.').next().unwrap_or("")) {
            // `1,50` is 1.50 in some countries and 150 in none: not guessed.
            return Err(InvalidValue::new(
                field,
                "has commas that do not group thousands",
                BAHT_EXPECTED,
            )
            .th("ใส่จุลภาค (,) ไม่ตรงหลักพัน"));
        }
        if fraction.len() > 2 {
            return Err(InvalidValue::new(
                field,
                "has more than 2 decimal places (satang)",
                BAHT_EXPECTED,
            )
            .th("มีทศนิยมเกิน 2 ตำแหน่ง (สตางค์)"));
        }
        let too_large = || {
            InvalidValue::new(
                field,
                format!("is more than {} baht", ceiling.grouped()),
                BAHT_EXPECTED,
            )
            .th(format!("มากกว่า {} บาท", ceiling.grouped()))
        };
        let baht: u64 = whole.parse().map_err(|_| too_large())?;
        let satang: u64 = format!("{fraction:0<2}").parse().unwrap_or(0);
        baht.checked_mul(100)
            .and_then(|s| s.checked_add(satang))
            .map(Baht::from_satang)
            .filter(|amount| *amount <= ceiling)
            .ok_or_else(too_large)
    }

    /// The most an amount typed or imported may be: ten million baht. No
    /// allowance, repair or year's income of a household this programme
    /// follows comes near it; a larger figure is a typing slip that would
    /// otherwise swamp the office's totals.
    pub const CEILING: Baht = Baht::from_baht(10_000_000);

    /// The amount as people read it: thousands grouped, two decimals
    /// (`15,000.00`).
    pub fn grouped(self) -> String {
        format!(
            "{}.{:02}",
            group_thousands(self.satang / 100),
            self.satang % 100
        )
    }

    /// The sum, or `None` on overflow.
    pub fn checked_add(self, other: Baht) -> Option<Baht> {
        self.satang.checked_add(other.satang).map(Baht::from_satang)
    }

    /// The amount divided evenly among `parts`, rounded down to the satang.
    pub fn per(self, parts: u32) -> Option<Baht> {
        (parts > 0).then(|| Baht::from_satang(self.satang / u64::from(parts)))
    }
}

/// A whole number as people read it, its thousands grouped (`1,174`).
pub fn group_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// True when `whole` (digits and commas) groups its digits in threes from
/// the right: `1,500`, `12,345,678`.
fn is_grouped_by_thousands(whole: &str) -> bool {
    let mut groups = whole.split(',');
    let first = groups.next().unwrap_or("");
    (1..=3).contains(&first.len()) && groups.all(|group| group.len() == 3)
}

impl fmt::Display for Baht {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.satang / 100, self.satang % 100)
    }
}

impl FromStr for Baht {
    type Err = InvalidValue;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Baht::parse(text)
    }
}

impl Serialize for Baht {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Baht {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Amount;
        impl serde::de::Visitor<'_> for Amount {
            type Value = Baht;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an amount in baht: a decimal string or whole baht")
            }

            fn visit_u64<E: serde::de::Error>(self, baht: u64) -> Result<Baht, E> {
                baht.checked_mul(100)
                    .map(Baht::from_satang)
                    .ok_or_else(|| E::custom("amount is too large"))
            }

            fn visit_i64<E: serde::de::Error>(self, baht: i64) -> Result<Baht, E> {
                u64::try_from(baht)
                    .map_err(|_| E::custom("amount is negative"))
                    .and_then(|baht| self.visit_u64(baht))
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Baht, E> {
                // What the program itself writes (`1234.50`) is read without
                // allocating; anything else goes through the full parser.
                if let Some(amount) = Baht::parse_plain(text) {
                    return Ok(amount);
                }
                // What is stored or synced is read whatever its size: a
                // record must never become unreadable. The ceiling is for
                // what is typed.
                Baht::parse_at_most(text, "amount", Baht::from_satang(u64::MAX)).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(Amount)
    }
}

impl Baht {
    /// `digits` or `digits.dd` in ASCII, as [`Baht`]'s `Display` writes it.
    fn parse_plain(text: &str) -> Option<Baht> {
        let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
        if whole.is_empty()
            || whole.len() > 17
            || fraction.len() > 2
            || !whole
                .bytes()
                .chain(fraction.bytes())
                .all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let whole: u64 = whole.parse().ok()?;
        let mut satang: u64 = fraction.parse().unwrap_or(0);
        if fraction.len() == 1 {
            satang *= 10;
        }
        whole
            .checked_mul(100)?
            .checked_add(satang)
            .map(Baht::from_satang)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quick_reading_of_stored_amounts_agrees_with_the_full_parser() {
        for text in [
            "0",
            "7",
            "1234",
            "1234.5",
            "1234.50",
            "0.05",
            "00.5",
            "99999999999999999",
            "1,234.50",
            "๑๒๓",
            "12 บาท",
            "-5",
            "1.234",
            "",
            ".5",
            "5.",
        ] {
            let full = Baht::parse_at_most(text, "amount", Baht::from_satang(u64::MAX)).ok();
            if let Some(quick) = Baht::parse_plain(text) {
                assert_eq!(Some(quick), full, "{text}");
            }
            let read: Option<Baht> = serde_json::from_value(serde_json::json!(text)).ok();
            assert_eq!(read, full, "{text}");
        }
        let whole: Baht = serde_json::from_value(serde_json::json!(25)).unwrap();
        assert_eq!(whole, Baht::from_baht(25));
        assert!(serde_json::from_value::<Baht>(serde_json::json!(-1)).is_err());
    }

    #[test]
    fn amounts_parse_exactly() {
        assert_eq!(Baht::parse("1500").unwrap(), Baht::from_baht(1500));
        assert_eq!(Baht::parse("1,500.5").unwrap().satang(), 150_050);
        assert_eq!(Baht::parse("0.07 บาท").unwrap().satang(), 7);
        assert_eq!(Baht::parse("38000").unwrap().to_string(), "38000.00");
        // 0.1 + 0.2 is exactly 0.3 here.
        let sum = Baht::parse("0.1")
            .unwrap()
            .checked_add(Baht::parse("0.2").unwrap());
        assert_eq!(sum, Some(Baht::parse("0.3").unwrap()));
    }

    #[test]
    fn bad_amounts_are_refused_with_the_reason() {
        assert!(Baht::parse("-5").unwrap_err().problem.contains("negative"));
        assert!(Baht::parse("12.345")
            .unwrap_err()
            .problem
            .contains("decimal"));
        assert!(Baht::parse("abc")
            .unwrap_err()
            .problem
            .contains("not a number"));
        assert!(Baht::parse("")
            .unwrap_err()
            .problem
            .contains("not a number"));
        assert!(Baht::parse("99999999999999999999")
            .unwrap_err()
            .problem
            .contains("more than"));
        let error = Baht::parse_field("-1", "income_per_year").unwrap_err();
        assert_eq!(error.field, "income_per_year");
    }

    #[test]
    fn commas_must_group_thousands_and_amounts_stay_under_the_ceiling() {
        assert!(Baht::parse("12,345,678").is_err(), "above the ceiling");
        assert_eq!(
            Baht::parse("1,234,567").unwrap(),
            Baht::from_baht(1_234_567)
        );
        assert_eq!(Baht::parse("1,500.50").unwrap().satang(), 150_050);
        for slip in ["1,50", "1,5,0,0", ",500", "1500,", "15,00.00", "1,5000"] {
            assert!(
                Baht::parse(slip).unwrap_err().problem.contains("thousands"),
                "{slip}"
            );
        }
        assert!(Baht::parse("9,000,000,000,000,000")
            .unwrap_err()
            .problem
            .contains("10,000,000.00"));
        assert!(Baht::parse("10000000.01").is_err());
        assert_eq!(Baht::parse("10,000,000").unwrap(), Baht::CEILING);
        // Stored or synced amounts are read whatever their size.
        let stored: Baht = serde_json::from_str("\"90000000000.00\"").unwrap();
        assert_eq!(stored, Baht::from_baht(90_000_000_000));
    }

    #[test]
    fn thai_digits_and_the_kedmanee_one_are_digits() {
        assert_eq!(Baht::parse("๑,๕๐๐").unwrap(), Baht::from_baht(1500));
        assert_eq!(Baht::parse("ๅ๕๐๐").unwrap(), Baht::from_baht(1500));
    }

    #[test]
    fn amounts_read_with_thousands_grouped() {
        assert_eq!(Baht::from_baht(15_000).grouped(), "15,000.00");
        assert_eq!(Baht::from_satang(5).grouped(), "0.05");
        assert_eq!(Baht::from_baht(1_234_567).grouped(), "1,234,567.00");
        assert_eq!(Baht::from_baht(999).grouped(), "999.00");
    }

    #[test]
    fn money_round_trips_through_json_without_floats() {
        let amount: Baht = serde_json::from_str("\"2465.50\"").unwrap();
        assert_eq!(serde_json::to_string(&amount).unwrap(), "\"2465.50\"");
        let whole: Baht = serde_json::from_str("3000").unwrap();
        assert_eq!(whole, Baht::from_baht(3000));
        assert!(serde_json::from_str::<Baht>("30.5").is_err());
        assert!(serde_json::from_str::<Baht>("-3").is_err());
    }
}
