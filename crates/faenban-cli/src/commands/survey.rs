//! `survey`: a BMN survey visit and its assessment.

use std::collections::BTreeMap;

use anyhow::{Context as _, Result};
use faenban_core::catalogue::HouseholdProfile;
use faenban_core::dates::{age_on, format_buddhist_short, parse_date_field};
use faenban_core::model::{answer_field, decode, Household, Visit};
use faenban_core::{Answer, Baht, Dimension, RecordKind};
use serde_json::json;
use uuid::Uuid;

use super::{
    assess, bad_input, builtin_catalogues, dimension_name, members_of, now_ms, print_json, resolve,
    today, yes_no_text, Context,
};
use crate::cli::SurveyArgs;
use crate::failure::Failure;
use crate::lang::Lang;

fn read_answers(lang: Lang, args: &SurveyArgs) -> Result<BTreeMap<String, Answer>> {
    let mut answers = BTreeMap::new();
    if let Some(path) = &args.answers_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading answers file {}", path.display()))?;
        let raw: BTreeMap<String, String> = serde_json::from_str(&text).map_err(|error| {
            bad_input(
                lang,
                format!("ไฟล์คำตอบไม่ถูกต้อง: {error}"),
                format!("the answers file is not a JSON object of code → answer: {error}"),
            )
        })?;
        for (code, answer) in raw {
            answers.insert(code.clone(), parse_answer(lang, &code, &answer)?);
        }
    }
    for pair in &args.answers {
        let Some((code, answer)) = pair.split_once('=') else {
            return Err(bad_input(
                lang,
                format!("`{pair}` ต้องเขียนเป็น รหัส=คำตอบ เช่น 8=fail"),
                format!("`{pair}` must be CODE=ANSWER, e.g. 8=fail"),
            ));
        };
        answers.insert(
            code.trim().to_owned(),
            parse_answer(lang, code.trim(), answer)?,
        );
    }
    Ok(answers)
}

fn parse_answer(lang: Lang, code: &str, text: &str) -> Result<Answer> {
    Answer::parse(text).ok_or_else(|| {
        bad_input(
            lang,
            format!("คำตอบตัวชี้วัด {code} `{text}` ต้องเป็น pass, fail หรือ na"),
            format!("answer to indicator {code}: `{text}` is not pass, fail or na"),
        )
    })
}

/// `faenban survey`.
pub fn survey(context: &mut Context, args: SurveyArgs) -> Result<()> {
    let lang = context.lang;
    let household_key = resolve(&context.store, lang, RecordKind::Household, &args.household)?;
    let household_state = context
        .store
        .record(&household_key)?
        .context("household vanished")?;
    let household = decode::<Household>(&household_key, &household_state)?;
    let catalogues = builtin_catalogues();
    let catalogue = catalogues.get(&args.edition)?;
    let answers = read_answers(lang, &args)?;
    for code in answers.keys() {
        if catalogue.indicator(code).is_none() {
            return Err(faenban_core::Error::UnknownIndicator {
                code: code.clone(),
                edition: catalogue.edition.clone(),
            }
            .into());
        }
    }
    if answers.is_empty() {
        return Err(bad_input(
            lang,
            "ไม่มีคำตอบ: ใช้ --answer รหัส=คำตอบ หรือ --answers-file",
            "no answers: give --answer CODE=ANSWER or --answers-file",
        ));
    }
    let date = match &args.date {
        Some(text) => parse_date_field(text, "date").map_err(|e| Failure::invalid(lang, &e))?,
        None => today(),
    };
    let members = members_of(&context.store, household_key.id)?;
    let member_count = args
        .members
        .or_else(|| u32::try_from(members.len()).ok().filter(|n| *n > 0));
    let surveyor = match args.surveyor.clone() {
        Some(name) => name,
        None => context.store.device()?.map(|d| d.name).unwrap_or_default(),
    };
    let income = args
        .income
        .as_deref()
        .map(|text| Baht::parse_field(text, "income_per_year"))
        .transpose()
        .map_err(|e| Failure::invalid(lang, &e))?;
    let visit = Visit {
        household: household_key.id,
        date,
        surveyor,
        edition: catalogue.edition.clone(),
        income_per_year: income,
        members: member_count,
    };
    let profile = HouseholdProfile {
        ages: members
            .iter()
            .filter_map(|m| m.value.birth_date.map(|b| age_on(b, date)))
            .collect(),
        any_disability: members.iter().any(|m| m.value.disability),
        any_chronic_illness: members.iter().any(|m| m.value.chronic_illness),
    };
    let skipped: Vec<String> = catalogue
        .indicators
        .iter()
        .filter(|i| !i.applies_to.applies(&profile) && !answers.contains_key(&i.code))
        .map(|i| i.code.clone())
        .collect();
    let visit_key = context.store.write(now_ms(), |s| {
        let key = s.create(Uuid::now_v7(), &visit)?;
        for (code, answer) in &answers {
            s.set(&key, &answer_field(code), json!(answer))?;
        }
        Ok(key)
    })?;
    let state = context
        .store
        .record(&visit_key)?
        .context("visit vanished")?;
    let assessment = assess(&visit, &state, household.value.welfare_card)?;
    if context.json {
        return print_json(&json!({
            "visit_id": visit_key.id,
            "assessment": assessment,
            "not_applicable_to_household": skipped,
        }));
    }
    say!(
        "{} {} {}",
        lang.pick("บันทึกการสำรวจ", "survey recorded for"),
        household.value.house_code,
        format_buddhist_short(date)
    );
    for dimension in Dimension::ALL {
        let mark = if assessment.is_deprived_in(dimension) {
            lang.pick("ขาดแคลน", "deprived")
        } else {
            lang.pick("ผ่าน", "ok")
        };
        say!("  {:<28} {}", dimension_name(lang, dimension), mark);
    }
    if let Some(per) = assessment.income_per_person_per_year {
        say!(
            "  {} {per}",
            lang.pick("รายได้ต่อคนต่อปี (บาท):", "income per person per year (baht):")
        );
    }
    say!(
        "  {} {}",
        lang.pick("คนจนเป้าหมาย:", "target poor:"),
        yes_no_text(lang, assessment.target_poor)
    );
    if !assessment.unanswered.is_empty() {
        say!(
            "  {} {}",
            lang.pick("ยังไม่ได้ตอบ:", "not answered:"),
            assessment.unanswered.join(", ")
        );
    }
    Ok(())
}
