//! The OpenAPI 3.1 document served at `/openapi.json`, generated from the handler
//! annotations and the request/response types (utoipa), so it cannot drift from the code.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::error::{ErrorBody, ErrorDetail};
use super::plans::{PlanContext, PlanRequest, PlanResponse, Prediction, PredictionPoint};
use super::query::{
    ForecastPoint, ForecastResponse, MetricPoint, MetricsResponse, ServerInfo, ServersResponse,
    TrendResponse, WindowStats,
};
use super::stats::{CacheStats, Health, HealthComponent, IngestStats, StatsResponse};

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key from `mcpwatch apikey create` (mcpw_<id>_<secret>)",
                    ))
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "mcpwatch", description = "Capacity plans, forecasts and realtime figures of the services mcpwatch watches."),
    paths(
        super::plans::plans,
        super::query::servers,
        super::query::metrics,
        super::query::forecast,
        super::query::trend,
        super::stats::stats,
        super::ping,
    ),
    components(schemas(
        PlanRequest, PlanContext, PlanResponse, Prediction, PredictionPoint, ErrorBody,
        ErrorDetail, ServersResponse, ServerInfo, MetricsResponse, MetricPoint, ForecastResponse,
        ForecastPoint, TrendResponse, WindowStats, StatsResponse, Health, HealthComponent,
        CacheStats, IngestStats,
    )),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

/// `GET /openapi.json`.
pub async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
