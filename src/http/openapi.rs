//! The OpenAPI document of the HTTP API, served at `/openapi.json`.

use actix_web::{get, web, HttpResponse};
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(title = "vscc — Veterans Service Command Center", description = "Live figures, targets and alerts for the Shenzhen veterans service system."),
    paths(
        super::health::healthz,
        super::health::readyz,
        super::health::metrics,
        super::org::org_tree,
        super::org::org_subtree,
        super::org::districts,
        super::org::locate,
        super::events::post_events,
        super::figures::metrics,
        super::figures::screens,
        super::figures::catalogue,
        super::figures::freshness,
        super::ws::ws,
        super::pages::dashboards,
        super::alerts::list_alerts,
        super::alerts::alert_history,
        super::alerts::ack_alert,
        super::alerts::unack_alert,
        super::alerts::list_silences,
        super::jobs::list_jobs,
        super::jobs::run_snapshots,
        super::jobs::trends,
        super::alerts::create_silence,
        super::alerts::delete_silence,
        super::pages::dashboard,
        super::users::login,
        super::users::me,
        super::users::list_users,
        super::users::add_user,
        super::users::revoke_user,
        super::users::list_screen_tokens,
        super::users::issue_screen_token,
        super::users::revoke_screen_token,
        super::query::run_query,
        super::query::cancel_query,
        super::query::query_history,
        super::query::schema,
        super::query::list_saved,
        super::query::save_query,
        super::query::delete_saved,
        super::imports::upload,
        super::imports::list,
        super::imports::rejects,
        super::alerts::quarantine,
    ),
    components(schemas(EventIn, super::alerts::QuarantineAnswer, crate::live::hub::QuarantinedRecord, crate::domain::org::OrgView, crate::domain::Level, super::error::ErrorBody, super::health::Readiness, super::org::Located, super::events::IngestAnswer, crate::ingest::Rejection)),
    modifiers(&BearerAuth, &UnauthorizedDocumented),
)]
pub struct ApiDoc;

/// Every operation that takes a token answers 401 without a valid one: said once, here, for
/// every such operation that does not say it itself.
struct UnauthorizedDocumented;

impl utoipa::Modify for UnauthorizedDocumented {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{content::ContentBuilder, Ref, ResponseBuilder};
        for item in openapi.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
                if secured && !op.responses.responses.contains_key("401") {
                    let response = ResponseBuilder::new()
                        .description(
                            "No valid token (header `Authorization: Bearer …`, or `?token=`)",
                        )
                        .content(
                            "application/json",
                            ContentBuilder::new()
                                .schema(Some(Ref::from_schema_name("ErrorBody")))
                                .build(),
                        )
                        .build();
                    op.responses.responses.insert("401".into(), response.into());
                }
            }
        }
    }
}

/// The methods the API serves at `path`, when `path` is one of its routes (for 405 answers).
pub fn methods_at(path: &str) -> Option<Vec<&'static str>> {
    static ROUTES: std::sync::OnceLock<Vec<(Vec<String>, Vec<&'static str>)>> =
        std::sync::OnceLock::new();
    let routes = ROUTES.get_or_init(|| {
        ApiDoc::openapi()
            .paths
            .paths
            .iter()
            .map(|(template, item)| {
                let segments = template.split('/').map(str::to_string).collect();
                let methods = [
                    ("GET", item.get.is_some()),
                    ("POST", item.post.is_some()),
                    ("PUT", item.put.is_some()),
                    ("DELETE", item.delete.is_some()),
                    ("PATCH", item.patch.is_some()),
                ]
                .into_iter()
                .filter(|(_, has)| *has)
                .map(|(m, _)| m)
                .collect();
                (segments, methods)
            })
            .collect()
    });
    let parts: Vec<&str> = path.split('/').collect();
    let matches = |segments: &[String]| {
        segments.len() == parts.len()
            && segments.iter().zip(&parts).all(|(s, p)| {
                (s.starts_with('{') && !p.is_empty()) || s == p
                    // `{upload_id}/rejects.csv`-style: a parameter followed by a fixed suffix
                    || (s.starts_with('{') && s.contains('}') && p.ends_with(s.split('}').nth(1).unwrap_or("")))
            })
    };
    let mut methods: Vec<&'static str> = routes
        .iter()
        .filter(|(segments, _)| matches(segments))
        .flat_map(|(_, m)| m.iter().copied())
        .collect();
    methods.sort_unstable();
    methods.dedup();
    (!methods.is_empty()).then_some(methods)
}

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(openapi_json);
}

#[get("/openapi.json")]
async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}

/// One incoming event, as `POST /api/v1/events` validates it: a `oneOf` per record kind, each
/// with the `data` fields that kind requires and the plausible range of every number. Built
/// from the same tables validation reads (`Kind::data_fields`, `COUNT_RANGES`).
pub struct EventIn;

impl utoipa::ToSchema for EventIn {}

impl utoipa::PartialSchema for EventIn {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use crate::domain::record::{count_range, FieldType, Kind, MAX_ID_LEN};
        use utoipa::openapi::schema::{
            KnownFormat, ObjectBuilder, OneOfBuilder, SchemaFormat, Type,
        };
        let text = |description: &str| {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(MAX_ID_LEN))
                .description(Some(description))
        };
        let location = || {
            ObjectBuilder::new()
                .description(Some(
                    "GCJ-02 longitude and latitude; the point must lie in Shenzhen",
                ))
                .property("lon", ObjectBuilder::new().schema_type(Type::Number))
                .property("lat", ObjectBuilder::new().schema_type(Type::Number))
                .required("lon")
                .required("lat")
        };
        let mut one_of = OneOfBuilder::new();
        for &kind in Kind::ALL {
            let levels: Vec<&str> = kind.levels().iter().map(|l| l.as_str()).collect();
            let mut data = ObjectBuilder::new().description(Some(
                "The kind's fields; other fields are kept with the record and not read",
            ));
            for &(name, ty) in kind.data_fields() {
                let field = match ty {
                    FieldType::Text => text("an id"),
                    FieldType::Flag => ObjectBuilder::new().schema_type(Type::Boolean),
                    FieldType::Count => {
                        let (lo, hi) = count_range(name);
                        ObjectBuilder::new()
                            .schema_type(Type::Integer)
                            .minimum(Some(lo as f64))
                            .maximum(Some(hi as f64))
                    }
                };
                data = data.property(name, field).required(name);
            }
            let event = ObjectBuilder::new()
                .title(Some(kind.as_str()))
                .property("id", text("unique per event; a re-sent id changes nothing"))
                .property(
                    "kind",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .enum_values(Some([kind.as_str()])),
                )
                .property(
                    "org",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .pattern(Some("^4403[0-9]{2}([0-9]{3}([0-9]{3})?)?$"))
                        .description(Some(format!(
                            "org code of a node of the tree (GET /api/v1/org), at level {}",
                            levels.join(" or ")
                        ))),
                )
                .property(
                    "at",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
                        .description(Some("RFC 3339 with offset; not more than a day ahead")),
                )
                .property("location", location())
                .property("data", data)
                .required("id")
                .required("kind")
                .required("org")
                .required("at")
                .required("data");
            one_of = one_of.item(event);
        }
        utoipa::openapi::schema::Schema::OneOf(one_of.build()).into()
    }
}
