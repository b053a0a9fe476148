//! Thailand's administrative areas as data: which province, district and
//! subdistrict codes exist, and their names, so that a mistyped village code
//! is caught in the house and not at the provincial office.
//!
//! faenban ships the subdistrict lists of the provinces it is used in
//! (`schema/areas/`, from GeoThai, CC BY 4.0). A code in one of those
//! provinces must name a real district and subdistrict; a code elsewhere
//! must at least name one of the 77 provinces. Village numbers are not in
//! any public list, so only their subdistrict is checked.

use std::collections::BTreeMap;

use crate::codes::{AreaCode, AreaLevel};
use crate::error::{Error, InvalidValue, Result};

/// Khon Kaen's subdistricts (GeoThai).
pub const KHON_KAEN: &str = include_str!("../../../schema/areas/khon_kaen_geo.csv");
/// Kalasin's subdistricts (GeoThai).
pub const KALASIN: &str = include_str!("../../../schema/areas/kalasin_geo.csv");
/// Sisaket's subdistricts (GeoThai).
pub const SISAKET: &str = include_str!("../../../schema/areas/sisaket_geo.csv");

/// The 77 province codes of the Department of Provincial Administration.
const PROVINCES: [&str; 77] = [
    "10", "11", "12", "13", "14", "15", "16", "17", "18", "19", "20", "21", "22", "23", "24", "25",
    "26", "27", "30", "31", "32", "33", "34", "35", "36", "37", "38", "39", "40", "41", "42", "43",
    "44", "45", "46", "47", "48", "49", "50", "51", "52", "53", "54", "55", "56", "57", "58", "60",
    "61", "62", "63", "64", "65", "66", "67", "70", "71", "72", "73", "74", "75", "76", "77", "80",
    "81", "82", "83", "84", "85", "86", "90", "91", "92", "93", "94", "95", "96",
];

/// An area's names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AreaName {
    /// In Thai, as the DOPA writes it.
    pub th: String,
    /// In English (romanized).
    pub en: String,
}

/// The known areas: province, district and subdistrict codes with names.
#[derive(Clone, Debug, Default)]
pub struct Areas {
    names: BTreeMap<AreaCode, AreaName>,
}

const COLUMNS: [&str; 9] = [
    "province_code",
    "province_th",
    "province_en",
    "district_code",
    "district_th",
    "district_en",
    "subdistrict_code",
    "subdistrict_th",
    "subdistrict_en",
];

impl Areas {
    /// The areas shipped with faenban.
    pub fn builtin() -> Areas {
        let mut areas = Areas::default();
        for text in [KHON_KAEN, KALASIN, SISAKET] {
            areas.add(text).expect("the shipped area lists parse");
        }
        areas
    }

    /// Adds the subdistricts of a GeoThai-style CSV (columns
    /// `province_code, province_th, province_en, district_code, …,
    /// subdistrict_en`, in any order).
    pub fn add(&mut self, text: &str) -> Result<()> {
        let mut rows = crate::csv::rows(text);
        let bad = |line: usize, message: String| Error::AreaList { line, message };
        let header = match rows.next() {
            Some(Ok(row)) => row,
            Some(Err(broken)) => return Err(bad(broken.line, broken.problem.into())),
            None => return Err(bad(1, "no header row".into())),
        };
        let mut index = [0; COLUMNS.len()];
        for (slot, name) in index.iter_mut().zip(COLUMNS) {
            *slot = header
                .fields
                .iter()
                .position(|h| h.trim() == name)
                .ok_or_else(|| bad(header.line, format!("no `{name}` column")))?;
        }
        for row in rows {
            let row = row.map_err(|broken| bad(broken.line, broken.problem.into()))?;
            let cell = |i: usize| row.fields.get(index[i]).map_or("", |s| s.trim());
            for (code, th, en, level) in [
                (0, 1, 2, AreaLevel::Province),
                (3, 4, 5, AreaLevel::District),
                (6, 7, 8, AreaLevel::Subdistrict),
            ] {
                let area = AreaCode::parse(cell(code))
                    .ok()
                    .filter(|a| a.level() == level)
                    .ok_or_else(|| {
                        bad(
                            row.line,
                            format!("`{}` is not a {level:?} code", cell(code)),
                        )
                    })?;
                self.names.entry(area).or_insert_with(|| AreaName {
                    th: cell(th).to_owned(),
                    en: cell(en).to_owned(),
                });
            }
        }
        Ok(())
    }

    /// True when faenban has the district and subdistrict list of this
    /// area's province.
    pub fn covers(&self, code: &AreaCode) -> bool {
        self.names.contains_key(&code.province())
    }

    /// Checks that an area exists, as far as the shipped lists can tell.
    pub fn check(&self, code: &AreaCode) -> Result<(), InvalidValue> {
        let field = if code.level() == AreaLevel::Village {
            "village_code"
        } else {
            "area_code"
        };
        let province = code.province();
        if !PROVINCES.contains(&province.as_str()) {
            return Err(InvalidValue::new(
                field,
                format!("starts with {province}, which is not a province code"),
                "a code that starts with one of the 77 province codes (10 Bangkok … 96 Narathiwat)",
            )
            .th(format!("ขึ้นต้นด้วย {province} ซึ่งไม่ใช่รหัสจังหวัด"))
            .th_expected("รหัสที่ขึ้นต้นด้วยรหัสจังหวัดหนึ่งใน 77 จังหวัด เช่น 40 ขอนแก่น"));
        }
        if !self.covers(code) {
            return Ok(());
        }
        let mut area = code.clone();
        while area.level() > AreaLevel::Subdistrict {
            area = area.parent().expect("a village has a subdistrict");
        }
        let mut missing = None;
        let mut probe = Some(area);
        while let Some(level) = probe {
            if !self.names.contains_key(&level) {
                missing = Some(level.clone());
            }
            probe = level.parent();
        }
        match missing {
            None => Ok(()),
            Some(unknown) => Err(InvalidValue::new(
                field,
                format!(
                    "names {} {unknown}, which does not exist in {}",
                    format!("{:?}", unknown.level()).to_lowercase(),
                    self.names[&province].en
                ),
                "a code from the DOPA area list, e.g. 40010101 (Nai Mueang, Mueang Khon Kaen)",
            )
            .th_expected(
                "รหัสที่มีอยู่ในบัญชีรหัสพื้นที่ของกรมการปกครอง เช่น 40010101 (ม.1 ต.ในเมือง อ.เมืองขอนแก่น)",
            )
            .th(format!(
                "ไม่มี{}{unknown} ในจังหวัด{}",
                match unknown.level() {
                    AreaLevel::District => "อำเภอรหัส ",
                    _ => "ตำบลรหัส ",
                },
                self.names[&province].th
            ))),
        }
    }

    /// The names of one area, if known.
    pub fn name(&self, code: &AreaCode) -> Option<&AreaName> {
        self.names.get(code)
    }

    /// Where an area is, in Thai: `ต.ในเมือง อ.เมืองขอนแก่น จ.ขอนแก่น`, as
    /// far as the lists know; a village's number comes first (`ม.1`).
    pub fn describe_th(&self, code: &AreaCode) -> String {
        self.describe(code, true)
    }

    /// Where an area is, in English: `Village 1, Nai Mueang, Mueang Khon
    /// Kaen, Khon Kaen`.
    pub fn describe_en(&self, code: &AreaCode) -> String {
        self.describe(code, false)
    }

    fn describe(&self, code: &AreaCode, thai: bool) -> String {
        let mut parts = Vec::new();
        let mut area = Some(code.clone());
        while let Some(current) = area {
            if current.level() == AreaLevel::Village {
                let number = current.as_str()[6..].trim_start_matches('0');
                parts.push(if thai {
                    format!("ม.{number}")
                } else {
                    format!("Village {number}")
                });
            } else if let Some(name) = self.names.get(&current) {
                parts.push(match (thai, current.level()) {
                    (true, AreaLevel::Subdistrict) => format!("ต.{}", name.th),
                    (true, AreaLevel::District) => format!("อ.{}", name.th),
                    (true, _) => format!("จ.{}", name.th),
                    (false, _) => name.en.clone(),
                });
            }
            area = current.parent();
        }
        parts.join(if thai { " " } else { ", " })
    }

    /// Every known subdistrict of a province, in code order.
    pub fn subdistricts_of(&self, province: &AreaCode) -> Vec<&AreaCode> {
        self.names
            .keys()
            .filter(|code| code.level() == AreaLevel::Subdistrict && province.contains(code))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::Areas;
    use crate::codes::AreaCode;

    fn code(text: &str) -> AreaCode {
        AreaCode::parse(text).unwrap()
    }

    #[test]
    fn real_codes_pass_and_invented_ones_are_named() {
        let areas = Areas::builtin();
        assert!(areas.check(&code("40010101")).is_ok());
        assert!(areas.check(&code("4001")).is_ok());
        assert!(areas.check(&code("46")).is_ok());
        // A province with no shipped list is only checked as a province.
        assert!(areas.check(&code("50010101")).is_ok());
        let district = areas.check(&code("40990101")).unwrap_err();
        assert!(district.problem.contains("district 4099"), "{district}");
        let subdistrict = areas.check(&code("40019901")).unwrap_err();
        assert!(
            subdistrict.problem.contains("subdistrict 400199"),
            "{subdistrict}"
        );
        let province = areas.check(&code("59010101")).unwrap_err();
        assert!(province.problem.contains("not a province"), "{province}");
    }

    #[test]
    fn names_read_from_village_to_province() {
        let areas = Areas::builtin();
        assert_eq!(
            areas.describe_th(&code("40010103")),
            "ม.3 ต.ในเมือง อ.เมืองขอนแก่น จ.ขอนแก่น"
        );
        assert_eq!(
            areas.describe_en(&code("40010103")),
            "Village 3, Nai Mueang, Mueang Khon Kaen, Khon Kaen"
        );
        assert_eq!(areas.subdistricts_of(&code("40")).len(), 199);
        assert_eq!(areas.name(&code("46")).unwrap().en, "Kalasin");
    }
}
