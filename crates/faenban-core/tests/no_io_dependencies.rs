//! faenban-core must stay free of I/O: this test fails if a dependency that
//! is not a pure value or serialization library is added to it.

#[test]
fn faenban_core_depends_only_on_pure_libraries() {
    let manifest = include_str!("../Cargo.toml");
    let section = manifest
        .split("[dependencies]")
        .nth(1)
        .expect("a [dependencies] section")
        .split("\n[")
        .next()
        .unwrap();
    let names: Vec<&str> = section
        .lines()
        .filter_map(|line| line.split(['=', '.']).next())
        .map(str::trim)
        .filter(|name| !name.is_empty() && !name.starts_with('#'))
        .collect();
    let allowed = [
        "serde",
        "serde_json",
        "thiserror",
        "uuid",
        "chrono",
        "smol_str",
        "rustc-hash",
        "smallvec",
    ];
    for name in &names {
        assert!(
            allowed.contains(name),
            "faenban-core must not depend on `{name}`"
        );
    }
    assert!(
        names.contains(&"serde"),
        "the parse found the dependencies: {names:?}"
    );
    // chrono's `clock` feature reads the system time; it must stay off.
    let workspace = include_str!("../../../Cargo.toml");
    let chrono = workspace.lines().find(|l| l.starts_with("chrono")).unwrap();
    assert!(
        chrono.contains("default-features = false") && !chrono.contains("clock"),
        "{chrono}"
    );
    let uuid = workspace.lines().find(|l| l.starts_with("uuid")).unwrap();
    assert!(
        !uuid.contains("v4") && !uuid.contains("v7"),
        "ids are made by callers: {uuid}"
    );
}

#[test]
fn faenban_core_source_reaches_for_no_clock_file_network_environment_or_randomness() {
    let manifest = include_str!("../Cargo.toml");
    assert!(
        !manifest
            .split("[dependencies]")
            .nth(1)
            .unwrap()
            .split("\n[")
            .next()
            .unwrap()
            .contains("features"),
        "faenban-core's dependencies take the workspace's features only"
    );
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let forbidden = [
        "SystemTime",
        "Instant::now",
        "Utc::now",
        "Local::now",
        "std::fs",
        "std::net",
        "std::env",
        "std::process",
        "new_v4",
        "now_v7",
        "thread_rng",
        "getrandom",
    ];
    let mut checked = 0;
    for entry in std::fs::read_dir(&source).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            for word in forbidden {
                assert!(!text.contains(word), "{} uses `{word}`", path.display());
            }
            checked += 1;
        }
    }
    assert!(checked >= 10, "read the core's source files ({checked})");
}
