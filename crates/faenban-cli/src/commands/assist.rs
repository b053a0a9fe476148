//! `assist`: assistance given to households.

use anyhow::Result;
use faenban_core::model::{decode, menu_item, Assistance};
use faenban_core::{RecordKey, RecordKind};
use serde_json::{json, Map, Value};

use super::{
    add_record, assistance_line, bad_input, build, edit_record, event_date, money, print_json,
    resolve, short, today, Context,
};
use crate::cli::AssistCommand;

/// `faenban assist …`.
pub fn assist(context: &mut Context, command: AssistCommand) -> Result<()> {
    let lang = context.lang;
    match command {
        AssistCommand::Add {
            household,
            dimension,
            item,
            agency,
            sector,
            amount,
            date: given,
            stage,
            status,
            outcome,
        } => {
            let household = resolve(&context.store, lang, RecordKind::Household, &household)?;
            let mut values = Map::new();
            values.insert("household".into(), json!(household.id));
            values.insert("dimension".into(), json!(dimension.trim()));
            values.insert("item".into(), json!(item.trim()));
            values.insert("agency".into(), json!(agency.trim()));
            values.insert("sector".into(), json!(sector.trim()));
            values.insert("stage".into(), json!(stage.trim()));
            values.insert("status".into(), json!(status.trim()));
            values.insert(
                "date".into(),
                match given {
                    Some(text) => json!(event_date(lang, "date", &text)?),
                    None => json!(today()),
                },
            );
            if let Some(amount) = amount {
                values.insert("amount".into(), money(lang, "amount", &amount)?);
            }
            if let Some(outcome) = outcome {
                values.insert("outcome".into(), json!(outcome));
            }
            let assistance: Assistance = build(lang, values)?;
            if let Some(menu) = menu_item(&assistance.item) {
                if menu.dimension != assistance.dimension {
                    return Err(bad_input(
                        lang,
                        format!(
                            "รายการ {} เป็นของ{} ไม่ใช่{}",
                            menu.th,
                            menu.dimension.name_th(),
                            assistance.dimension.name_th()
                        ),
                        format!(
                            "item {} belongs to {}, not {}",
                            menu.code,
                            menu.dimension.name_en(),
                            assistance.dimension.name_en()
                        ),
                    ));
                }
            }
            let what = assistance.item.clone();
            add_record(
                context,
                &assistance,
                ("บันทึกการช่วยเหลือแล้ว:", "assistance recorded:"),
                &what,
            )
        }
        AssistCommand::Update {
            id,
            status,
            outcome,
            amount,
            stage,
        } => {
            let key = resolve(&context.store, lang, RecordKind::Assistance, &id)?;
            let mut values = Map::new();
            if let Some(status) = status {
                values.insert("status".into(), json!(status.trim()));
            }
            if let Some(stage) = stage {
                values.insert("stage".into(), json!(stage.trim()));
            }
            if let Some(outcome) = outcome {
                values.insert("outcome".into(), json!(outcome));
            }
            if let Some(amount) = amount {
                values.insert("amount".into(), money(lang, "amount", &amount)?);
            }
            edit_record::<Assistance>(context, &key, values)
        }
        AssistCommand::List { household } => {
            let records = match household {
                Some(text) => {
                    let household = resolve(&context.store, lang, RecordKind::Household, &text)?;
                    context
                        .store
                        .records_of_household(&RecordKind::Assistance, household.id)?
                }
                None => context.store.records(&RecordKind::Assistance)?,
            };
            let list: Vec<(RecordKey, Assistance)> = records
                .iter()
                .filter_map(|(k, s)| decode::<Assistance>(k, s).ok())
                .filter(|a| !a.archived)
                .map(|a| (a.key, a.value))
                .collect();
            if context.json {
                let rows: Vec<Value> = list
                    .iter()
                    .map(|(k, a)| json!({"id": k.id, "assistance": a}))
                    .collect();
                return print_json(&rows);
            }
            for (key, help) in &list {
                say!("{}  {}", short(&key.id), assistance_line(lang, help));
            }
            say!("{} {}", lang.pick("รวม", "total"), list.len());
            Ok(())
        }
    }
}
