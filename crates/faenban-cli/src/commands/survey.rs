//! `survey`: a BMN survey visit and its assessment, either guided (one
//! question at a time, in Thai, each answer saved as it is given so that a
//! flat battery or Ctrl-C loses nothing and the survey resumes where it
//! stopped) or scripted (answers from flags or a JSON file).

use std::collections::BTreeMap;
use std::io::{BufRead, Write as _};

use anyhow::{Context as _, Result};
use faenban_core::catalogue::{AppliesTo, HouseholdProfile, Indicator, Rule};
use faenban_core::dates::{age_on, format_buddhist_short};
use faenban_core::model::{answer_field, decode, visit_answers, Household, Record, Visit};
use faenban_core::{Answer, Assessment, Baht, Dimension, RecordKey, RecordKind};
use serde_json::json;
use uuid::Uuid;

use super::{
    assess, bad_input, builtin_catalogues, dimension_name, event_date, members_of, now_ms, pad,
    print_json, resolve, today, yes_no_text, Context,
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

/// What a survey needs to know about the household.
struct Surveyed {
    key: RecordKey,
    household: Record<Household>,
    /// Ages and conditions of its members on the day of the visit.
    profile: HouseholdProfile,
    /// True when every member is recorded with a birth date, so that the
    /// profile can tell which indicators do not apply.
    profile_complete: bool,
    /// Its active members, when any are recorded.
    members: Option<u32>,
}

fn surveyed(context: &Context, key: RecordKey, date: chrono::NaiveDate) -> Result<Surveyed> {
    let state = context.store.record(&key)?.context("household vanished")?;
    let household = decode::<Household>(&key, &state)?;
    let members = members_of(&context.store, key.id)?;
    let profile = HouseholdProfile {
        ages: members
            .iter()
            .filter_map(|m| m.value.birth_date.map(|b| age_on(b, date)))
            .collect(),
        any_disability: members.iter().any(|m| m.value.disability),
        any_chronic_illness: members.iter().any(|m| m.value.chronic_illness),
    };
    let profile_complete =
        !members.is_empty() && members.iter().all(|m| m.value.birth_date.is_some());
    Ok(Surveyed {
        key,
        household,
        profile,
        profile_complete,
        members: u32::try_from(members.len()).ok().filter(|n| *n > 0),
    })
}

fn visit_date(lang: Lang, args: &SurveyArgs) -> Result<chrono::NaiveDate> {
    match &args.date {
        Some(text) => event_date(lang, "date", text),
        None => Ok(today()),
    }
}

fn income(lang: Lang, text: Option<&str>) -> Result<Option<Baht>> {
    text.map(|text| Baht::parse_field(text, "income_per_year"))
        .transpose()
        .map_err(|e| Failure::invalid(lang, &e).into())
}

fn surveyor(context: &Context, args: &SurveyArgs) -> Result<String> {
    Ok(match args.surveyor.clone() {
        Some(name) => name,
        None => context.store.device()?.map(|d| d.name).unwrap_or_default(),
    })
}

/// `faenban survey`.
pub fn survey(context: &mut Context, args: SurveyArgs) -> Result<()> {
    if args.answers.is_empty() && args.answers_file.is_none() {
        return guided(context, &args);
    }
    let lang = context.lang;
    let catalogue = builtin_catalogues().get(&args.edition)?;
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
            "ไฟล์คำตอบไม่มีคำตอบเลย",
            "the answers file holds no answers",
        ));
    }
    let date = visit_date(lang, &args)?;
    let household = resolve(&context.store, lang, RecordKind::Household, &args.household)?;
    let target = surveyed(context, household, date)?;
    let visit = Visit {
        household: target.key.id,
        date,
        surveyor: surveyor(context, &args)?,
        edition: catalogue.edition.clone(),
        income_per_year: income(lang, args.income.as_deref())?,
        members: args.members.or(target.members),
        in_progress: false,
    };
    check_scripted_answers(lang, catalogue, &target, &visit, &answers)?;
    let skipped: Vec<String> = catalogue
        .indicators
        .iter()
        .filter(|i| !i.applies_to.applies(&target.profile) && !answers.contains_key(&i.code))
        .map(|i| i.code.clone())
        .collect();
    let visit_key = context.store.write(now_ms(), |s| {
        let key = s.create(Uuid::now_v7(), &visit)?;
        for (code, answer) in &answers {
            s.set(&key, &answer_field(code), json!(answer))?;
        }
        Ok(key)
    })?;
    report_assessment(context, &target, &visit, &visit_key, &skipped)
}

/// Refuses, before anything is saved, a typed answer the catalogue would
/// replace (an indicator computed from the income and the number of
/// people, when both are given) and an answer other than "not applicable"
/// to an indicator that does not concern the household as recorded (every
/// member with a birth date, and none of that age or condition).
fn check_scripted_answers(
    lang: Lang,
    catalogue: &faenban_core::catalogue::Catalogue,
    target: &Surveyed,
    visit: &Visit,
    answers: &BTreeMap<String, Answer>,
) -> Result<()> {
    for (code, answer) in answers {
        let Some(indicator) = catalogue.indicator(code) else {
            continue;
        };
        let computed = matches!(indicator.rule, Rule::MinIncomePerPersonPerYear { .. })
            && visit.income_per_year.is_some()
            && visit.members.is_some();
        if computed {
            return Err(bad_input(
                lang,
                format!(
                    "ตัวชี้วัด {code} คำนวณจากรายได้และจำนวนคนในครัวเรือนที่ใส่ไว้ ไม่ต้องตอบเอง ให้ตัดคำตอบ {code}= ออก (หรือแก้ --income / --members ถ้าตัวเลขไม่ถูก)"
                ),
                format!(
                    "indicator {code} is computed from the income and the number of people given; drop the answer {code}= (or correct --income / --members if they are wrong)"
                ),
            ));
        }
        let concerns = !target.profile_complete
            || visit.members != target.members
            || indicator.applies_to.applies(&target.profile);
        if !concerns && *answer != Answer::NotApplicable {
            return Err(bad_input(
                lang,
                format!(
                    "ตัวชี้วัด {code} ไม่เกี่ยวกับครัวเรือนนี้ตามสมาชิกที่บันทึกไว้ (ไม่มีสมาชิกในช่วงอายุหรือภาวะนั้น) ให้ตอบ {code}=na หรือเพิ่มสมาชิกที่ขาดก่อน"
                ),
                format!(
                    "indicator {code} does not concern this household as its members are recorded (no member of that age or condition); answer {code}=na, or add the missing member first"
                ),
            ));
        }
    }
    Ok(())
}

/// Prints what a finished visit found, per TPMAP dimension.
fn report_assessment(
    context: &Context,
    target: &Surveyed,
    visit: &Visit,
    visit_key: &RecordKey,
    skipped: &[String],
) -> Result<()> {
    let lang = context.lang;
    let state = context.store.record(visit_key)?.context("visit vanished")?;
    let assessment = assess(visit, &state, target.household.value.welfare_card)?;
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
        target.household.value.house_code,
        format_buddhist_short(visit.date)
    );
    print_dimensions(lang, &assessment);
    Ok(())
}

fn print_dimensions(lang: Lang, assessment: &Assessment) {
    let catalogue = builtin_catalogues().get(&assessment.edition).ok();
    for dimension in Dimension::ALL {
        // A dimension none of whose indicators was answered is not "ok".
        let (asked, open) = catalogue.map_or((0, 0), |c| {
            let of_dimension = c
                .indicators
                .iter()
                .filter(|i| i.dimension == Some(dimension));
            let open = of_dimension
                .clone()
                .filter(|i| !assessment.answers.contains_key(&i.code))
                .count();
            (of_dimension.count(), open)
        });
        let mark = if assessment.is_deprived_in(dimension) {
            lang.pick("ขาดแคลน", "deprived").to_owned()
        } else if asked > 0 && open == asked {
            lang.pick("ยังไม่ได้สำรวจ", "not surveyed").to_owned()
        } else if open > 0 {
            match lang {
                Lang::Th => format!("ผ่าน (ยังไม่ได้ตอบ {open} ข้อ)"),
                Lang::En => format!("ok ({open} not answered)"),
            }
        } else {
            lang.pick("ผ่าน", "ok").to_owned()
        };
        say!("  {} {mark}", pad(dimension_name(lang, dimension), 28));
    }
    if let Some(per) = assessment.income_per_person_per_year {
        say!(
            "  {} {}",
            lang.pick("รายได้ต่อคนต่อปี (บาท):", "income per person per year (baht):"),
            per.grouped()
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
}

/// Questions on stderr, answers from stdin: stdout stays for the result.
struct Prompter {
    input: std::io::StdinLock<'static>,
}

impl Prompter {
    fn say(&self, text: &str) {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{text}");
    }

    /// Asks and reads one line; `None` when the input ended (Ctrl-D, or
    /// the end of a piped file), which pauses the survey like `q`.
    fn ask(&mut self, question: &str) -> Result<Option<String>> {
        {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "{question} ");
            let _ = err.flush();
        }
        let mut line = String::new();
        if self.input.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        Ok(Some(line.trim().to_owned()))
    }
}

/// What the volunteer typed at an indicator.
enum Reply {
    Answer(Answer),
    Skip,
    Back,
    Pause,
}

fn reply(text: &str) -> Option<Reply> {
    // Thai digits and the Kedmanee ๅ (the key of 1) are digits here.
    let text = faenban_core::codes::with_ascii_digits(text);
    Some(match text.to_lowercase().as_str() {
        "1" => Reply::Answer(Answer::Pass),
        "2" => Reply::Answer(Answer::Fail),
        "3" => Reply::Answer(Answer::NotApplicable),
        "" | "s" | "skip" | "ข้าม" => Reply::Skip,
        "b" | "back" | "ย้อน" | "ย้อนกลับ" => Reply::Back,
        "q" | "quit" | "หยุด" | "พัก" => Reply::Pause,
        other => Reply::Answer(Answer::parse(other)?),
    })
}

fn answer_text(lang: Lang, answer: Answer) -> &'static str {
    match answer {
        Answer::Pass => lang.pick("ผ่าน", "pass"),
        Answer::Fail => lang.pick("ไม่ผ่าน", "fail"),
        Answer::NotApplicable => lang.pick("ไม่เกี่ยวข้อง", "not applicable"),
    }
}

/// The household's unfinished guided survey, if one was interrupted.
pub(super) fn unfinished_visit(
    context: &Context,
    household: &RecordKey,
) -> Result<Option<(RecordKey, Visit)>> {
    let mut found: Option<(RecordKey, Visit)> = None;
    for (key, state) in context
        .store
        .records_of_household(&RecordKind::Visit, household.id)?
    {
        let Ok(visit) = decode::<Visit>(&key, &state) else {
            continue;
        };
        if visit.archived || !visit.value.in_progress {
            continue;
        }
        if found
            .as_ref()
            .is_none_or(|(_, v)| visit.value.date >= v.date)
        {
            found = Some((key, visit.value));
        }
    }
    Ok(found)
}

/// The guided survey: one indicator at a time, each answer committed as it
/// is given.
fn guided(context: &mut Context, args: &SurveyArgs) -> Result<()> {
    let lang = context.lang;
    let mut prompt = Prompter {
        input: std::io::stdin().lock(),
    };
    let household_key = resolve(&context.store, lang, RecordKind::Household, &args.household)?;
    let mut draft = unfinished_visit(context, &household_key)?;
    if args.new {
        // Check what the new survey needs before setting the old one aside.
        visit_date(lang, args)?;
        builtin_catalogues().get(&args.edition)?;
    }
    if let (true, Some((key, visit))) = (args.new, &draft) {
        context.store.write(now_ms(), |s| s.archive(key))?;
        prompt.say(&match lang {
            Lang::Th => format!(
                "การสำรวจที่ค้างไว้ของวันที่ {} ถูกยกเลิก เริ่มใหม่",
                format_buddhist_short(visit.date)
            ),
            Lang::En => format!(
                "the unfinished survey of {} was set aside; starting a new one",
                format_buddhist_short(visit.date)
            ),
        });
        draft = None;
    }
    let date = match &draft {
        Some((_, visit)) => visit.date,
        None => visit_date(lang, args)?,
    };
    let target = surveyed(context, household_key, date)?;
    let edition = draft
        .as_ref()
        .map_or(args.edition.as_str(), |(_, v)| v.edition.as_str())
        .to_owned();
    let catalogue = builtin_catalogues().get(&edition)?;
    prompt.say(&format!(
        "{} {}  {}  ({})",
        lang.pick("สำรวจ จปฐ. ครัวเรือน", "BMN survey of household"),
        target.household.value.house_code,
        target.household.value.address,
        format_buddhist_short(date)
    ));
    prompt.say(lang.pick(
        "ตอบ 1 = ผ่าน, 2 = ไม่ผ่าน, 3 = ไม่เกี่ยวข้อง, Enter = ข้าม, b = ย้อนกลับ, q = พักไว้ทำต่อภายหลัง",
        "answer 1 = pass, 2 = fail, 3 = not applicable, Enter = skip, b = back, q = pause and resume later",
    ));

    let resuming = draft.is_some();
    let (visit_key, mut visit) = match draft {
        Some((key, visit)) => (Some(key), visit),
        None => {
            let mut visit = Visit {
                household: target.key.id,
                date,
                surveyor: surveyor(context, args)?,
                edition: catalogue.edition.clone(),
                income_per_year: income(lang, args.income.as_deref())?,
                members: args.members.or(target.members),
                in_progress: true,
            };
            if visit.income_per_year.is_none() {
                match ask_income(&mut prompt, lang)? {
                    Asked::Value(value) => visit.income_per_year = value,
                    Asked::Pause => return paused(context, &prompt, &target, 0),
                }
            }
            // A list import brings only the head: the volunteer says how
            // many people live here, and indicators are ruled out by age
            // only when every one of them is recorded.
            if args.members.is_none() {
                match ask_members(&mut prompt, lang, target.members)? {
                    Asked::Value(value) => visit.members = value,
                    Asked::Pause => return paused(context, &prompt, &target, 0),
                }
            }
            (None, visit)
        }
    };
    let mut visit_key = visit_key;

    // Indicators that do not apply to this household are recorded as such
    // when the visit is first saved; computed ones (income) are not asked.
    let computed = |i: &Indicator| {
        matches!(i.rule, Rule::MinIncomePerPersonPerYear { .. })
            && visit.income_per_year.is_some()
            && visit.members.is_some()
    };
    // Without every member's age, nothing is skipped: the volunteer
    // answers "not applicable" where it is so.
    let everyone_recorded = target.profile_complete && visit.members == target.members;
    let applies = |i: &Indicator| !everyone_recorded || i.applies_to.applies(&target.profile);
    let questions: Vec<&Indicator> = catalogue
        .indicators
        .iter()
        .filter(|i| applies(i) && !computed(i))
        .collect();
    let not_applicable: Vec<&Indicator> = catalogue
        .indicators
        .iter()
        .filter(|i| !applies(i))
        .collect();
    let mut answered: BTreeMap<String, Answer> = match &visit_key {
        Some(key) => visit_answers(&context.store.record(key)?.context("visit vanished")?),
        None => BTreeMap::new(),
    };
    if visit_key.is_none() && !not_applicable.is_empty() {
        prompt.say(&match lang {
            Lang::Th => format!(
                "ข้าม {} ข้อที่ไม่เกี่ยวข้องกับครัวเรือนนี้ (เช่น ไม่มีสมาชิกในช่วงอายุนั้น)",
                not_applicable.len()
            ),
            Lang::En => format!(
                "skipping {} indicators that do not apply to this household (e.g. no member of that age)",
                not_applicable.len()
            ),
        });
    }

    if resuming {
        // The household may have changed since the survey was paused (a
        // child added, a birth date corrected): an indicator of an age or a
        // condition that was saved as not applicable, and applies now, is
        // asked again.
        let now_apply: Vec<String> = questions
            .iter()
            .filter(|i| {
                i.applies_to != AppliesTo::Household
                    && answered.get(&i.code) == Some(&Answer::NotApplicable)
            })
            .map(|i| i.code.clone())
            .collect();
        if !now_apply.is_empty() {
            for code in &now_apply {
                answered.remove(code);
            }
            prompt.say(&match lang {
                Lang::Th => format!(
                    "ครัวเรือนเปลี่ยนไปตั้งแต่พักไว้: ถามเพิ่ม {} ข้อที่ตอนนี้เกี่ยวข้องแล้ว ({})",
                    now_apply.len(),
                    now_apply.join(", ")
                ),
                Lang::En => format!(
                    "the household changed since the survey was paused: asking {} indicators that apply now ({})",
                    now_apply.len(),
                    now_apply.join(", ")
                ),
            });
        }
        let done = questions
            .iter()
            .filter(|i| answered.contains_key(&i.code))
            .count();
        prompt.say(&match lang {
            Lang::Th => format!("ทำต่อจากที่ค้างไว้ (ตอบแล้ว {done} จาก {} ข้อ)", questions.len()),
            Lang::En => format!(
                "resuming where it stopped ({done} of {} answered)",
                questions.len()
            ),
        });
    }
    let next_open = |from: usize, answered: &BTreeMap<String, Answer>| {
        (from..questions.len())
            .find(|&i| !answered.contains_key(&questions[i].code))
            .unwrap_or(questions.len())
    };
    let mut at = next_open(0, &answered);
    let mut group = None;
    while at < questions.len() {
        let indicator = questions[at];
        if group != Some(indicator.group) {
            group = Some(indicator.group);
            prompt.say(&format!(
                "\n{} {}: {}",
                lang.pick("หมวด", "group"),
                indicator.group,
                lang.pick(&indicator.group_th, &indicator.group_en)
            ));
        }
        let earlier = answered
            .get(&indicator.code)
            .map(|a| format!(" [{}]", answer_text(lang, *a)))
            .unwrap_or_default();
        let question = format!(
            "({}/{}) {} {}. {}{earlier}\n  >",
            at + 1,
            questions.len(),
            lang.pick("ข้อ", "no."),
            indicator.code,
            lang.pick(&indicator.text_th, &indicator.text_en)
        );
        let asked_and_answered = questions
            .iter()
            .filter(|i| answered.contains_key(&i.code))
            .count();
        let Some(text) = prompt.ask(&question)? else {
            return paused(context, &prompt, &target, asked_and_answered);
        };
        match reply(&text) {
            None => prompt.say(lang.pick(
                "ไม่เข้าใจคำตอบ: พิมพ์ 1, 2, 3, Enter, b หรือ q",
                "not understood: type 1, 2, 3, Enter, b or q",
            )),
            Some(Reply::Pause) => return paused(context, &prompt, &target, asked_and_answered),
            Some(Reply::Back) => at = at.saturating_sub(1),
            Some(Reply::Skip) => at = next_open(at + 1, &answered),
            Some(Reply::Answer(answer)) => {
                let code = indicator.code.clone();
                let key = save_answer(
                    context,
                    &mut visit_key,
                    &visit,
                    &not_applicable,
                    &code,
                    answer,
                )?;
                visit_key = Some(key);
                answered.insert(code, answer);
                at = next_open(at + 1, &answered);
            }
        }
    }
    // Every question was answered or skipped. With questions skipped, the
    // volunteer says whether to finish now or keep the survey open.
    let open = questions
        .iter()
        .filter(|i| !answered.contains_key(&i.code))
        .count();
    if open > 0 {
        let finish = prompt.ask(&match lang {
            Lang::Th => format!(
                "\nยังไม่ได้ตอบ {open} ข้อ จบการสำรวจเลยไหม? (y = จบ, Enter = เก็บไว้ตอบต่อภายหลัง)"
            ),
            Lang::En => format!(
                "\n{open} questions are not answered. Finish the survey now? (y = finish, Enter = keep it open)"
            ),
        })?;
        let yes = finish
            .as_deref()
            .is_some_and(|t| matches!(t.to_lowercase().as_str(), "y" | "yes" | "ใช่" | "จบ"));
        if !yes {
            let done = questions.len() - open;
            return paused(context, &prompt, &target, done);
        }
    }
    let key = match visit_key {
        Some(key) => key,
        None => save_visit(context, &visit, &not_applicable)?,
    };
    context
        .store
        .write(now_ms(), |s| s.set(&key, "in_progress", json!(false)))?;
    visit.in_progress = false;
    let skipped: Vec<String> = not_applicable.iter().map(|i| i.code.clone()).collect();
    report_assessment(context, &target, &visit, &key, &skipped)
}

/// Saves one answer in its own transaction, creating the visit first if
/// this is the first answer.
fn save_answer(
    context: &mut Context,
    visit_key: &mut Option<RecordKey>,
    visit: &Visit,
    not_applicable: &[&Indicator],
    code: &str,
    answer: Answer,
) -> Result<RecordKey> {
    let key = match visit_key {
        Some(key) => key.clone(),
        None => save_visit(context, visit, not_applicable)?,
    };
    context.store.write(now_ms(), |s| {
        s.set(&key, &answer_field(code), json!(answer))
    })?;
    Ok(key)
}

/// Creates the visit (still in progress), with the indicators that do not
/// apply already answered as such.
fn save_visit(
    context: &mut Context,
    visit: &Visit,
    not_applicable: &[&Indicator],
) -> Result<RecordKey> {
    Ok(context.store.write(now_ms(), |s| {
        let key = s.create(Uuid::now_v7(), visit)?;
        for indicator in not_applicable {
            s.set(
                &key,
                &answer_field(&indicator.code),
                json!(Answer::NotApplicable),
            )?;
        }
        Ok(key)
    })?)
}

/// Says how far the survey got; `answered` counts the questions asked and
/// answered, not those ruled out as not applicable.
fn paused(context: &Context, prompt: &Prompter, target: &Surveyed, answered: usize) -> Result<()> {
    let lang = context.lang;
    prompt.say("");
    let code = target.household.value.house_code.to_string();
    if context.json {
        return print_json(
            &json!({ "paused": true, "answered": answered, "household": target.key.id }),
        );
    }
    let text = match (lang, answered) {
        (Lang::Th, 0) => "หยุดก่อนตอบข้อแรก ยังไม่ได้บันทึกการสำรวจ".to_owned(),
        (Lang::En, 0) => "stopped before the first answer; no survey was recorded".to_owned(),
        (Lang::Th, n) => {
            format!("พักไว้แล้ว บันทึกคำตอบไว้ {n} ข้อ ทำต่อได้ด้วย: faenban survey {code}")
        }
        (Lang::En, n) => {
            format!("paused; answers saved: {n}; continue with: faenban survey {code}")
        }
    };
    say!("{text}");
    Ok(())
}

enum Asked<T> {
    Value(T),
    Pause,
}

fn ask_income(prompt: &mut Prompter, lang: Lang) -> Result<Asked<Option<Baht>>> {
    loop {
        let Some(text) = prompt.ask(lang.pick(
            "รายได้ทั้งครัวเรือนต่อปี (บาท) หรือ Enter ถ้าไม่ทราบ:",
            "the household's income per year (baht), or Enter if not known:",
        ))?
        else {
            return Ok(Asked::Pause);
        };
        if text.is_empty() {
            return Ok(Asked::Value(None));
        }
        if matches!(text.to_lowercase().as_str(), "q" | "หยุด" | "พัก") {
            return Ok(Asked::Pause);
        }
        match Baht::parse_field(&text, "income_per_year") {
            Ok(amount) => return Ok(Asked::Value(Some(amount))),
            Err(invalid) => prompt.say(&Failure::invalid(lang, &invalid).message),
        }
    }
}

fn ask_members(
    prompt: &mut Prompter,
    lang: Lang,
    recorded: Option<u32>,
) -> Result<Asked<Option<u32>>> {
    let question = match (lang, recorded) {
        (Lang::Th, Some(n)) => format!("จำนวนคนในครัวเรือน (บันทึกสมาชิกไว้ {n} คน; Enter = {n}):"),
        (Lang::En, Some(n)) => {
            format!("how many people live in the household ({n} members recorded; Enter = {n}):")
        }
        (Lang::Th, None) => "จำนวนคนในครัวเรือน (ยังไม่ได้บันทึกสมาชิก):".to_owned(),
        (Lang::En, None) => {
            "how many people live in the household (no members recorded yet):".to_owned()
        }
    };
    loop {
        let Some(text) = prompt.ask(&question)? else {
            return Ok(Asked::Pause);
        };
        if text.is_empty() {
            return Ok(Asked::Value(recorded));
        }
        if matches!(text.to_lowercase().as_str(), "q" | "หยุด" | "พัก") {
            return Ok(Asked::Pause);
        }
        match faenban_core::codes::with_ascii_digits(&text).parse::<u32>() {
            Ok(n) if n > 0 => return Ok(Asked::Value(Some(n))),
            _ => prompt.say(lang.pick(
                "ใส่จำนวนคนเป็นตัวเลข ตั้งแต่ 1 ขึ้นไป",
                "type the number of people, 1 or more",
            )),
        }
    }
}
