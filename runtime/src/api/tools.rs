//! `/v1/encoding/analyze`: what a body costs before it is sent.

use super::json::Body;
use hyper::StatusCode;
use serde_json::json;

use super::error::ApiError;
use super::json::{Fields, parse_object, read_body};
use super::{Response, json_response};
use crate::encoding;

pub async fn analyze(body: Body) -> Result<Response, ApiError> {
    let mut fields = Fields::new(parse_object(&read_body(body)?)?);
    let text = fields.required_str("body")?;
    let smart_encoding = fields.optional_bool("smart_encoding")?.unwrap_or(false);
    fields.finish()?;
    let text = if smart_encoding {
        encoding::smart_encode(&text).into_owned()
    } else {
        text
    };
    let analysis = encoding::analyze(&text);
    let non_gsm: Vec<String> = analysis.non_gsm.iter().map(|c| c.to_string()).collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "encoding": analysis.encoding.as_str(),
            "segments": analysis.segments,
            "units": analysis.units,
            "characters": analysis.characters,
            "non_gsm": non_gsm,
            "body": text,
        }),
    ))
}
