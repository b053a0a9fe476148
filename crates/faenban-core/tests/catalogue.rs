//! The indicator catalogues and the deprivation rules they drive.

use std::collections::BTreeMap;

use faenban_core::catalogue::{AppliesTo, HouseholdProfile, Rule, VisitAnswers, BMN_2560_2564};
use faenban_core::{Answer, Baht, Catalogue, Catalogues, Dimension, Error};

const SYNTHETIC_EDITION: &str =
    include_str!("../../../fixtures/catalogues/synthetic-renumbered-edition.csv");

fn bmn() -> Catalogue {
    Catalogue::parse(BMN_2560_2564).unwrap()
}

fn answers(pairs: &[(&str, Answer)]) -> BTreeMap<String, Answer> {
    pairs
        .iter()
        .map(|(code, answer)| (code.to_string(), *answer))
        .collect()
}

#[test]
fn the_shipped_bmn_edition_has_31_indicators_17_mapped_to_tpmap() {
    let catalogue = bmn();
    assert_eq!(catalogue.edition, "bmn-2560-2564");
    assert_eq!(catalogue.indicators.len(), 31);
    let groups: std::collections::BTreeSet<u32> =
        catalogue.indicators.iter().map(|i| i.group).collect();
    assert_eq!(groups.len(), 5);
    let mapped: Vec<_> = catalogue
        .indicators
        .iter()
        .filter(|i| i.dimension.is_some())
        .collect();
    assert_eq!(mapped.len(), 17);
    let per_dimension = |d| mapped.iter().filter(|i| i.dimension == Some(d)).count();
    assert_eq!(per_dimension(Dimension::Health), 4);
    assert_eq!(per_dimension(Dimension::Living), 4);
    assert_eq!(per_dimension(Dimension::Education), 4);
    assert_eq!(per_dimension(Dimension::Income), 3);
    assert_eq!(per_dimension(Dimension::Accessibility), 2);
    let income = catalogue.indicator("22").unwrap();
    assert_eq!(
        income.rule,
        Rule::MinIncomePerPersonPerYear {
            baht: Baht::from_baht(38_000)
        }
    );
    assert_eq!(income.tpmap_label.as_deref(), Some("4.3"));
    assert_eq!(
        catalogue.indicator("15").unwrap().applies_to,
        AppliesTo::Age {
            from: 3,
            to: Some(5)
        }
    );
}

#[test]
fn a_household_failing_one_mapped_indicator_is_deprived_in_that_dimension() {
    let catalogue = bmn();
    let visit = VisitAnswers {
        answers: answers(&[
            ("4", Answer::Fail),
            ("8", Answer::Pass),
            ("2", Answer::Fail),
        ]),
        welfare_card: true,
        ..VisitAnswers::default()
    };
    let assessment = catalogue.assess(&visit).unwrap();
    assert_eq!(assessment.deprived, vec![Dimension::Health]);
    assert!(assessment.target_poor);
    // Indicator 2 (breastfeeding) fails but TPMAP does not map it.
    assert_eq!(assessment.failed, vec!["2".to_string(), "4".to_string()]);
}

#[test]
fn target_poor_needs_both_a_deprivation_and_a_welfare_card() {
    let catalogue = bmn();
    let deprived_no_card = VisitAnswers {
        answers: answers(&[("16", Answer::Fail)]),
        welfare_card: false,
        ..VisitAnswers::default()
    };
    let assessment = catalogue.assess(&deprived_no_card).unwrap();
    assert_eq!(assessment.deprived, vec![Dimension::Education]);
    assert!(!assessment.target_poor);

    let card_not_deprived = VisitAnswers {
        answers: answers(&[("16", Answer::Pass), ("24", Answer::Fail)]),
        welfare_card: true,
        ..VisitAnswers::default()
    };
    let assessment = catalogue.assess(&card_not_deprived).unwrap();
    assert!(assessment.deprived.is_empty());
    assert!(!assessment.target_poor);
}

#[test]
fn income_passes_at_38000_baht_per_person_per_year() {
    let catalogue = bmn();
    let at = |income: u64, members: u32| {
        catalogue
            .assess(&VisitAnswers {
                answers: answers(&[("22", Answer::Pass)]),
                income_per_year: Some(Baht::from_baht(income)),
                members: Some(members),
                welfare_card: true,
            })
            .unwrap()
    };
    // 4 people × 38,000 = 152,000: exactly at the line passes.
    assert!(at(152_000, 4).deprived.is_empty());
    // One satang per person short fails, whatever was typed.
    let short = catalogue
        .assess(&VisitAnswers {
            answers: answers(&[("22", Answer::Pass)]),
            income_per_year: Some(Baht::from_satang(152_000 * 100 - 4)),
            members: Some(4),
            welfare_card: true,
        })
        .unwrap();
    assert_eq!(short.deprived, vec![Dimension::Income]);
    assert_eq!(short.answers["22"], Answer::Fail);
    assert_eq!(
        at(100_000, 4).income_per_person_per_year,
        Some(Baht::from_baht(25_000))
    );
    // Without income figures, the typed answer counts.
    let typed = catalogue
        .assess(&VisitAnswers {
            answers: answers(&[("22", Answer::Fail)]),
            ..VisitAnswers::default()
        })
        .unwrap();
    assert_eq!(typed.deprived, vec![Dimension::Income]);
}

#[test]
fn not_applicable_answers_never_deprive() {
    let catalogue = bmn();
    let visit = VisitAnswers {
        answers: answers(&[("15", Answer::NotApplicable), ("28", Answer::NotApplicable)]),
        ..VisitAnswers::default()
    };
    let assessment = catalogue.assess(&visit).unwrap();
    assert!(assessment.deprived.is_empty());
    assert_eq!(assessment.unanswered.len(), 29);
}

#[test]
fn an_unknown_indicator_is_refused() {
    let error = bmn()
        .assess(&VisitAnswers {
            answers: answers(&[("99", Answer::Fail)]),
            ..VisitAnswers::default()
        })
        .unwrap_err();
    assert_eq!(
        error,
        Error::UnknownIndicator {
            code: "99".into(),
            edition: "bmn-2560-2564".into()
        }
    );
}

#[test]
fn the_survey_skips_what_does_not_apply_to_a_household() {
    let catalogue = bmn();
    let two_adults = HouseholdProfile {
        ages: vec![40, 38],
        ..HouseholdProfile::default()
    };
    let codes: Vec<&str> = catalogue
        .applicable(&two_adults)
        .map(|i| i.code.as_str())
        .collect();
    assert!(!codes.contains(&"15"), "no child aged 3-5");
    assert!(!codes.contains(&"28"), "no member with a disability");
    assert!(codes.contains(&"6"), "people 35+ get a health check");
    assert!(codes.contains(&"22"));
    let with_child = HouseholdProfile {
        ages: vec![40, 4],
        any_disability: true,
        ..HouseholdProfile::default()
    };
    let codes: Vec<&str> = catalogue
        .applicable(&with_child)
        .map(|i| i.code.as_str())
        .collect();
    assert!(codes.contains(&"15") && codes.contains(&"28"));
}

#[test]
fn a_second_edition_is_a_file_and_visits_keep_their_edition() {
    let mut catalogues = Catalogues::builtin();
    catalogues.add(Catalogue::parse(SYNTHETIC_EDITION).unwrap());
    assert_eq!(
        catalogues.editions().collect::<Vec<_>>(),
        vec!["bmn-2560-2564", "synthetic-2565-test"]
    );

    // 39,000 baht per person passes the old line (38,000) and fails the new (40,000).
    let visit = |answers| VisitAnswers {
        answers,
        income_per_year: Some(Baht::from_baht(78_000)),
        members: Some(2),
        welfare_card: true,
    };
    let old = catalogues
        .get("bmn-2560-2564")
        .unwrap()
        .assess(&visit(BTreeMap::new()))
        .unwrap();
    assert!(old.deprived.is_empty());
    let new = catalogues.get("synthetic-2565-test").unwrap();
    let assessment = new
        .assess(&visit(answers(&[("H2", Answer::Fail)])))
        .unwrap();
    assert_eq!(
        assessment.deprived,
        vec![Dimension::Income, Dimension::Accessibility]
    );
    // Codes are per edition: the old numbering means nothing in the new one.
    assert!(new
        .assess(&visit(answers(&[("22", Answer::Fail)])))
        .is_err());
    // A quoted comma inside a field survives.
    assert!(new.indicator("E1").unwrap().text_th.contains(", ก่อน"));

    let missing = catalogues.get("bmn-2570").unwrap_err();
    assert!(
        missing
            .to_string()
            .contains("bmn-2560-2564, synthetic-2565-test"),
        "{missing}"
    );
}

#[test]
fn broken_catalogue_files_are_refused_with_the_line() {
    let header = "code,group,group_th,group_en,text_th,text_en,tpmap_dimension,tpmap_label,applies_to,rule\n";
    let no_edition = format!("{header}1,1,a,b,c,d,health,1.1,household,\n");
    assert!(matches!(
        Catalogue::parse(&no_edition),
        Err(Error::Catalogue { line: 1, .. })
    ));

    let with = |row: &str| format!("# edition: x\n{header}{row}\n");
    let error = |row: &str| match Catalogue::parse(&with(row)) {
        Err(Error::Catalogue { line, message }) => (line, message),
        other => panic!("expected a catalogue error for {row:?}, got {other:?}"),
    };
    assert_eq!(error("1,1,a,b,c,d,wealth,1.1,household,").0, 3);
    assert!(error("1,1,a,b,c,d,wealth,1.1,household,")
        .1
        .contains("wealth"));
    assert!(error("1,one,a,b,c,d,,,household,").1.contains("group"));
    assert!(error("1,1,a,b,c,d,,,age:9-3,").1.contains("applies_to"));
    assert!(error("1,1,a,b,c,d,,,household,max_income:5")
        .1
        .contains("rule"));
    assert!(error("1,1,a,b,c,d,,,household,\n1,1,a,b,c,d,,,household,")
        .1
        .contains("twice"));
    assert!(error("1,1,a,b,\"c,d,,,household,")
        .1
        .contains("never closed"));
    let no_column = "# edition: x\ncode,group\n1,1\n";
    assert!(matches!(
        Catalogue::parse(no_column),
        Err(Error::Catalogue { line: 2, .. })
    ));
    assert!(matches!(
        Catalogue::parse(&format!("# edition: x\n{header}")),
        Err(Error::Catalogue { .. })
    ));
}
