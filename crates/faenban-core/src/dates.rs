//! Dates as officials read them: ISO or Buddhist Era (พ.ศ. = ค.ศ. + 543),
//! and the Thai fiscal year.

use chrono::{Datelike, NaiveDate};

use crate::error::InvalidValue;

/// Years from this one on are read as Buddhist Era: no survey is dated in
/// 2400 CE, and no Buddhist Era date in 1857.
const FIRST_BUDDHIST_ERA_YEAR: i32 = 2400;
/// Buddhist Era year minus Common Era year.
pub const BUDDHIST_ERA_OFFSET: i32 = 543;

const DATE_EXPECTED: &str =
    "a date as YYYY-MM-DD or DD/MM/YYYY, in ค.ศ. or พ.ศ. (e.g. 2025-01-15 or 15/01/2568)";

const THAI_MONTHS: [&str; 12] = [
    "มกราคม",
    "กุมภาพันธ์",
    "มีนาคม",
    "เมษายน",
    "พฤษภาคม",
    "มิถุนายน",
    "กรกฎาคม",
    "สิงหาคม",
    "กันยายน",
    "ตุลาคม",
    "พฤศจิกายน",
    "ธันวาคม",
];

/// The earliest date of a visit or of assistance: 1 January 2543 (2000 CE).
/// The BMN survey and this programme's assistance are recorded for this
/// century; an earlier date is a slip of the year (1900 for 2500, say).
pub const EARLIEST_EVENT: NaiveDate = match NaiveDate::from_ymd_opt(2000, 1, 1) {
    Some(date) => date,
    None => NaiveDate::MIN,
};

/// Parses `YYYY-MM-DD` or `DD/MM/YYYY`; a year of 2400 or more is Buddhist Era.
pub fn parse_date(text: &str) -> Result<NaiveDate, InvalidValue> {
    parse_date_field(text, "date")
}

/// Like [`parse_date`], naming `field` in the error.
pub fn parse_date_field(text: &str, field: &'static str) -> Result<NaiveDate, InvalidValue> {
    let text = crate::codes::with_ascii_digits(text);
    let text = text.trim();
    let numbers = |parts: Vec<&str>| -> Option<(i32, u32, u32)> {
        let [a, b, c] = parts.as_slice() else {
            return None;
        };
        Some((a.parse().ok()?, b.parse().ok()?, c.parse().ok()?))
    };
    let (year, month, day) = if text.contains('-') {
        numbers(text.split('-').collect())
    } else if text.contains('/') {
        numbers(text.split('/').collect()).map(|(d, m, y)| (y as i32, m, d as u32))
    } else {
        None
    }
    .ok_or_else(|| {
        InvalidValue::new(field, "is not written as a date", DATE_EXPECTED).th("ไม่ได้เขียนเป็นวันที่")
    })?;
    let year_ce = if year >= FIRST_BUDDHIST_ERA_YEAR {
        year - BUDDHIST_ERA_OFFSET
    } else {
        year
    };
    if !(1900..=2200).contains(&year_ce) {
        return Err(InvalidValue::new(
            field,
            format!("has the year {year}, which is out of range"),
            DATE_EXPECTED,
        )
        .th(format!("ปี {year} อยู่นอกช่วงที่เป็นไปได้")));
    }
    NaiveDate::from_ymd_opt(year_ce, month, day).ok_or_else(|| {
        InvalidValue::new(
            field,
            format!("day {day} of month {month} does not exist in that year"),
            DATE_EXPECTED,
        )
        .th(format!("วันที่ {day} ของเดือน {month} ไม่มีในปีนั้น"))
    })
}

/// The Buddhist Era year of a date.
pub fn buddhist_year(date: NaiveDate) -> i32 {
    date.year() + BUDDHIST_ERA_OFFSET
}

/// A date as a Thai reader writes it: `15 มกราคม 2568`.
pub fn format_thai(date: NaiveDate) -> String {
    format!(
        "{} {} {}",
        date.day(),
        THAI_MONTHS[date.month0() as usize],
        buddhist_year(date)
    )
}

/// A date in short Buddhist Era form: `15/01/2568`.
pub fn format_buddhist_short(date: NaiveDate) -> String {
    format!(
        "{:02}/{:02}/{}",
        date.day(),
        date.month(),
        buddhist_year(date)
    )
}

/// The Thai government fiscal year (Buddhist Era) a date falls in: it runs
/// from 1 October to 30 September and is named after the year it ends in.
pub fn fiscal_year_be(date: NaiveDate) -> i32 {
    let ending_year = if date.month() >= 10 {
        date.year() + 1
    } else {
        date.year()
    };
    ending_year + BUDDHIST_ERA_OFFSET
}

/// Whole years between `birth` and `on`.
pub fn age_on(birth: NaiveDate, on: NaiveDate) -> u32 {
    on.years_since(birth).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ymd(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn iso_and_buddhist_era_dates_read_the_same() {
        assert_eq!(parse_date("2025-01-15").unwrap(), ymd(2025, 1, 15));
        assert_eq!(parse_date("2568-01-15").unwrap(), ymd(2025, 1, 15));
        assert_eq!(parse_date("15/01/2568").unwrap(), ymd(2025, 1, 15));
        assert_eq!(parse_date("15/1/2025").unwrap(), ymd(2025, 1, 15));
    }

    #[test]
    fn impossible_and_malformed_dates_are_refused() {
        let error = parse_date("2568-02-30").unwrap_err();
        assert!(error.problem.contains("does not exist"), "{error}");
        assert!(parse_date("29/02/2567").is_ok(), "2024 is a leap year");
        assert!(parse_date("29/02/2568").is_err(), "2025 is not");
        assert!(parse_date("yesterday")
            .unwrap_err()
            .problem
            .contains("not written"));
        assert!(parse_date("2025-13-01").is_err());
        assert!(parse_date("0025-01-01")
            .unwrap_err()
            .problem
            .contains("out of range"));
    }

    #[test]
    fn dates_are_shown_in_buddhist_era() {
        assert_eq!(format_thai(ymd(2025, 1, 15)), "15 มกราคม 2568");
        assert_eq!(format_buddhist_short(ymd(2025, 1, 5)), "05/01/2568");
    }

    #[test]
    fn fiscal_year_starts_on_the_first_of_october() {
        assert_eq!(fiscal_year_be(ymd(2024, 9, 30)), 2567);
        assert_eq!(fiscal_year_be(ymd(2024, 10, 1)), 2568);
    }

    #[test]
    fn ages_count_whole_years() {
        assert_eq!(age_on(ymd(2020, 6, 1), ymd(2025, 5, 31)), 4);
        assert_eq!(age_on(ymd(2020, 6, 1), ymd(2025, 6, 1)), 5);
        assert_eq!(age_on(ymd(2026, 1, 1), ymd(2025, 1, 1)), 0);
    }
}
