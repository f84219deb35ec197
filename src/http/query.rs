//! Ad-hoc SQL for analysts: run, cancel, history, saved queries, schema.

use actix_web::{delete, get, post, put, web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde::Deserialize;

use super::{auth::Caller, params::Params, ApiError, AppState};
use crate::auth::{authorize, Action, Principal, Role};
use crate::sql::{history, OutputFormat, Target};
use crate::store::audit::AuditAction;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(run_query)
        .service(cancel_query)
        .service(query_history)
        .service(schema)
        .service(list_saved)
        .service(save_query)
        .service(delete_saved);
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct QueryRequest {
    #[schema(min_length = 1)]
    pub sql: String,
    /// `json` (default) or `csv`.
    pub format: Option<OutputFormat>,
    /// Org code whose data the query reads; default the caller's scope.
    #[schema(pattern = "^4403[0-9]{2}([0-9]{3}([0-9]{3})?)?$")]
    pub scope: Option<String>,
    /// The caller's own id for the query (letters, digits, `-`), so it can cancel it before
    /// the answer arrives; default a new UUID (returned in `X-Query-Id`).
    #[schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9-]+$")]
    pub id: Option<String>,
}

#[derive(Deserialize)]
struct ScopeParam {
    scope: Option<String>,
}

/// Authorises SQL over `scope` and finds where it runs.
async fn target_for(
    state: &AppState,
    who: &Principal,
    scope: Option<&str>,
) -> Result<Target, ApiError> {
    let tree = &state.tree;
    let node = match scope {
        Some(code) => tree
            .get(code)
            .ok_or_else(|| ApiError::bad_request("scope", format!("unknown org code {code}")))?,
        None => who.scope,
    };
    authorize(tree, who, Action::Query, node)?;
    let admin_over_city = who.role == Role::Admin && node == tree.root();
    let catalogue = state.hub.catalogue();
    Ok(state
        .sql
        .target(admin_over_city, node, &catalogue.kinds)
        .await?)
}

/// The SQL text the audit trail keeps of a query, in characters (leaving room, within the
/// trail's bound on a detail, for the refusal's reason after it).
const MAX_AUDITED_SQL: usize = 3_000;

fn valid_query_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// Run read-only SQL on ClickHouse as the scope's analyst user. Tables: `events` (records of
/// the scope, ID and phone numbers masked), `metric_snapshots`, `org_nodes`. The answer
/// streams in ClickHouse's JSONCompact or as CSV. Refusals come from ClickHouse itself: 403
/// (writes, DDL, settings, table functions, other databases), 422 (a time, row, byte or
/// memory limit), 400 (the SQL is wrong), 409 (cancelled), 429 (rate limit or hourly quota).
#[utoipa::path(post, path = "/api/v1/query", tag = "sql", request_body = QueryRequest,
    responses((status = 200, description = "The result, streamed"), (status = 400, body = super::error::ErrorBody),
        (status = 403, body = super::error::ErrorBody), (status = 409, body = super::error::ErrorBody),
        (status = 422, body = super::error::ErrorBody), (status = 429, body = super::error::ErrorBody)),
    security(("bearer" = [])))]
#[post("/api/v1/query")]
async fn run_query(
    caller: Caller,
    req: HttpRequest,
    body: web::Json<QueryRequest>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let who = caller.may(&state, Action::Query)?;
    let target = target_for(&state, &who, body.scope.as_deref()).await?;
    state.limits.query(&who.token_key)?;
    if let Some(id) = &body.id {
        if !valid_query_id(id) {
            return Err(ApiError::bad_request("id", "1–64 letters, digits or '-'"));
        }
    }
    let format = body.format.unwrap_or(OutputFormat::Json);
    let run = state
        .sql
        .run(&who.name, &target, &body.sql, format, body.id.clone());
    // ClickHouse answers only when the query is done: if the client leaves first, dropping
    // the run kills the query.
    let run = match req.conn_data::<super::ClientSocket>().copied() {
        Some(socket) => tokio::select! {
            run = run => run,
            () = socket.closed() => {
                tracing::info!(user = %who.name, "client went away during a query");
                return Err(ApiError::Conflict("the client closed the connection".into()));
            }
        },
        None => run.await,
    };
    let sql: String = body.sql.chars().take(MAX_AUDITED_SQL).collect();
    let ran = super::audit_entry(&state, &req, &who, AuditAction::SqlRun).target(&target.scope);
    let run = match run {
        Ok(run) => {
            state.audit.record(ran.detail(sql));
            run
        }
        Err(e) => {
            state
                .audit
                .record(ran.outcome("refused").detail(format!("{sql}\n-- {e}")));
            return Err(e.into());
        }
    };
    let mut res = HttpResponse::Ok();
    res.content_type(format.content_type())
        .insert_header(("X-Query-Id", run.id.clone()));
    if format == OutputFormat::Csv {
        let name = csv_filename(&body.sql, state.hub.now());
        res.insert_header((
            "Content-Disposition",
            format!("attachment; filename=\"{name}\""),
        ));
        // Excel on Chinese Windows reads a CSV without a byte-order mark as GBK: the mark
        // makes it read UTF-8.
        let bom = futures_util::stream::once(async {
            Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"\xEF\xBB\xBF"))
        });
        return Ok(res.streaming(bom.chain(run.into_stream())));
    }
    Ok(res.streaming(run.into_stream()))
}

/// A download's name from its query: the first table it reads and the time, as
/// `events-20261207-1012.csv` (`query-….csv` when no table is named).
fn csv_filename(sql: &str, now: time::OffsetDateTime) -> String {
    let words: Vec<&str> = sql.split_whitespace().collect();
    let table = words
        .windows(2)
        .find(|w| w[0].eq_ignore_ascii_case("from"))
        .map(|w| {
            w[1].replace('`', "")
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.')
                .collect::<String>()
        })
        .filter(|t| !t.is_empty())
        .map(|t| t.rsplit('.').next().unwrap_or(&t).to_string())
        .unwrap_or_else(|| "query".into());
    let local = now.to_offset(crate::domain::time::SHANGHAI);
    format!(
        "{table}-{:04}{:02}{:02}-{:02}{:02}.csv",
        local.year(),
        local.month() as u8,
        local.day(),
        local.hour(),
        local.minute()
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_csv_download_is_named_after_the_table_it_reads() {
        let at = time::macros::datetime!(2026-12-07 02:12 UTC);
        assert_eq!(
            super::csv_filename("SELECT kind, count() FROM events GROUP BY kind", at),
            "events-20261207-1012.csv"
        );
        assert_eq!(
            super::csv_filename("select * from `vscc`.kind_staff_hired", at),
            "kind_staff_hired-20261207-1012.csv"
        );
        assert_eq!(
            super::csv_filename("SELECT 1", at),
            "query-20261207-1012.csv"
        );
    }
}

/// Cancel one of the caller's running queries (admins: anyone's); it is killed in ClickHouse
/// and its request answers 409.
#[utoipa::path(delete, path = "/api/v1/query/{id}", tag = "sql",
    responses((status = 204), (status = 404, body = super::error::ErrorBody)), security(("bearer" = [])))]
#[delete("/api/v1/query/{id}")]
async fn cancel_query(
    caller: Caller,
    req: HttpRequest,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let who = caller.may(&state, Action::Query)?;
    // `/api/v1/query/history` and `…/schema` are resources of their own, not a query's id.
    if let Some(methods) = super::openapi::methods_at(req.path()).filter(|m| !m.contains(&"DELETE"))
    {
        return Err(ApiError::MethodNotAllowed {
            method: "DELETE".into(),
            allow: methods.join(", "),
        });
    }
    state
        .sql
        .cancel(&id, &who.name, who.role == Role::Admin)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize)]
struct HistoryParams {
    limit: Option<u64>,
}

/// The caller's last queries (SQL, duration, rows, outcome), newest first.
#[utoipa::path(get, path = "/api/v1/query/history", tag = "sql",
    params(("limit" = Option<u64>, Query, minimum = 1, maximum = 500, description = "At most this many (default 50, at most 500)")),
    responses((status = 200, body = Vec<history::QueryLogView>)), security(("bearer" = [])))]
#[get("/api/v1/query/history")]
async fn query_history(
    caller: Caller,
    params: Params<HistoryParams>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let who = caller.may(&state, Action::Query)?;
    let limit = super::params::in_range("limit", params.limit.unwrap_or(50), 1, 500)?;
    Ok(HttpResponse::Ok().json(history::history(state.sql.store(), &who.name, limit).await?))
}

/// The tables and columns the caller's SQL may read over `scope`.
#[utoipa::path(get, path = "/api/v1/query/schema", tag = "sql",
    params(("scope" = Option<String>, Query, pattern = "^4403[0-9]{2}([0-9]{3}([0-9]{3})?)?$", description = "Org code (default: the caller's scope)")),
    responses((status = 200, body = Vec<history::ColumnInfo>)), security(("bearer" = [])))]
#[get("/api/v1/query/schema")]
async fn schema(
    caller: Caller,
    params: Params<ScopeParam>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let who = caller.may(&state, Action::Query)?;
    let target = target_for(&state, &who, params.scope.as_deref()).await?;
    Ok(HttpResponse::Ok().json(state.sql.schema(&target).await?))
}

/// The caller's saved queries.
#[utoipa::path(get, path = "/api/v1/queries/saved", tag = "sql",
    responses((status = 200, body = Vec<crate::sql::SavedQuery>)), security(("bearer" = [])))]
#[get("/api/v1/queries/saved")]
async fn list_saved(caller: Caller, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let who = caller.may(&state, Action::Query)?;
    Ok(HttpResponse::Ok().json(history::saved(state.sql.store(), &who.name).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct SaveQuery {
    #[schema(min_length = 1)]
    pub sql: String,
}

/// Save (or replace) a named query.
#[utoipa::path(put, path = "/api/v1/queries/saved/{name}", tag = "sql", request_body = SaveQuery,
    responses((status = 200, body = crate::sql::SavedQuery), (status = 400, body = super::error::ErrorBody)),
    security(("bearer" = [])))]
#[put("/api/v1/queries/saved/{name}")]
async fn save_query(
    caller: Caller,
    name: web::Path<String>,
    body: web::Json<SaveQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let who = caller.may(&state, Action::Query)?;
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::bad_request("name", "1–100 characters"));
    }
    if body.sql.trim().is_empty() {
        return Err(ApiError::bad_request("sql", "is empty"));
    }
    Ok(
        HttpResponse::Ok()
            .json(history::save(state.sql.store(), &who.name, name, &body.sql).await?),
    )
}

/// Forget a saved query.
#[utoipa::path(delete, path = "/api/v1/queries/saved/{name}", tag = "sql",
    responses((status = 204), (status = 404, body = super::error::ErrorBody)), security(("bearer" = [])))]
#[delete("/api/v1/queries/saved/{name}")]
async fn delete_saved(
    caller: Caller,
    name: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let who = caller.may(&state, Action::Query)?;
    if history::delete_saved(state.sql.store(), &who.name, &name).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::NotFound {
            what: format!("saved query {name}"),
        })
    }
}
