//! `GET /v1/analytics/messages` (and `.csv`): delivery figures per hour or
//! day and per carrier, country, type, status or sender, read from the
//! rollups kept with every status change.

use bytes::Bytes;
use http_body_util::Full;
use hyper::StatusCode;
use hyper::header::{self, HeaderValue};
use serde_json::json;

use super::json::{query_params, unknown_parameter};
use super::{ApiError, App, Response, json_response};
use crate::auth::{Principal, Role};
use crate::metrics::analytics::{self, Row};
use crate::store::rollups::{self, GroupBy, RollupQuery};
use crate::time::{now_ms, parse_rfc3339, to_rfc3339};

const HOUR_MS: i64 = 3_600_000;
/// Longest span of one query: hourly a month, daily about a year.
const MAX_HOURLY_SPAN_MS: i64 = 31 * 24 * HOUR_MS;
const MAX_DAILY_SPAN_MS: i64 = 400 * 24 * HOUR_MS;

pub enum Format {
    Json,
    Csv,
}

pub async fn messages(
    app: &App,
    principal: &Principal,
    query: Option<&str>,
    format: Format,
) -> Result<Response, ApiError> {
    let query = parse(principal, query)?;
    let carriers = app.carriers.clone();
    let (counts, latencies) = {
        let query = query.clone();
        app.store
            .read(move |conn| {
                Ok((
                    rollups::status_counts(conn, &query)?,
                    rollups::latency_counts(conn, &query)?,
                ))
            })
            .await?
    };
    let rows = analytics::rows(&counts, &latencies, |carrier, country| {
        let country = (!country.is_empty()).then_some(country);
        carriers.get(carrier)?.config.price_for(country)
    });
    Ok(match format {
        Format::Json => {
            let data: Vec<serde_json::Value> = rows.iter().map(row_json).collect();
            json_response(StatusCode::OK, &json!({ "data": data }))
        }
        Format::Csv => csv_response(&rows)?,
    })
}

fn parse(principal: &Principal, query: Option<&str>) -> Result<RollupQuery, ApiError> {
    let operator_admin = principal.operator && principal.role == Role::Admin;
    let mut from = None;
    let mut to = None;
    let mut bucket_hours = 1;
    let mut group_by = GroupBy::Carrier;
    let mut account = (!operator_admin).then(|| principal.account_id.clone());
    let time = |field: &'static str, value: &str| {
        parse_rfc3339(value).ok_or_else(|| {
            ApiError::invalid(
                "invalid_time",
                field,
                format!("`{field}` must be an RFC 3339 time such as 2026-12-01T00:00:00Z"),
            )
        })
    };
    for (key, value) in query_params(query) {
        match key.as_str() {
            "from" => from = Some(time("from", &value)?),
            "to" => to = Some(time("to", &value)?),
            "interval" => {
                bucket_hours = match value.as_str() {
                    "hour" => 1,
                    "day" => 24,
                    _ => {
                        return Err(ApiError::invalid(
                            "invalid_interval",
                            "interval",
                            "`interval` must be `hour` or `day`",
                        ));
                    }
                }
            }
            "group_by" => {
                group_by = match value.as_str() {
                    "carrier" => GroupBy::Carrier,
                    "country" => GroupBy::Country,
                    "type" => GroupBy::Type,
                    "status" => GroupBy::Status,
                    "sender" => GroupBy::Sender,
                    _ => {
                        return Err(ApiError::invalid(
                            "invalid_group_by",
                            "group_by",
                            "`group_by` must be carrier, country, type, status or sender",
                        ));
                    }
                }
            }
            // Another account's figures are not found, as its messages are not.
            "account" if operator_admin || value == principal.account_id => {
                account = Some(value);
            }
            "account" => return Err(ApiError::not_found("account")),
            other => return Err(unknown_parameter(other)),
        }
    }
    let to = to.unwrap_or_else(now_ms);
    let from = from.unwrap_or(to - 24 * HOUR_MS);
    if from >= to {
        return Err(ApiError::invalid(
            "invalid_time",
            "from",
            "`from` must be before `to`",
        ));
    }
    let max_span = if bucket_hours == 1 {
        MAX_HOURLY_SPAN_MS
    } else {
        MAX_DAILY_SPAN_MS
    };
    if to - from > max_span {
        return Err(ApiError::invalid(
            "invalid_time",
            "from",
            format!(
                "at most {} days at a time with this interval",
                max_span / (24 * HOUR_MS)
            ),
        ));
    }
    Ok(RollupQuery {
        account_id: account,
        from,
        to,
        bucket_hours,
        group_by,
    })
}

fn row_json(row: &Row) -> serde_json::Value {
    let mut value = serde_json::to_value(row).unwrap_or_default();
    value["start"] = json!(to_rfc3339(row.bucket_start));
    value
}

const CSV_HEADER: [&str; 15] = [
    "start",
    "group",
    "accepted",
    "sent",
    "delivered",
    "undelivered",
    "failed",
    "rejected",
    "expired",
    "canceled",
    "segments",
    "delivery_rate",
    "dlr_latency_p50_ms",
    "dlr_latency_p95_ms",
    "cost",
];

fn csv_response(rows: &[Row]) -> Result<Response, ApiError> {
    let internal = |err: csv::Error| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("writing CSV failed: {err}"),
        )
    };
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(CSV_HEADER).map_err(internal)?;
    let opt = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
    for row in rows {
        writer
            .write_record([
                to_rfc3339(row.bucket_start),
                row.group.clone(),
                row.accepted.to_string(),
                row.sent.to_string(),
                row.delivered.to_string(),
                row.undelivered.to_string(),
                row.failed.to_string(),
                row.rejected.to_string(),
                row.expired.to_string(),
                row.canceled.to_string(),
                row.segments.to_string(),
                opt(row.delivery_rate),
                opt(row.dlr_latency_p50_ms),
                opt(row.dlr_latency_p95_ms),
                row.cost.to_string(),
            ])
            .map_err(internal)?;
    }
    let body = writer
        .into_inner()
        .map_err(|err| internal(err.into_error().into()))?;
    let mut response = hyper::Response::new(Full::new(Bytes::from(body)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    response.headers_mut().insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"pigeon-messages.csv\""),
    );
    Ok(response)
}
