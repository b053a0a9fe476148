//! The War Room page (`/war-room`): the office's report as a page served
//! from the binary, signed in with an account token exchanged for a session
//! cookie; per-dimension progress per area, drill-down to a village's
//! households, before/after, conflicts and data gaps. No script, no outside
//! request: charts are SVG drawn here, and the Content-Security-Policy
//! allows nothing but this server's stylesheet.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{Form, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use faenban_core::areas::Areas;
use faenban_core::codes::{AreaCode, AreaLevel};
use faenban_core::model::{AssistanceStatus, Classification, Stage};
use faenban_core::money::group_thousands;
use faenban_core::report::{AreaFigures, HouseholdRow, Report};
use faenban_core::sync::Role;
use faenban_core::Dimension;
use faenban_core::RefusalCode;
use faenban_store::server::Account;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::office::{report_areas, report_options, scoped_report, ReportQuery};
use crate::{account_of_token, account_of_token_hash, blocking, ApiError, AppState};

/// The session cookie's name.
const COOKIE: &str = "faenban_session";

/// How long a sign-in lasts.
const SESSION_LIFETIME: Duration = Duration::from_secs(8 * 60 * 60);

/// The most sessions held at once; past it the oldest is signed out, so
/// that repeated sign-ins cannot grow the server's memory.
const MAX_SESSIONS: usize = 10_000;

/// The most sessions of one account (a projector, a few officers' phones).
const SESSIONS_PER_ACCOUNT: usize = 16;

/// Signed-in browsers: the SHA-256 of each session cookie, with the token
/// hash it stands for and when it ends. Kept in memory: a restarted server
/// asks everyone to sign in again.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    by_cookie: Mutex<SessionMap>,
}

/// Cookie digest → (token hash, end of the session).
type SessionMap = HashMap<[u8; 32], (Vec<u8>, Instant)>;

impl Sessions {
    fn open(&self, token_hash: Vec<u8>) -> Result<String, ApiError> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|_| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                RefusalCode::NoRandomness,
                "the server could not make a session; try again",
            )
        })?;
        let cookie: String = secret.iter().map(|b| format!("{b:02x}")).collect();
        let mut sessions = self.lock();
        let now = Instant::now();
        sessions.retain(|_, (_, ends)| *ends > now);
        // One account's sign-ins cannot push everyone else's out: past a
        // few, its own oldest session ends.
        let own: Vec<([u8; 32], Instant)> = sessions
            .iter()
            .filter(|(_, (hash, _))| *hash == token_hash)
            .map(|(key, (_, ends))| (*key, *ends))
            .collect();
        if own.len() >= SESSIONS_PER_ACCOUNT {
            if let Some((oldest, _)) = own.iter().min_by_key(|(_, ends)| *ends) {
                sessions.remove(oldest);
            }
        }
        if sessions.len() >= MAX_SESSIONS {
            if let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, (_, ends))| *ends)
                .map(|(key, _)| *key)
            {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(digest(&cookie), (token_hash, now + SESSION_LIFETIME));
        Ok(cookie)
    }

    fn token_hash(&self, cookie: &str) -> Option<Vec<u8>> {
        let sessions = self.lock();
        sessions
            .get(&digest(cookie))
            .filter(|(_, ends)| *ends > Instant::now())
            .map(|(hash, _)| hash.clone())
    }

    fn close(&self, cookie: &str) {
        self.lock().remove(&digest(cookie));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SessionMap> {
        self.by_cookie
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn digest(cookie: &str) -> [u8; 32] {
    Sha256::digest(cookie.as_bytes()).into()
}

/// The page's language: Thai unless English is asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lang {
    Th,
    En,
}

impl Lang {
    fn of(asked: Option<&str>) -> Lang {
        match asked {
            Some("en") => Lang::En,
            _ => Lang::Th,
        }
    }

    fn pick(self, th: &'static str, en: &'static str) -> &'static str {
        match self {
            Lang::Th => th,
            Lang::En => en,
        }
    }

    fn key(self) -> &'static str {
        self.pick("th", "en")
    }
}

/// `GET /war-room` parameters. Area codes and dimension keys only: no
/// personal data ever travels in the address.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct PageQuery {
    #[serde(default)]
    area: Option<String>,
    #[serde(default)]
    dimension: Option<String>,
    #[serde(default)]
    fiscal_year: Option<String>,
    #[serde(default)]
    lang: Option<String>,
}

/// The sign-in form.
#[derive(Debug, Deserialize)]
pub(crate) struct SignIn {
    #[serde(default)]
    token: String,
    #[serde(default)]
    lang: Option<String>,
}

/// The sign-out form.
#[derive(Debug, Deserialize)]
pub(crate) struct SignOut {
    #[serde(default)]
    lang: Option<String>,
}

/// `GET /war-room/style.css`.
pub(crate) async fn style() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        include_str!("war_room.css"),
    )
        .into_response()
}

/// `GET /war-room`: the page for the signed-in account, or the sign-in form.
pub(crate) async fn page(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let query = query.map(|Query(query)| query).unwrap_or_default();
    let lang = Lang::of(query.lang.as_deref());
    let Some(cookie) = session_cookie(&headers) else {
        return html(StatusCode::OK, sign_in_page(lang, None));
    };
    let Some(token_hash) = state.sessions.token_hash(&cookie) else {
        let message = lang.pick(
            "หมดเวลาการเข้าใช้ กรุณาเข้าสู่ระบบอีกครั้ง",
            "Your session has ended; please sign in again.",
        );
        return html(StatusCode::OK, sign_in_page(lang, Some(message)));
    };
    // The account is read again on every page: a revoked or edited account
    // takes effect at once.
    let account = match account_of_token_hash(&state, Some(token_hash)).await {
        Ok((account, _)) => account,
        Err(error) if error.status_and_message().0 != StatusCode::UNAUTHORIZED => {
            // A busy or failing store is no reason to sign anyone out.
            let (status, message) = error.status_and_message();
            return html(status, sign_in_page(lang, Some(&message)));
        }
        Err(_) => {
            state.sessions.close(&cookie);
            let message = lang.pick(
                "บัญชีนี้ถูกยกเลิกหรือไม่มีอยู่แล้ว",
                "This account was revoked or no longer exists.",
            );
            return html(StatusCode::UNAUTHORIZED, sign_in_page(lang, Some(message)));
        }
    };
    match area_page(&state, &account, &query, lang).await {
        Ok(body) => html(StatusCode::OK, body),
        Err(error) => {
            let (status, message) = error.status_and_message();
            html(status, error_page(lang, &account, &message))
        }
    }
}

/// `POST /war-room/sign-in`: a token for a session cookie.
pub(crate) async fn sign_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<SignIn>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return html(
            StatusCode::BAD_REQUEST,
            sign_in_page(Lang::Th, Some("แบบฟอร์มไม่ครบ / The form was incomplete.")),
        );
    };
    let lang = Lang::of(form.lang.as_deref());
    if from_another_site(&headers) {
        return refused_from_another_site(lang);
    }
    let (account, token_hash) = match account_of_token(&state, form.token.trim()).await {
        Ok(found) => found,
        Err(_) => {
            let message = lang.pick(
                "รหัสเข้าใช้ไม่ถูกต้อง หรือถูกยกเลิกแล้ว",
                "That token is not valid, or was revoked.",
            );
            return html(StatusCode::UNAUTHORIZED, sign_in_page(lang, Some(message)));
        }
    };
    if account.scope.role == Role::Volunteer {
        let message = lang.pick(
            "บัญชีอาสาสมัครไม่มีห้องสถานการณ์ ใช้ `faenban report` บนเครื่องของท่าน",
            "A volunteer's account has no War Room; run `faenban report` on the laptop.",
        );
        return html(StatusCode::FORBIDDEN, sign_in_page(lang, Some(message)));
    }
    if let Some(previous) = session_cookie(&headers) {
        state.sessions.close(&previous);
    }
    let cookie = match state.sessions.open(token_hash) {
        Ok(cookie) => cookie,
        Err(error) => {
            let (status, message) = error.status_and_message();
            return html(status, sign_in_page(lang, Some(&message)));
        }
    };
    let secure = if behind_tls(&headers) { "; Secure" } else { "" };
    let set_cookie = format!(
        "{COOKIE}={cookie}; Path=/war-room; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        SESSION_LIFETIME.as_secs()
    );
    redirect(&format!("/war-room?lang={}", lang.key()), Some(set_cookie))
}

/// `POST /war-room/sign-out`.
pub(crate) async fn sign_out(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<SignOut>, axum::extract::rejection::FormRejection>,
) -> Response {
    let lang = Lang::of(form.ok().and_then(|Form(form)| form.lang).as_deref());
    if from_another_site(&headers) {
        return refused_from_another_site(lang);
    }
    if let Some(cookie) = session_cookie(&headers) {
        state.sessions.close(&cookie);
    }
    let secure = if behind_tls(&headers) { "; Secure" } else { "" };
    redirect(
        &format!("/war-room?lang={}", lang.key()),
        Some(format!(
            "{COOKIE}=; Path=/war-room; HttpOnly; SameSite=Strict; Max-Age=0{secure}"
        )),
    )
}

/// A sign-in or sign-out form sent by a page of another site (which could
/// sign a browser in as someone else, or out): refused. Browsers say where
/// a request comes from in `Sec-Fetch-Site`, and older ones in `Origin`.
fn from_another_site(headers: &HeaderMap) -> bool {
    let text = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    if let Some(site) = text("sec-fetch-site") {
        return !matches!(site, "same-origin" | "none");
    }
    match (text("origin"), text("host")) {
        (Some("null"), _) => true,
        (Some(origin), Some(host)) => origin.split_once("://").map(|(_, rest)| rest) != Some(host),
        (Some(_), None) => true,
        (None, _) => false,
    }
}

fn refused_from_another_site(lang: Lang) -> Response {
    html(
        StatusCode::FORBIDDEN,
        sign_in_page(
            lang,
            Some(lang.pick(
                "คำขอนี้มาจากเว็บไซต์อื่น จึงไม่รับ",
                "This request came from another site and was refused.",
            )),
        ),
    )
}

/// The request came through a TLS-terminating proxy (or TLS itself): the
/// cookie is then marked Secure.
fn behind_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|proto| proto.eq_ignore_ascii_case("https"))
}

fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
        .filter(|value| value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Headers every page carries: nothing but this server's stylesheet may
/// load, nothing may frame it, nothing is cached or sent as a referrer.
fn html(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

fn redirect(to: &str, set_cookie: Option<String>) -> Response {
    let mut response = html(StatusCode::SEE_OTHER, String::new());
    if let Ok(location) = HeaderValue::from_str(to) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    if let Some(cookie) = set_cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

/// Text made safe for HTML (element content and quoted attributes).
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn head(lang: Lang, title: &str) -> String {
    format!(
        "<!DOCTYPE html><html lang=\"{}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><link rel=\"stylesheet\" href=\"/war-room/style.css\"></head><body>",
        lang.key(),
        escape(title)
    )
}

fn sign_in_page(lang: Lang, message: Option<&str>) -> String {
    let mut page = head(
        lang,
        lang.pick("ห้องสถานการณ์ — เข้าสู่ระบบ", "War Room — sign in"),
    );
    let _ = write!(
        page,
        "<main><form class=\"signin\" method=\"post\" action=\"/war-room/sign-in\">\
         <h1>{}</h1>{}<label for=\"token\">{}</label>\
         <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"off\" required>\
         <input type=\"hidden\" name=\"lang\" value=\"{}\">\
         <button type=\"submit\" id=\"sign-in\">{}</button> \
         <a href=\"/war-room?lang={}\">{}</a></form></main></body></html>",
        lang.pick("ห้องสถานการณ์ (War Room)", "War Room"),
        message
            .map(|m| format!("<p class=\"error\" id=\"message\">{}</p>", escape(m)))
            .unwrap_or_default(),
        lang.pick(
            "รหัสเข้าใช้ของบัญชีจังหวัด ทีมอำเภอ หรือคณะทำงานรายด้าน",
            "The token of a province, district team or working-group account",
        ),
        lang.key(),
        lang.pick("เข้าสู่ระบบ", "Sign in"),
        match lang {
            Lang::Th => "en",
            Lang::En => "th",
        },
        lang.pick("English", "ภาษาไทย"),
    );
    page
}

fn error_page(lang: Lang, account: &Account, message: &str) -> String {
    let mut page = head(lang, lang.pick("ห้องสถานการณ์", "War Room"));
    page.push_str(&top_bar(lang, account, &Link::default(), None));
    let _ = write!(
        page,
        "<main><p class=\"error\" id=\"message\">{}</p><p><a href=\"/war-room?lang={}\">{}</a></p></main></body></html>",
        escape(message),
        lang.key(),
        lang.pick("กลับหน้าแรก", "Back to the start")
    );
    page
}

/// What a link keeps from the page it is on.
#[derive(Clone, Debug, Default)]
struct Link {
    lang: Option<Lang>,
    dimension: Option<Dimension>,
    fiscal_year: Option<i32>,
}

impl Link {
    fn to(&self, area: Option<&str>) -> String {
        let mut url = String::from("/war-room?lang=");
        url.push_str(self.lang.unwrap_or(Lang::Th).key());
        if let Some(area) = area {
            let _ = write!(url, "&amp;area={}", escape(area));
        }
        if let Some(dimension) = self.dimension {
            let _ = write!(url, "&amp;dimension={}", dimension.key());
        }
        if let Some(year) = self.fiscal_year {
            let _ = write!(url, "&amp;fiscal_year={year}");
        }
        url
    }
}

fn top_bar(lang: Lang, account: &Account, link: &Link, here: Option<&str>) -> String {
    let other = Link {
        lang: Some(match lang {
            Lang::Th => Lang::En,
            Lang::En => Lang::Th,
        }),
        ..link.clone()
    };
    format!(
        "<header><h1>{}</h1><span id=\"account\">{}</span>\
         <a href=\"{}\" id=\"switch-lang\">{}</a>\
         <form method=\"post\" action=\"/war-room/sign-out\"><input type=\"hidden\" name=\"lang\" value=\"{}\">\
         <button type=\"submit\" id=\"sign-out\">{}</button></form></header>",
        lang.pick("ห้องสถานการณ์ขจัดความยากจน", "Poverty War Room"),
        escape(&account.name),
        other.to(here),
        lang.pick("English", "ภาษาไทย"),
        lang.key(),
        lang.pick("ออกจากระบบ", "Sign out"),
    )
}

/// The page of one area for the account.
async fn area_page(
    state: &AppState,
    account: &Account,
    query: &PageQuery,
    lang: Lang,
) -> Result<String, ApiError> {
    let fiscal_year = match query.fiscal_year.as_deref().filter(|y| !y.is_empty()) {
        None => None,
        Some(text) => Some(text.trim().parse::<i32>().map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                RefusalCode::BadQuery,
                "the fiscal year is a Buddhist Era year, such as 2569",
            )
        })?),
    };
    let no_area = query.area.as_deref().is_none_or(str::is_empty);
    if no_area && !account.scope.is_everything() && account.scope.areas.len() > 1 {
        return Ok(areas_page(lang, account));
    }
    let asked = ReportQuery {
        area: query.area.clone(),
        level: None,
        dimension: query.dimension.clone(),
        fiscal_year,
    };
    // The area as the account may ask it; the rows are the level below.
    let mut options = report_options(&account.scope, &asked)?;
    let area = options.area.clone();
    options.level = Some(match area.as_ref().map(AreaCode::level) {
        None | Some(AreaLevel::Province) => AreaLevel::District,
        Some(AreaLevel::District) => AreaLevel::Subdistrict,
        Some(AreaLevel::Subdistrict | AreaLevel::Village) => AreaLevel::Village,
    });
    let report = scoped_report(state, options.clone()).await?;
    let households = match &area {
        Some(village) if village.level() == AreaLevel::Village => {
            let backend = state.backend.clone();
            let village = village.clone();
            let options = options.clone();
            Some(
                blocking(state, move || {
                    Ok(backend.household_rows(&village, &options)?)
                })
                .await?,
            )
        }
        _ => None,
    };
    let link = Link {
        lang: Some(lang),
        dimension: options.dimension,
        fiscal_year: options.fiscal_year,
    };
    Ok(render(
        lang,
        account,
        &report,
        area.as_ref(),
        households.as_deref(),
        &link,
    ))
}

/// For an account of several areas: one link to each.
fn areas_page(lang: Lang, account: &Account) -> String {
    let areas = report_areas();
    let link = Link {
        lang: Some(lang),
        ..Link::default()
    };
    let mut page = head(lang, lang.pick("ห้องสถานการณ์", "War Room"));
    page.push_str(&top_bar(lang, account, &link, None));
    let _ = write!(
        page,
        "<main><h2 id=\"place\">{}</h2><ul id=\"areas\">",
        lang.pick("พื้นที่ของบัญชีนี้", "This account's areas")
    );
    for code in &account.scope.areas {
        let name = AreaCode::parse(code)
            .map(|area| area_name(areas, lang, &area))
            .unwrap_or_else(|_| code.clone());
        let _ = write!(
            page,
            "<li><a href=\"{}\" data-drill=\"{}\">{}</a></li>",
            link.to(Some(code)),
            escape(code),
            escape(&name)
        );
    }
    page.push_str("</ul></main></body></html>");
    page
}

fn render(
    lang: Lang,
    account: &Account,
    report: &Report,
    area: Option<&AreaCode>,
    households: Option<&[(HouseholdRow, Vec<String>)]>,
    link: &Link,
) -> String {
    let areas = report_areas();
    let place = area.map_or_else(
        || lang.pick("ทุกพื้นที่", "All areas").to_owned(),
        |area| area_name(areas, lang, area),
    );
    let mut page = head(
        lang,
        &format!("{} — {place}", lang.pick("ห้องสถานการณ์", "War Room")),
    );
    page.push_str(&top_bar(lang, account, link, area.map(AreaCode::as_str)));
    page.push_str("<main>");
    page.push_str(&crumbs(lang, account, area, link));
    page.push_str(&filters(lang, account, area, link));
    let _ = write!(page, "<h2 id=\"place\">{}</h2>", escape(&place));
    page.push_str(&tiles(lang, &report.total));
    let dimensions: Vec<Dimension> = match report.dimension {
        Some(only) => vec![only],
        None => Dimension::ALL.to_vec(),
    };
    match households {
        Some(rows) => page.push_str(&household_list(lang, rows, &dimensions)),
        None => {
            page.push_str(&charts(lang, report, &dimensions));
            page.push_str(&progress_table(lang, report, &dimensions, link));
        }
    }
    page.push_str(&before_after(lang, &report.total, &dimensions));
    if households.is_none() {
        page.push_str(&conflicts_and_gaps(lang, report, link));
    }
    page.push_str("</main></body></html>");
    page
}

fn area_name(areas: &Areas, lang: Lang, area: &AreaCode) -> String {
    match lang {
        Lang::Th => areas.describe_th(area),
        Lang::En => areas.describe_en(area),
    }
}

/// Short name of an area row: its own name, not its parents'.
fn row_name(areas: &Areas, lang: Lang, code: &str) -> String {
    let Ok(area) = AreaCode::parse(code) else {
        return code.to_owned();
    };
    if area.level() == AreaLevel::Village {
        let number = code[6..].trim_start_matches('0');
        return match lang {
            Lang::Th => format!("หมู่ {number}"),
            Lang::En => format!("Village {number}"),
        };
    }
    areas
        .name(&area)
        .map(|name| match lang {
            Lang::Th => name.th.clone(),
            Lang::En => name.en.clone(),
        })
        .unwrap_or_else(|| code.to_owned())
}

fn crumbs(lang: Lang, account: &Account, area: Option<&AreaCode>, link: &Link) -> String {
    let areas = report_areas();
    let mut out = String::from("<nav class=\"crumbs\" id=\"crumbs\">");
    if account.scope.is_everything() {
        let _ = write!(
            out,
            "<a href=\"{}\">{}</a>",
            link.to(None),
            lang.pick("ทุกพื้นที่", "All areas")
        );
    }
    if let Some(area) = area {
        let code = area.as_str();
        for length in [2, 4, 6, 8] {
            if length > code.len() {
                break;
            }
            let part = &code[..length];
            let within = account.scope.is_everything()
                || account
                    .scope
                    .areas
                    .iter()
                    .any(|own| part.starts_with(own.as_str()));
            if !within {
                continue;
            }
            let _ = write!(
                out,
                " › <a href=\"{}\">{}</a>",
                link.to(Some(part)),
                escape(&row_name(areas, lang, part))
            );
        }
    }
    out.push_str("</nav>");
    out
}

fn filters(lang: Lang, account: &Account, area: Option<&AreaCode>, link: &Link) -> String {
    let here = area.map(AreaCode::as_str);
    let mut out = String::from("<nav class=\"filters\" id=\"filters\">");
    if account.scope.dimension.is_none() {
        let all = Link {
            dimension: None,
            ..link.clone()
        };
        let _ = write!(
            out,
            "<a href=\"{}\"{}>{}</a>",
            all.to(here),
            if link.dimension.is_none() {
                " class=\"chosen\""
            } else {
                ""
            },
            lang.pick("ทุกด้าน", "All dimensions")
        );
        for dimension in Dimension::ALL {
            let one = Link {
                dimension: Some(dimension),
                ..link.clone()
            };
            let _ = write!(
                out,
                "<a href=\"{}\" data-dimension-link=\"{}\"{}>{}</a>",
                one.to(here),
                dimension.key(),
                if link.dimension == Some(dimension) {
                    " class=\"chosen\""
                } else {
                    ""
                },
                dimension_name(lang, dimension)
            );
        }
    }
    out.push_str("</nav>");
    out
}

fn dimension_name(lang: Lang, dimension: Dimension) -> &'static str {
    match lang {
        Lang::Th => dimension.name_th(),
        Lang::En => dimension.name_en(),
    }
}

fn tile(out: &mut String, id: &str, value: u64, label: &str) {
    let _ = write!(
        out,
        "<div class=\"tile\"><span class=\"value\" id=\"{id}\" data-value=\"{value}\">{}</span>\
         <span class=\"label\">{}</span></div>",
        group_thousands(value),
        escape(label)
    );
}

fn tiles(lang: Lang, total: &AreaFigures) -> String {
    let mut out = String::from("<div class=\"tiles\">");
    tile(
        &mut out,
        "households",
        total.households,
        lang.pick("ครัวเรือนเป้าหมาย", "Target households"),
    );
    tile(
        &mut out,
        "target-poor",
        total.target_poor,
        lang.pick("คนจนเป้าหมาย", "Target poor"),
    );
    tile(
        &mut out,
        "needs-welfare",
        total.classification.needs_welfare,
        lang.pick("ต้องสงเคราะห์", "Needs welfare"),
    );
    tile(
        &mut out,
        "can-develop",
        total.classification.can_develop,
        lang.pick("พัฒนาได้", "Can develop"),
    );
    tile(
        &mut out,
        "with-official",
        total.pairing.with_official,
        lang.pick("มีเจ้าหน้าที่คู่เสี่ยว", "With a paired official"),
    );
    tile(
        &mut out,
        "without-official",
        total.pairing.without_official,
        lang.pick("ยังไม่มีเจ้าหน้าที่ดูแล", "No official yet"),
    );
    out.push_str("</div>");
    out
}

/// One small chart per dimension: a bar per area, deprived behind, helped
/// in front, and % helped.
fn charts(lang: Lang, report: &Report, dimensions: &[Dimension]) -> String {
    let areas = report_areas();
    let rows: Vec<&AreaFigures> = report.areas.iter().collect();
    let mut out = format!(
        "<section id=\"charts\"><h2>{}</h2><p class=\"legend\"><span class=\"deprived\"></span>{}\
         <span class=\"helped\"></span>{}</p><div class=\"charts\">",
        lang.pick("ความคืบหน้ารายด้าน", "Progress per dimension"),
        lang.pick("ขาดแคลน", "Deprived"),
        lang.pick("ได้รับความช่วยเหลือ", "Helped")
    );
    const ROW: usize = 22;
    const LABEL: usize = 150;
    const BAR: usize = 230;
    for dimension in dimensions {
        let key = dimension.key();
        let most = rows
            .iter()
            .filter_map(|area| area.dimensions.get(key))
            .map(|figures| figures.deprived.max(figures.helped))
            .max()
            .unwrap_or(0)
            .max(1);
        let height = ROW * rows.len().max(1) + 4;
        let _ = write!(
            out,
            "<div class=\"chart\"><h3>{}</h3><svg viewBox=\"0 0 {} {height}\" role=\"img\" aria-label=\"{}\">",
            dimension_name(lang, *dimension),
            LABEL + BAR + 70,
            dimension_name(lang, *dimension)
        );
        for (index, area) in rows.iter().enumerate() {
            let Some(figures) = area.dimensions.get(key) else {
                continue;
            };
            let y = index * ROW + 2;
            let width = |n: u64| (n as usize * BAR) / most as usize;
            let _ = write!(
                out,
                "<text x=\"0\" y=\"{}\">{}</text>\
                 <rect class=\"deprived\" x=\"{LABEL}\" y=\"{y}\" width=\"{}\" height=\"{}\"></rect>\
                 <rect class=\"helped\" x=\"{LABEL}\" y=\"{}\" width=\"{}\" height=\"{}\"></rect>\
                 <text x=\"{}\" y=\"{}\">{}</text>",
                y + 15,
                escape(&truncate(&row_name(areas, lang, &area.code), 16)),
                width(figures.deprived),
                ROW - 6,
                y + 4,
                width(figures.helped.min(figures.deprived)),
                ROW - 14,
                LABEL + BAR + 6,
                y + 15,
                figures
                    .percent_helped
                    .as_deref()
                    .map_or("—".to_owned(), |p| format!("{p}%"))
            );
        }
        out.push_str("</svg></div>");
    }
    out.push_str("</div></section>");
    out
}

fn truncate(text: &str, chars: usize) -> String {
    if text.chars().count() <= chars {
        text.to_owned()
    } else {
        text.chars().take(chars - 1).chain(['…']).collect()
    }
}

fn figure(name: &str, value: u64) -> String {
    format!(
        "<span data-figure=\"{name}\" data-value=\"{value}\">{}</span>",
        group_thousands(value)
    )
}

fn progress_table(lang: Lang, report: &Report, dimensions: &[Dimension], link: &Link) -> String {
    let areas = report_areas();
    let mut out = format!(
        "<section id=\"progress\"><h2>{}</h2><div class=\"scroll\"><table><thead><tr><th>{}</th><th>{}</th>",
        lang.pick(
            "ช่วยเหลือแล้ว / ขาดแคลน (ร้อยละ)",
            "Helped / deprived (% helped)"
        ),
        lang.pick("พื้นที่", "Area"),
        lang.pick("ครัวเรือน", "Households")
    );
    for dimension in dimensions {
        let _ = write!(out, "<th>{}</th>", dimension_name(lang, *dimension));
    }
    out.push_str("</tr></thead><tbody>");
    for area in &report.areas {
        let _ = write!(
            out,
            "<tr data-area=\"{}\"><td class=\"text\"><a href=\"{}\" data-drill=\"{}\">{}</a></td><td>{}</td>",
            escape(&area.code),
            link.to(Some(&area.code)),
            escape(&area.code),
            escape(&row_name(areas, lang, &area.code)),
            figure("households", area.households)
        );
        for dimension in dimensions {
            let Some(figures) = area.dimensions.get(dimension.key()) else {
                out.push_str("<td></td>");
                continue;
            };
            let _ = write!(
                out,
                "<td data-dimension=\"{}\">{} / {} <span class=\"pct\" data-figure=\"percent_helped\">{}</span></td>",
                dimension.key(),
                figure("helped", figures.helped),
                figure("deprived", figures.deprived),
                figures
                    .percent_helped
                    .as_deref()
                    .map_or("—".to_owned(), |p| format!("{p}%"))
            );
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></div></section>");
    out
}

fn before_after(lang: Lang, total: &AreaFigures, dimensions: &[Dimension]) -> String {
    let income = &total.income;
    let money = |value: Option<faenban_core::Baht>| {
        value.map_or("—".to_owned(), |baht| format!("{} ฿", baht.grouped()))
    };
    let mut out = format!(
        "<section id=\"before-after\"><h2>{}</h2><div class=\"tiles\">",
        lang.pick("ก่อน / หลัง", "Before / after")
    );
    tile(
        &mut out,
        "revisited",
        income.households_revisited,
        lang.pick("ครัวเรือนที่สำรวจซ้ำ", "Households visited again"),
    );
    let _ = write!(
        out,
        "<div class=\"tile\"><span class=\"value\" id=\"income-first\">{}</span><span class=\"label\">{}</span></div>\
         <div class=\"tile\"><span class=\"value\" id=\"income-latest\">{}</span><span class=\"label\">{}</span></div>\
         <div class=\"tile\"><span class=\"value\" id=\"income-change\">{}</span><span class=\"label\">{}</span></div></div>",
        money(income.first_mean_monthly),
        lang.pick("รายได้เฉลี่ยต่อเดือน ครั้งแรก", "Mean monthly income, first visit"),
        money(income.latest_mean_monthly),
        lang.pick("รายได้เฉลี่ยต่อเดือน ล่าสุด", "Mean monthly income, latest visit"),
        income
            .percent_change
            .as_deref()
            .map_or("—".to_owned(), |p| format!("{p}%")),
        lang.pick("การเปลี่ยนแปลง", "Change"),
    );
    let _ = write!(
        out,
        "<div class=\"scroll\"><table><thead><tr><th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>",
        lang.pick("ด้าน", "Dimension"),
        lang.pick("พ้นจากการขาดแคลน", "Left deprivation"),
        lang.pick("ตกเป็นขาดแคลน", "Fell into deprivation")
    );
    for dimension in dimensions {
        if let Some(figures) = total.dimensions.get(dimension.key()) {
            let _ = write!(
                out,
                "<tr data-dimension=\"{}\"><td class=\"text\">{}</td><td>{}</td><td>{}</td></tr>",
                dimension.key(),
                dimension_name(lang, *dimension),
                figure("left_deprivation", figures.left_deprivation),
                figure("fell_into_deprivation", figures.fell_into_deprivation)
            );
        }
    }
    out.push_str("</tbody></table></div></section>");
    out
}

fn conflicts_and_gaps(lang: Lang, report: &Report, link: &Link) -> String {
    let areas = report_areas();
    let mut out = format!(
        "<section id=\"conflicts\"><h2>{}</h2>",
        lang.pick("ข้อมูลขัดแย้งรอตรวจ", "Conflicts awaiting review")
    );
    let waiting: Vec<&AreaFigures> = report.areas.iter().filter(|a| a.conflicts > 0).collect();
    if waiting.is_empty() {
        let _ = write!(out, "<p>{}</p>", lang.pick("ไม่มี", "None"));
    } else {
        out.push_str("<table><tbody>");
        for area in waiting {
            let _ = write!(
                out,
                "<tr data-area=\"{}\"><td class=\"text\"><a href=\"{}\">{}</a></td><td class=\"warn\">{}</td></tr>",
                escape(&area.code),
                link.to(Some(&area.code)),
                escape(&row_name(areas, lang, &area.code)),
                figure("conflicts", area.conflicts)
            );
        }
        out.push_str("</tbody></table>");
    }
    let _ = write!(
        out,
        "</section><section id=\"gaps\"><h2>{}</h2><div class=\"scroll\"><table><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>",
        lang.pick("ข้อมูลที่ยังขาด", "Data gaps"),
        lang.pick("พื้นที่", "Area"),
        lang.pick("ยังไม่เคยสำรวจ", "Never surveyed"),
        lang.pick("สำรวจค้างไว้", "Survey unfinished"),
        lang.pick("ไม่มีหัวหน้าครัวเรือน", "No head recorded")
    );
    for area in &report.areas {
        let gaps = &area.gaps;
        if gaps.never_surveyed + gaps.unfinished_surveys + gaps.no_head == 0 {
            continue;
        }
        let _ = write!(
            out,
            "<tr data-area=\"{}\"><td class=\"text\"><a href=\"{}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&area.code),
            link.to(Some(&area.code)),
            escape(&row_name(areas, lang, &area.code)),
            figure("never_surveyed", gaps.never_surveyed),
            figure("unfinished_surveys", gaps.unfinished_surveys),
            figure("no_head", gaps.no_head)
        );
    }
    out.push_str("</tbody></table></div></section>");
    out
}

fn classification_name(lang: Lang, classification: Option<Classification>) -> &'static str {
    match classification {
        Some(Classification::NeedsWelfare) => lang.pick("ต้องสงเคราะห์", "Needs welfare"),
        Some(Classification::CanDevelop) => lang.pick("พัฒนาได้", "Can develop"),
        None => lang.pick("ยังไม่จัดกลุ่ม", "Not classified"),
    }
}

fn status_name(lang: Lang, status: AssistanceStatus) -> &'static str {
    match status {
        AssistanceStatus::Planned => lang.pick("วางแผน", "planned"),
        AssistanceStatus::InProgress => lang.pick("กำลังดำเนินการ", "under way"),
        AssistanceStatus::Done => lang.pick("ให้แล้ว", "given"),
    }
}

fn stage_name(lang: Lang, stage: Stage) -> &'static str {
    match stage {
        Stage::Survive => lang.pick("อยู่รอด", "survive"),
        Stage::Sufficient => lang.pick("พอเพียง", "sufficient"),
        Stage::Sustainable => lang.pick("ยั่งยืน", "sustainable"),
    }
}

/// A village's households: house code, classification, deprivation, help
/// and official. Never a name of a household member or a national ID.
fn household_list(
    lang: Lang,
    rows: &[(HouseholdRow, Vec<String>)],
    dimensions: &[Dimension],
) -> String {
    let mut out = format!(
        "<section id=\"households-list\"><h2>{}</h2><div class=\"scroll\"><table><thead><tr>\
         <th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>",
        lang.pick("ครัวเรือนในหมู่บ้าน", "Households of the village"),
        lang.pick("รหัสบ้าน", "House code"),
        lang.pick("กลุ่ม", "Classification"),
        lang.pick("ขาดแคลนด้าน", "Deprived in"),
        lang.pick("ความช่วยเหลือ", "Help"),
        lang.pick("เจ้าหน้าที่คู่เสี่ยว", "Paired official"),
    );
    for (row, officials) in rows {
        let deprived = match &row.deprived {
            None => lang.pick("ยังไม่เคยสำรวจ", "never surveyed").to_owned(),
            Some(list) if list.is_empty() => "—".to_owned(),
            Some(list) => list
                .iter()
                .filter(|d| dimensions.contains(d))
                .map(|d| dimension_name(lang, *d))
                .collect::<Vec<_>>()
                .join(", "),
        };
        let help = if row.help.is_empty() {
            "—".to_owned()
        } else {
            row.help
                .iter()
                .map(|(dimension, status, stage)| {
                    format!(
                        "{}: {} ({})",
                        dimension_name(lang, *dimension),
                        status_name(lang, *status),
                        stage_name(lang, *stage)
                    )
                })
                .collect::<Vec<_>>()
                .join("; ")
        };
        let officials = if officials.is_empty() {
            format!("<span class=\"warn\">{}</span>", lang.pick("ไม่มี", "none"))
        } else {
            escape(&officials.join(", "))
        };
        let _ = write!(
            out,
            "<tr data-household=\"{}\"><td class=\"text\">{}{}</td><td class=\"text\">{}</td>\
             <td class=\"text\" data-figure=\"deprived\">{}</td><td class=\"text\">{}</td><td class=\"text\">{}</td></tr>",
            escape(&row.house_code),
            escape(&row.house_code),
            if row.conflict {
                format!(
                    " <span class=\"warn\">({})</span>",
                    lang.pick("ขัดแย้ง", "conflict")
                )
            } else {
                String::new()
            },
            classification_name(lang, row.classification),
            escape(&deprived),
            escape(&help),
            officials
        );
    }
    out.push_str("</tbody></table></div></section>");
    out
}
