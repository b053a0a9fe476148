//! Two laptops that hold the same changes, received in different orders,
//! export byte-identical JSON, and both see the same conflicts.

mod support;

use faenban_fixtures::{populate, Rng, Spec};
use faenban_store::Store;
use support::{hand_over, Laptop};

fn shuffle(seed: u64) -> impl FnOnce(&mut Vec<faenban_core::Change>) {
    move |changes| {
        let mut rng = Rng::new(seed);
        for i in (1..changes.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            changes.swap(i, j);
        }
    }
}

#[test]
fn a_synthetic_village_exports_the_same_bytes_from_both_files() {
    let a = Laptop::new();
    let b = Laptop::initialized();
    {
        let mut store = Store::open(&a.db).unwrap();
        let summary = populate(&mut store, &Spec::khon_kaen(41, 30)).unwrap();
        assert!(summary.changes > 1_000);
    }
    // B receives A's changes in a random order, and twice.
    hand_over(&a.db, &b.db, shuffle(1));
    hand_over(&a.db, &b.db, shuffle(2));
    let from_a = a.ok(&["export"]);
    let from_b = b.ok(&["export"]);
    assert!(from_a.len() > 10_000);
    assert!(from_a == from_b, "the exports differ");
}

#[test]
fn concurrent_edits_on_two_laptops_converge_with_the_conflict_on_both() {
    let a = Laptop::initialized();
    a.add_household();
    a.add_member("มาลี", "female", "head");
    let b = Laptop::new();
    b.ok(&["init", "--name", "ทีมตำบล"]);
    hand_over(&a.db, &b.db, |_| {});

    // Offline, both change the address; each changes one other field.
    a.ok(&[
        "household",
        "edit",
        "4001-012345-6",
        "--address",
        "12/1 หมู่ 1",
    ]);
    a.ok(&[
        "household",
        "edit",
        "4001-012345-6",
        "--notes",
        "ไม่มีน้ำประปา",
    ]);
    b.ok(&[
        "household",
        "edit",
        "4001-012345-6",
        "--address",
        "12 หมู่ 1 ซอย 3",
    ]);
    b.ok(&[
        "household",
        "edit",
        "4001-012345-6",
        "--livelihood",
        "labourer",
    ]);
    b.ok(&["household", "archive", "4001-012345-6"]);

    // They exchange in opposite orders.
    hand_over(&a.db, &b.db, |changes| changes.reverse());
    hand_over(&b.db, &a.db, shuffle(9));

    let export_a = a.ok(&["export"]);
    assert_eq!(export_a, b.ok(&["export"]));
    let conflicts_a = a.json(&["conflicts", "list"]);
    assert_eq!(conflicts_a, b.json(&["conflicts", "list"]));
    // The address is in conflict; the archive met an edit it had not seen.
    let text = conflicts_a.to_string();
    assert!(text.contains("address"), "{text}");
    assert!(
        text.contains("edit_during_archive") || text.contains("unseen"),
        "{text}"
    );
    // Both notes and livelihood arrived everywhere.
    let shown = a.ok(&["household", "show", "4001-012345-6"]);
    assert!(export_a.contains("ไม่มีน้ำประปา") && export_a.contains("labourer"));
    assert!(shown.contains("[conflict]"), "{shown}");

    // Settling it on one laptop settles it on the other once they exchange.
    a.ok(&[
        "conflicts",
        "resolve",
        "4001-012345-6",
        "--field",
        "address",
        "--keep",
        "1",
    ]);
    a.ok(&["conflicts", "resolve", "4001-012345-6", "--keep-active"]);
    hand_over(&a.db, &b.db, |_| {});
    assert_eq!(a.ok(&["export"]), b.ok(&["export"]));
    assert_eq!(b.json(&["conflicts", "list"]), serde_json::json!([]));
}
