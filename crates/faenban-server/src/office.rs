//! The provincial office's reports over HTTP: `GET /v1/report` (JSON) and
//! `GET /v1/report.xlsx`, scoped by the account, computed from the
//! households' digests and kept until a push moves the feed.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use faenban_core::report::{Report, ReportOptions};
use faenban_core::sync::{Role, Scope};
use faenban_core::RefusalCode;
use serde::Deserialize;

use crate::{authenticate, blocking, ApiError, AppState};

/// `GET /v1/report` parameters.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ReportQuery {
    #[serde(default)]
    pub(crate) area: Option<String>,
    #[serde(default)]
    pub(crate) level: Option<String>,
    #[serde(default)]
    pub(crate) dimension: Option<String>,
    #[serde(default)]
    pub(crate) fiscal_year: Option<i32>,
}

/// `GET /v1/report`: the report (`docs/report.md`) of the account's scope,
/// as the CLI computes it from a pulled file. A province account sees
/// everything; a team its areas; a working group its dimension in its
/// areas; a volunteer's account is refused (it reports from its laptop).
pub(crate) async fn report(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<ReportQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let report = report_of(&state, &headers, query).await?;
    let json = blocking(&state, move || {
        serde_json::to_vec(&*report).map_err(|_| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                RefusalCode::Internal,
                "the report could not be written out",
            )
        })
    })
    .await?;
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from(json),
    )
        .into_response())
}

/// `GET /v1/report.xlsx`: the same report as an Excel workbook, a sheet per
/// section (the workbook `faenban report --format xlsx` writes).
pub(crate) async fn report_workbook(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<ReportQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let report = report_of(&state, &headers, query).await?;
    let bytes = blocking(&state, move || {
        faenban_workbook::workbook(&report).map_err(|error| {
            tracing::error!(%error, "a report workbook could not be written");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                RefusalCode::Internal,
                "the workbook could not be written",
            )
        })
    })
    .await?;
    Ok((
        [
            (
                header::CONTENT_TYPE,
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            ),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"faenban-report.xlsx\"",
            ),
        ],
        Body::from(bytes),
    )
        .into_response())
}

/// The report of the bearer's scope for the query.
async fn report_of(
    state: &AppState,
    headers: &HeaderMap,
    query: Result<Query<ReportQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Arc<Report>, ApiError> {
    let account = authenticate(state, headers).await?;
    let Query(query) = query.map_err(|rejection| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            RefusalCode::BadQuery,
            rejection.to_string(),
        )
    })?;
    let options = report_options(&account.scope, &query)?;
    scoped_report(state, options).await
}

/// What an account may ask of the report, from its query: refused for a
/// volunteer, the area checked against the account's, a working group held
/// to its dimension.
pub(crate) fn report_options(
    scope: &Scope,
    query: &ReportQuery,
) -> Result<ReportOptions, ApiError> {
    let bad =
        |message: String| ApiError::new(StatusCode::BAD_REQUEST, RefusalCode::BadQuery, message);
    if scope.role == Role::Volunteer {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            RefusalCode::NoReport,
            "a volunteer's account has no report from the server; run `faenban report` on the laptop",
        ));
    }
    let area = query
        .area
        .as_deref()
        .filter(|area| !area.is_empty())
        .map(faenban_core::codes::AreaCode::parse)
        .transpose()
        .map_err(|invalid| bad(format!("area: {invalid}")))?;
    // The area asked must lie in the account's; an account of one area
    // reports on it by default, one of several must say which.
    let area = match (area, scope.is_everything(), scope.areas.as_slice()) {
        (area, true, _) => area,
        (None, false, [only]) => Some(
            faenban_core::codes::AreaCode::parse(only)
                .map_err(|invalid| bad(invalid.to_string()))?,
        ),
        (None, false, _) => {
            return Err(bad(format!(
                "this account covers several areas ({}); ask for one with ?area=",
                scope.areas.join(", ")
            )))
        }
        (Some(area), false, areas) => {
            if !areas
                .iter()
                .any(|own| area.as_str().starts_with(own.as_str()))
            {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    RefusalCode::OutOfScope,
                    format!("area {} is outside this account's areas", area.as_str()),
                ));
            }
            Some(area)
        }
    };
    let level = match query.level.as_deref().filter(|level| !level.is_empty()) {
        None => None,
        Some(key) => Some(
            faenban_core::report::level_from_key(key)
                .ok_or_else(|| bad(format!("unknown level `{key}`")))?,
        ),
    };
    let asked = query.dimension.as_deref().filter(|key| !key.is_empty());
    let dimension = match (asked, scope.dimension) {
        (_, Some(own)) => Some(own),
        (None, None) => None,
        (Some(key), None) => Some(
            faenban_core::Dimension::from_key(key)
                .ok_or_else(|| bad(format!("unknown dimension `{key}`")))?,
        ),
    };
    if query.fiscal_year.is_some_and(|year| year < 2400) {
        return Err(bad(
            "the fiscal year is in the Buddhist Era (e.g. 2569)".into()
        ));
    }
    // Each year asked is a report of its own to compute and keep: only
    // years a programme can have.
    if query
        .fiscal_year
        .is_some_and(|year| !(FIRST_FISCAL_YEAR..=LAST_FISCAL_YEAR).contains(&year))
    {
        return Err(bad(format!(
            "the fiscal year must be from {FIRST_FISCAL_YEAR} to {LAST_FISCAL_YEAR} (Buddhist Era)"
        )));
    }
    Ok(ReportOptions {
        area,
        level,
        dimension,
        fiscal_year: query.fiscal_year,
    })
}

/// The fiscal years a report may be asked for (BE): the BMN survey began
/// in 2525; a century on is far enough.
const FIRST_FISCAL_YEAR: i32 = 2525;
const LAST_FISCAL_YEAR: i32 = 2625;

/// The report for `options`: from the cache while the feed has not moved
/// since it was computed, else from the households' digests. One report is
/// computed at a time: a pass over a province's digests holds a reader for
/// a second or two, and the others keep serving syncs; requests that wait
/// meanwhile find the report computed.
pub(crate) async fn scoped_report(
    state: &AppState,
    options: ReportOptions,
) -> Result<Arc<Report>, ApiError> {
    let backend = state.backend.clone();
    let cache = state.reports.clone();
    let generation = {
        let backend = backend.clone();
        blocking(state, move || Ok(backend.report_generation()?)).await?
    };
    if let Some(report) = cache.get(generation, &options) {
        return Ok(report);
    }
    let _computing = state.reports.computing.lock().await;
    blocking(state, move || {
        let generation = backend.report_generation()?;
        if let Some(report) = cache.get(generation, &options) {
            return Ok(report);
        }
        let report = Arc::new(backend.report(report_areas(), &options)?);
        cache.put(generation, options, report.clone());
        Ok(report)
    })
    .await
}

/// The area names reports are labelled with.
pub(crate) fn report_areas() -> &'static faenban_core::areas::Areas {
    static AREAS: std::sync::OnceLock<faenban_core::areas::Areas> = std::sync::OnceLock::new();
    AREAS.get_or_init(faenban_core::areas::Areas::builtin)
}

/// How many computed reports are kept (each a few kilobytes to a few
/// hundred for a village-level province report).
const CACHED_REPORTS: usize = 32;

/// Reports computed at a feed head, newest last.
#[derive(Debug, Default)]
pub(crate) struct ReportCache {
    entries: Mutex<Vec<(u64, ReportOptions, Arc<Report>)>>,
    /// Held while a report is computed.
    computing: tokio::sync::Mutex<()>,
}

impl ReportCache {
    fn get(&self, generation: u64, options: &ReportOptions) -> Option<Arc<Report>> {
        let entries = self
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        entries
            .iter()
            .rev()
            .find(|(at, asked, _)| *at == generation && asked == options)
            .map(|(_, _, report)| report.clone())
    }

    fn put(&self, generation: u64, options: ReportOptions, report: Arc<Report>) {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // What was computed at an older head can never be asked again.
        entries.retain(|(at, asked, _)| *at == generation && *asked != options);
        if entries.len() >= CACHED_REPORTS {
            entries.remove(0);
        }
        entries.push((generation, options, report));
    }
}
