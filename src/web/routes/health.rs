//! Liveness and readiness for process supervisors and load balancers, and metrics.

use std::time::Duration;

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::db::{self, Db};
use crate::domain::metrics::Metrics;
use crate::domain::portier::RelyingParty;
use crate::web::error_pages::PlainAnswer;

/// A plain-text answer that the error pages leave as it is.
fn plain(status: StatusCode, body: String) -> HttpResponse {
    let mut response = HttpResponse::build(status)
        .content_type("text/plain; charset=utf-8")
        .body(body);
    response.extensions_mut().insert(PlainAnswer);
    response
}

/// `GET /healthz`: the process is up and serving.
pub async fn healthz() -> HttpResponse {
    plain(StatusCode::OK, "ok\n".into())
}

/// `GET /readyz`: this instance can serve sign-ins: the database answers, and the broker's
/// discovery document is cached or can be fetched. 503 with the reasons otherwise.
pub async fn readyz(
    pool: web::Data<Db>,
    rp: web::Data<RelyingParty>,
    client: web::Data<awc::Client>,
) -> HttpResponse {
    // Both within 2 s, so that a slow broker cannot make the check itself time out.
    let broker = async {
        match tokio::time::timeout(Duration::from_secs(2), rp.broker_ready(&client)).await {
            Ok(ready) => ready.map_err(|e| e.to_string()),
            Err(_) => Err("no answer within 2 s".to_owned()),
        }
    };
    let (database, broker) = tokio::join!(db::ping(pool.get_ref()), broker);
    let mut problems = Vec::new();
    if let Err(e) = database {
        tracing::warn!(error = %e, "not ready: the database does not answer");
        problems.push("the database does not answer");
    }
    if let Err(e) = broker {
        tracing::warn!(error = %e, "not ready: the broker's discovery document cannot be had");
        problems.push("the broker's discovery document cannot be had");
    }
    if problems.is_empty() {
        plain(StatusCode::OK, "ready\n".into())
    } else {
        plain(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", problems.join("; ")),
        )
    }
}

/// `GET /metrics`: counters in the Prometheus text format. Open unless `METRICS_TOKEN` is set;
/// then only with `Authorization: Bearer <token>`.
pub async fn metrics(
    req: HttpRequest,
    metrics: web::Data<Metrics>,
    rp: web::Data<RelyingParty>,
    config: web::Data<Config>,
) -> HttpResponse {
    if let Some(token) = &config.metrics_token {
        let presented = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        // Compared as hashes, so the time taken says nothing about the token.
        let same = Sha256::digest(presented.as_bytes())
            == Sha256::digest(token.expose_secret().as_bytes());
        if !same {
            let mut response = plain(
                StatusCode::UNAUTHORIZED,
                "metrics need Authorization: Bearer <METRICS_TOKEN>\n".into(),
            );
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            return response;
        }
    }
    let mut response = plain(StatusCode::OK, metrics.render(rp.broker_fetches()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// Middleware: times every request for the latency histogram.
pub async fn time_requests(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    let started = std::time::Instant::now();
    let metrics = req.app_data::<actix_web::web::Data<Metrics>>().cloned();
    let res = next.call(req).await;
    if let Some(metrics) = metrics {
        metrics.request(started.elapsed());
    }
    res
}
