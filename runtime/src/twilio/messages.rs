//! `Messages.json` and `Messages/{Sid}.json`: send, fetch, list, cancel
//! and redact, in Twilio's terms. Message SIDs are Pigeon's message ids in
//! Twilio's spelling (`SM` + 32 hex, see `model::twilio::sid`), so either
//! API finds a message the other sent.

use hyper::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::error::TwilioError;
use super::form::Params;
use crate::api::{App, Response, json_response};
use crate::auth::Principal;
use crate::model::twilio::{self, API_VERSION};
use crate::model::{Origin, Status};
use crate::store::messages::{self as stored, CancelOutcome, ListFilter};
use crate::store::{Idempotency, MessageRecord};
use crate::submit::Request;

/// Twilio's default and largest page.
const DEFAULT_PAGE_SIZE: usize = 50;
const MAX_PAGE_SIZE: usize = 1000;
/// The idempotency header Twilio's platform honours.
const IDEMPOTENCY_HEADER: &str = "i-twilio-idempotency-token";

/// One request's account and caller.
pub(super) struct Door<'a> {
    pub app: &'a App,
    pub account_sid: &'a str,
    pub principal: &'a Principal,
}

impl Door<'_> {
    /// `POST Messages.json`: `201` with the message once it is durable.
    pub async fn create(
        &self,
        params: Params,
        headers: &hyper::HeaderMap,
    ) -> Result<Response, TwilioError> {
        if params.has("MediaUrl") || params.has("ContentSid") {
            return Err(TwilioError::invalid(
                21619,
                "Pigeon sends SMS only: MediaUrl and ContentSid are not supported",
            ));
        }
        let to = params
            .text("To")
            .ok_or_else(|| TwilioError::invalid(21604, "A 'To' phone number is required."))?;
        let body = params
            .get("Body")
            .ok_or_else(|| TwilioError::invalid(21602, "Message body is required."))?
            .to_owned();
        let from = params.text("From");
        let pool = match (&from, params.text("MessagingServiceSid")) {
            // With both, Twilio sends from `From`.
            (Some(_), _) | (None, None) => None,
            (None, Some(sid)) => Some(twilio::id(&sid, "MG", "pool").unwrap_or(sid)),
        };
        if from.is_none() && pool.is_none() {
            return Err(TwilioError::invalid(
                21603,
                "A 'From' or 'MessagingServiceSid' parameter is required to send a message",
            ));
        }
        let send_at = match (params.text("SendAt"), params.text("ScheduleType")) {
            (None, None) => None,
            (Some(at), Some(kind)) if kind == "fixed" => {
                Some(crate::time::parse_rfc3339(&at).ok_or_else(|| {
                    TwilioError::invalid(35102, "SendAt must be an ISO 8601 time")
                })?)
            }
            (Some(_), _) => {
                return Err(TwilioError::invalid(
                    35111,
                    "SendAt needs ScheduleType=fixed",
                ));
            }
            (None, Some(_)) => {
                return Err(TwilioError::invalid(35101, "ScheduleType needs SendAt"));
            }
        };
        let validity_secs = params.number("ValidityPeriod", 21623)?;
        let idempotency = headers
            .get(IDEMPOTENCY_HEADER)
            .and_then(|v| v.to_str().ok())
            .filter(|key| !key.is_empty() && key.len() <= 255)
            .map(|key| Idempotency {
                key: format!("twilio:{key}"),
                request_digest: Sha256::digest(params.canonical().as_bytes()).into(),
            });
        let request = Request {
            to,
            body,
            from,
            pool,
            callback_url: params.text("StatusCallback"),
            send_at,
            validity_secs,
            idempotency,
            origin: Origin::Twilio,
            smart_encoding: params.boolean("SmartEncoded")?.unwrap_or(false),
            ..Request::default()
        };
        let accepted = self
            .app
            .submit
            .submit(self.principal, request)
            .await
            .map_err(TwilioError::from_submit)?;
        Ok(json_response(
            StatusCode::CREATED,
            &self.resource(&accepted.message),
        ))
    }

    /// `GET Messages/{Sid}.json`.
    pub async fn fetch(&self, sid: &str) -> Result<Response, TwilioError> {
        let message = self.find(sid).await?;
        Ok(json_response(StatusCode::OK, &self.resource(&message)))
    }

    /// `POST Messages/{Sid}.json`: `Status=canceled` cancels a scheduled
    /// message; `Body=` (empty) redacts a finished one's body.
    pub async fn update(&self, sid: &str, params: Params) -> Result<Response, TwilioError> {
        let message = self.find(sid).await?;
        let (account, id) = (self.principal.account_id.clone(), message.id.clone());
        let now = crate::time::now_ms();
        let store_error = |err: crate::store::StoreError| TwilioError::from_api(err.into());
        if let Some(status) = params.get("Status") {
            if status != "canceled" {
                return Err(TwilioError::invalid(
                    20001,
                    "Status may only be set to canceled",
                ));
            }
            let outcome = self
                .app
                .store
                .write(move |conn| stored::cancel_message(conn, &account, &id, now))
                .await
                .map_err(store_error)?;
            return match outcome {
                CancelOutcome::Canceled(message) => {
                    Ok(json_response(StatusCode::OK, &self.resource(&message)))
                }
                CancelOutcome::NotFound => Err(TwilioError::not_found(&self.uri(sid))),
                CancelOutcome::NotCancelable(status) => Err(TwilioError::invalid(
                    30409,
                    format!("A message that is {status} can no longer be canceled"),
                )),
            };
        }
        match params.get("Body") {
            Some("") => {}
            Some(_) => {
                return Err(TwilioError::invalid(
                    21602,
                    "Body may only be set to the empty string, to redact the message",
                ));
            }
            None => {
                return Err(TwilioError::invalid(
                    20001,
                    "Give Status=canceled or Body= (empty)",
                ));
            }
        }
        use crate::store::retention::{RedactOutcome, redact_message};
        let outcome = self
            .app
            .store
            .write(move |conn| redact_message(conn, &account, &id, now))
            .await
            .map_err(store_error)?;
        match outcome {
            RedactOutcome::Redacted(message) => {
                Ok(json_response(StatusCode::OK, &self.resource(&message)))
            }
            RedactOutcome::NotFound => Err(TwilioError::not_found(&self.uri(sid))),
            RedactOutcome::NotFinal(status) => Err(TwilioError::invalid(
                20009,
                format!("Cannot redact a message that is {status}: wait until it is sent"),
            )),
        }
    }

    /// `GET Messages.json`: newest first, with Twilio's paging. `DateSent`
    /// filters on the day (or time) the message was created.
    pub async fn list(&self, query: Option<&str>) -> Result<Response, TwilioError> {
        let params = Params::parse(query.unwrap_or_default().as_bytes());
        let page_size = match params.number("PageSize", 20001)? {
            None => DEFAULT_PAGE_SIZE,
            Some(n) if (1..=MAX_PAGE_SIZE as u64).contains(&n) => n as usize,
            Some(_) => {
                return Err(TwilioError::invalid(
                    20001,
                    format!("PageSize must be 1 to {MAX_PAGE_SIZE}"),
                ));
            }
        };
        let page = params.number("Page", 20001)?.unwrap_or(0);
        let mut filter = ListFilter {
            limit: page_size,
            ..ListFilter::default()
        };
        if let Some(to) = params.text("To") {
            filter.to = Some(
                crate::numbers::normalize(&to, None)
                    .map_err(|_| {
                        TwilioError::invalid(
                            21211,
                            format!("The 'To' number {to} is not a valid phone number."),
                        )
                    })?
                    .e164,
            );
        }
        filter.from = params.text("From");
        if let Some(day) = params.text("DateSent") {
            let (start, end) = day_bounds(&day)?;
            filter.since = Some(start);
            filter.until = Some(end);
        }
        if let Some(after) = params.text("DateSent>") {
            filter.since = Some(day_bounds(&after)?.0);
        }
        if let Some(before) = params.text("DateSent<") {
            filter.until = Some(day_bounds(&before)?.1);
        }
        if let Some(token) = params.text("PageToken") {
            let id = token
                .strip_prefix("PA")
                .filter(|id| id.starts_with("msg_"))
                .ok_or_else(|| TwilioError::invalid(20001, "Unknown PageToken"))?;
            filter.before_id = Some(id.to_owned());
        }
        let account = self.principal.account_id.clone();
        let listed = filter.clone();
        let messages = self
            .app
            .store
            .read(move |conn| stored::list_messages(conn, &account, &listed))
            .await
            .map_err(|err| TwilioError::from_api(err.into()))?;
        let base = format!("/{API_VERSION}/Accounts/{}/Messages.json", self.account_sid);
        // The filters as given, for the page URIs.
        let filters: Vec<(&str, &str)> = ["To", "From", "DateSent", "DateSent>", "DateSent<"]
            .into_iter()
            .filter_map(|name| params.get(name).map(|value| (name, value)))
            .collect();
        let page_uri = |page: u64, token: Option<&str>| {
            let mut query = form_urlencoded::Serializer::new(String::new());
            query.extend_pairs(filters.iter().copied());
            query.append_pair("PageSize", &page_size.to_string());
            query.append_pair("Page", &page.to_string());
            if let Some(token) = token {
                query.append_pair("PageToken", token);
            }
            format!("{base}?{}", query.finish())
        };
        let next_page_uri = (messages.len() == page_size)
            .then(|| messages.last())
            .flatten()
            .map(|last| page_uri(page + 1, Some(&format!("PA{}", last.id))));
        let start = page as usize * page_size;
        let resources: Vec<Value> = messages.iter().map(|m| self.resource(m)).collect();
        Ok(json_response(
            StatusCode::OK,
            &json!({
                "messages": resources,
                "page": page,
                "page_size": page_size,
                "start": start,
                "end": start + messages.len().saturating_sub(1),
                "uri": page_uri(page, params.get("PageToken")),
                "first_page_uri": page_uri(0, None),
                "next_page_uri": next_page_uri,
                "previous_page_uri": Value::Null,
            }),
        ))
    }

    /// The account's message a SID names (or its Pigeon id).
    async fn find(&self, sid: &str) -> Result<MessageRecord, TwilioError> {
        let not_found = || TwilioError::not_found(&self.uri(sid));
        let id = twilio::id(sid, "SM", "msg")
            .or_else(|| sid.starts_with("msg_").then(|| sid.to_owned()))
            .ok_or_else(not_found)?;
        let account = self.principal.account_id.clone();
        self.app
            .store
            .read(move |conn| stored::get_message(conn, &account, &id))
            .await
            .map_err(|err| TwilioError::from_api(err.into()))?
            .ok_or_else(not_found)
    }

    fn uri(&self, sid: &str) -> String {
        format!(
            "/{API_VERSION}/Accounts/{}/Messages/{sid}.json",
            self.account_sid
        )
    }

    /// Twilio's message resource.
    fn resource(&self, m: &MessageRecord) -> Value {
        let sid = twilio::sid("SM", &m.id);
        let uri = self.uri(&sid);
        let media = format!(
            "/{API_VERSION}/Accounts/{}/Messages/{sid}/Media.json",
            self.account_sid
        );
        let sent = matches!(
            m.status,
            Status::Sent | Status::Delivered | Status::Undelivered
        );
        let body = if m.redacted_at.is_some() {
            ""
        } else {
            m.body.as_str()
        };
        let error_code = twilio::error_code(m.status);
        json!({
            "sid": sid,
            "account_sid": self.account_sid,
            "messaging_service_sid": m.sender.as_ref().and_then(|s| s.pool_id.as_ref()).map(|p| twilio::sid("MG", p)),
            "to": m.to,
            "from": m.from,
            "body": body,
            "status": twilio::status(m.status),
            "num_segments": m.segments.to_string(),
            "num_media": "0",
            "direction": if m.auto_reply.is_some() { "outbound-reply" } else { "outbound-api" },
            "date_created": rfc2822(m.created_at),
            "date_updated": rfc2822(m.updated_at),
            "date_sent": sent.then(|| rfc2822(m.updated_at)),
            "error_code": error_code,
            "error_message": error_code.map(|_| format!("The message is {}", m.status.as_str())),
            "price": Value::Null,
            "price_unit": "USD",
            "api_version": API_VERSION,
            "uri": uri,
            "subresource_uris": {"media": media},
        })
    }
}

/// Times as Twilio writes them: `Thu, 03 Dec 2026 08:44:23 +0000`.
fn rfc2822(ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%a, %d %b %Y %H:%M:%S +0000")
        .to_string()
}

/// A `DateSent` value's span in Unix ms: a day (`2026-12-03`, the whole
/// UTC day) or an instant (ISO 8601, the instant alone).
fn day_bounds(text: &str) -> Result<(i64, i64), TwilioError> {
    if let Ok(day) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let start = day
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc().timestamp_millis())
            .unwrap_or_default();
        return Ok((start, start + 86_400_000));
    }
    crate::time::parse_rfc3339(text)
        .map(|at| (at, at + 1))
        .ok_or_else(|| {
            TwilioError::invalid(
                20001,
                "DateSent must be a date (YYYY-MM-DD) or an ISO 8601 time",
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_written_as_twilio_writes_them() {
        assert_eq!(
            rfc2822(1_796_287_463_000),
            "Thu, 03 Dec 2026 08:44:23 +0000"
        );
    }

    #[test]
    fn date_sent_takes_days_and_instants() {
        let (start, end) = day_bounds("2026-12-03").unwrap();
        assert_eq!(end - start, 86_400_000);
        assert_eq!(rfc2822(start), "Thu, 03 Dec 2026 00:00:00 +0000");
        assert_eq!(
            day_bounds("2026-12-03T08:44:23Z").unwrap().0,
            1_796_287_463_000
        );
        assert!(day_bounds("yesterday").is_err());
    }
}
