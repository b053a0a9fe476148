//! The War Room page in a real browser: Debian's Chromium, driven through
//! chromedriver, signs in with a province token, reads the figures drawn
//! for the districts and for one dimension and compares them with
//! `GET /v1/report`, drills down to a village and its households, is
//! refused for a volunteer's token, makes no request outside the server,
//! and saves a screenshot (`docs/war-room.png` when
//! `FAENBAN_UPDATE_SCREENSHOT=1`). On both stores, from one body.
//!
//! `.ci/run` installs `chromium` and `chromium-driver`; without them this
//! test fails and says what to install.

mod support;

use std::net::TcpListener as StdListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use faenban_core::sync::Role;
use faenban_fixtures::{populate, Spec};
use faenban_server::backend::Backend;
use faenban_store::Store;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use support::*;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// chromedriver on a free port, stopped when dropped.
struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_driver() -> Driver {
    for program in [CHROMIUM, CHROMEDRIVER] {
        assert!(
            std::path::Path::new(program).exists(),
            "{program} is missing: install Debian's `chromium` and `chromium-driver` \
             (`.ci/run` does) to run the War Room's browser test"
        );
    }
    let port = StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // Held by the guard at once, so that it is stopped and waited for
    // whatever happens next.
    let driver = Driver {
        child: Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts"),
        port,
    };
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return driver;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("chromedriver did not start listening on port {port}");
}

async fn browser(driver: &Driver) -> Client {
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1400,1900",
                "--lang=th-TH",
            ],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a Chromium session")
}

/// The figures the page shows for each area row of its progress table:
/// area → dimension → (helped, deprived, percent text).
async fn shown_progress(client: &Client) -> Value {
    client
        .execute(
            r#"
            const out = {};
            for (const row of document.querySelectorAll('#progress tr[data-area]')) {
              const area = {};
              area.households = Number(row.querySelector('[data-figure=households]').dataset.value);
              for (const cell of row.querySelectorAll('td[data-dimension]')) {
                area[cell.dataset.dimension] = [
                  Number(cell.querySelector('[data-figure=helped]').dataset.value),
                  Number(cell.querySelector('[data-figure=deprived]').dataset.value),
                  cell.querySelector('[data-figure=percent_helped]').textContent,
                ];
              }
              out[row.dataset.area] = area;
            }
            return out;
            "#,
            vec![],
        )
        .await
        .unwrap()
}

/// The same, from the server's JSON report.
fn expected_progress(report: &Value) -> Value {
    let mut out = serde_json::Map::new();
    for area in report["areas"].as_array().unwrap() {
        let mut figures = serde_json::Map::new();
        figures.insert("households".into(), area["households"].clone());
        for (key, dimension) in area["dimensions"].as_object().unwrap() {
            let percent = dimension["percent_helped"]
                .as_str()
                .map_or("—".to_owned(), |p| format!("{p}%"));
            figures.insert(
                key.clone(),
                json!([dimension["helped"], dimension["deprived"], percent]),
            );
        }
        out.insert(
            area["code"].as_str().unwrap().to_owned(),
            Value::Object(figures),
        );
    }
    Value::Object(out)
}

async fn report(base: &str, token: &str, query: &str) -> Value {
    let response = reqwest::Client::new()
        .get(format!("{base}/v1/report?{query}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
}

async fn sign_in(client: &Client, base: &str, token: &str) {
    client.goto(&format!("{base}/war-room")).await.unwrap();
    let field = client.find(Locator::Id("token")).await.unwrap();
    field.send_keys(token).await.unwrap();
    click(client, Locator::Id("sign-in")).await;
}

async fn click(client: &Client, locator: Locator<'_>) {
    client
        .find(locator)
        .await
        .unwrap_or_else(|error| panic!("nothing to click: {error}"))
        .click()
        .await
        .unwrap();
}

async fn wait_for(client: &Client, locator: Locator<'_>) {
    client
        .wait()
        .for_element(locator)
        .await
        .unwrap_or_else(|error| panic!("never appeared: {error}"));
}

async fn text_of(client: &Client, id: &str) -> String {
    client
        .wait()
        .for_element(Locator::Id(id))
        .await
        .unwrap_or_else(|error| panic!("#{id} never appeared: {error}"))
        .text()
        .await
        .unwrap()
}

on_both_stores! {
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_war_room_shows_the_report_in_a_real_browser(server: Server) {
    let driver = start_driver();

    // A province's programme, pushed by a district team's laptop.
    let province = server.account("province office", Role::Province, &[], None);
    let volunteer = server.account("village volunteer", Role::Volunteer, &["40010101"], None);
    let mut laptop = Store::open_in_memory().unwrap();
    populate(&mut laptop, &Spec::khon_kaen(2569, 240)).unwrap();
    push_store(&server, &province, &laptop).await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let backend: Arc<dyn Backend> = server.backend.clone();
    let serving = tokio::spawn(faenban_server::run(listener, backend, async {
        let _ = stopped.await;
    }));

    let client = browser(&driver).await;

    // A volunteer's token is refused, and nothing of the report is shown.
    sign_in(&client, &base, &volunteer).await;
    let refusal = text_of(&client, "message").await;
    assert!(refusal.contains("อาสาสมัคร"), "{refusal}");
    assert!(client.find(Locator::Id("place")).await.is_err());

    // The province signs in: every district's figures are those of the
    // report, in Thai by default.
    sign_in(&client, &base, &province).await;
    assert_eq!(text_of(&client, "place").await, "ทุกพื้นที่");
    let districts = report(&base, &province, "level=district").await;
    assert!(districts["areas"].as_array().unwrap().len() > 5);
    assert_eq!(shown_progress(&client).await, expected_progress(&districts));
    let households = client
        .find(Locator::Id("households"))
        .await
        .unwrap()
        .attr("data-value")
        .await
        .unwrap();
    assert_eq!(households.as_deref(), Some("240"));

    // One dimension.
    click(&client, Locator::Css("a[data-dimension-link=income]")).await;
    wait_for(
        &client,
        Locator::Css("#filters a.chosen[data-dimension-link=income]"),
    )
    .await;
    let income = report(&base, &province, "level=district&dimension=income").await;
    assert_eq!(shown_progress(&client).await, expected_progress(&income));
    let shown = client.source().await.unwrap();
    assert!(!shown.contains("data-dimension=\"health\""));

    // The screenshot of the province's view of all dimensions, for docs/.
    client.goto(&format!("{base}/war-room")).await.unwrap();
    text_of(&client, "place").await;
    let png = client.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 20_000);
    let target = if std::env::var_os("FAENBAN_UPDATE_SCREENSHOT").is_some() && server.kind == Kind::Sqlite {
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/war-room.png")
    } else {
        std::env::temp_dir().join(format!("faenban-war-room-{:?}.png", server.kind))
    };
    std::fs::write(&target, &png).unwrap();

    // Drill down: the first district, its first subdistrict, its first
    // village, where the households are listed.
    let mut area = String::new();
    for level in ["subdistrict", "village"] {
        let link = client
            .find(Locator::Css("#progress a[data-drill]"))
            .await
            .unwrap();
        area = link.attr("data-drill").await.unwrap().unwrap();
        link.click().await.unwrap();
        wait_for(
            &client,
            Locator::Css(&format!("#crumbs a[href*='area={area}']")),
        )
        .await;
        let expected = report(&base, &province, &format!("area={area}&level={level}")).await;
        assert_eq!(shown_progress(&client).await, expected_progress(&expected));
    }
    let village = client
        .find(Locator::Css("#progress a[data-drill]"))
        .await
        .unwrap();
    let village_code = village.attr("data-drill").await.unwrap().unwrap();
    assert!(village_code.starts_with(&area) && village_code.len() == 8);
    village.click().await.unwrap();
    wait_for(&client, Locator::Id("households-list")).await;
    let listed = client
        .find_all(Locator::Css("#households-list tr[data-household]"))
        .await
        .unwrap();
    let in_village = report(&base, &province, &format!("area={village_code}")).await;
    assert_eq!(
        listed.len() as u64,
        in_village["total"]["households"].as_u64().unwrap()
    );
    assert!(!listed.is_empty());
    // House codes, never a national ID (13 digits).
    let page = client.source().await.unwrap();
    let digits: Vec<&str> = page
        .split(|c: char| !c.is_ascii_digit())
        .filter(|run| run.len() == 13)
        .collect();
    assert!(
        digits.is_empty(),
        "13-digit numbers on the page: {digits:?}"
    );
    let national_ids: Vec<String> = laptop
        .records(&faenban_core::RecordKind::Member)
        .unwrap()
        .iter()
        .filter_map(|(_, state)| {
            state
                .shown("national_id")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .collect();
    assert!(national_ids.len() > 100);
    assert!(!national_ids.iter().any(|id| page.contains(id.as_str())));

    // English, on the same village.
    click(&client, Locator::Id("switch-lang")).await;
    wait_for(&client, Locator::Css("html[lang=en]")).await;
    assert!(text_of(&client, "sign-out").await.contains("Sign out"));

    // Nothing was loaded from anywhere but this server.
    let resources = client
        .execute(
            "return performance.getEntriesByType('resource').map(e => e.name)",
            vec![],
        )
        .await
        .unwrap();
    let resources = resources.as_array().unwrap();
    assert!(resources
        .iter()
        .any(|r| r.as_str().unwrap().ends_with("/war-room/style.css")));
    for resource in resources {
        assert!(
            resource.as_str().unwrap().starts_with(&base),
            "an outside request: {resource}"
        );
    }

    // Signing out ends the session: the page asks for a token again.
    click(&client, Locator::Id("sign-out")).await;
    wait_for(&client, Locator::Id("token")).await;
    client.goto(&format!("{base}/war-room")).await.unwrap();
    assert!(client.find(Locator::Id("place")).await.is_err());

    client.close().await.unwrap();
    let _ = stop.send(());
    serving.await.unwrap().unwrap();
}
}
