//! Twilio's webhook form: `X-Twilio-Signature` exactly as Twilio computes
//! it (so Twilio's own `RequestValidator` accepts Pigeon's callbacks), and
//! the TwiML an inbound webhook may answer with.

use base64::Engine;
use hmac::{Hmac, Mac};
use quick_xml::events::Event;
use sha1::Sha1;

pub const SIGNATURE_HEADER: &str = "x-twilio-signature";

/// Base64 of HMAC-SHA1, keyed with the auth token, over the full URL
/// followed by each POST parameter's name and value, sorted by name.
pub fn signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(auth_token.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TwimlError {
    #[error("the answer is not TwiML: {0}")]
    Malformed(String),
    #[error("the TwiML's root is <{0}>, not <Response>")]
    NotAResponse(String),
}

/// The texts of a TwiML answer's `<Message>` verbs, in order: the text
/// inside the verb, or inside its `<Body>`. Other verbs (which only
/// Twilio's voice and messaging engines run) are left out. An empty answer
/// asks for nothing.
pub fn replies(answer: &str) -> Result<Vec<String>, TwimlError> {
    if answer.trim().is_empty() {
        return Ok(Vec::new());
    }
    let mut reader = quick_xml::Reader::from_str(answer);
    let mut replies = Vec::new();
    // Element names from the root down to where the reader is.
    let mut open: Vec<String> = Vec::new();
    let mut text: Option<String> = None;
    let malformed = |err: &dyn std::fmt::Display| TwimlError::Malformed(err.to_string());
    loop {
        match reader.read_event().map_err(|e| malformed(&e))? {
            Event::Start(tag) => {
                let name = String::from_utf8_lossy(tag.local_name().as_ref()).into_owned();
                if open.is_empty() && name != "Response" {
                    return Err(TwimlError::NotAResponse(name));
                }
                if open.len() == 1 && name == "Message" {
                    text = Some(String::new());
                }
                open.push(name);
            }
            Event::Empty(tag) => {
                let name = String::from_utf8_lossy(tag.local_name().as_ref()).into_owned();
                if open.is_empty() && name != "Response" {
                    return Err(TwimlError::NotAResponse(name));
                }
            }
            Event::End(_) => {
                if open.pop().as_deref() == Some("Message")
                    && open.len() == 1
                    && let Some(body) = text.take()
                {
                    let body = body.trim().to_owned();
                    if !body.is_empty() {
                        replies.push(body);
                    }
                }
            }
            Event::Text(chunk) if in_message_text(&open) => {
                let chunk = chunk.xml10_content().map_err(|e| malformed(&e))?;
                text.get_or_insert_default().push_str(&chunk);
            }
            Event::CData(chunk) if in_message_text(&open) => {
                let chunk = chunk.decode().map_err(|e| malformed(&e))?;
                text.get_or_insert_default().push_str(&chunk);
            }
            Event::GeneralRef(reference) if in_message_text(&open) => {
                let resolved = match reference.resolve_char_ref().map_err(|e| malformed(&e))? {
                    Some(c) => c.to_string(),
                    None => {
                        let name = reference.decode().map_err(|e| malformed(&e))?;
                        quick_xml::escape::unescape(&format!("&{name};"))
                            .map_err(|e| malformed(&e))?
                            .into_owned()
                    }
                };
                text.get_or_insert_default().push_str(&resolved);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !open.is_empty() {
        return Err(TwimlError::Malformed(format!(
            "<{}> is not closed",
            open.join("> <")
        )));
    }
    Ok(replies)
}

/// Inside `<Response><Message>` or `<Response><Message><Body>`.
fn in_message_text(open: &[String]) -> bool {
    match open {
        [_, message] => message == "Message",
        [_, message, body] => message == "Message" && body == "Body",
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_twilios_documented_example() {
        // The example of Twilio's "Validating requests" page.
        let params: Vec<(String, String)> = [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(
            signature(
                "12345",
                "https://mycompany.com/myapp.php?foo=1&bar=2",
                &params
            ),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        );
    }

    #[test]
    fn message_verbs_become_replies() {
        let twiml = r#"<?xml version="1.0" encoding="UTF-8"?>
            <Response>
              <Message>Thanks &amp; welcome!</Message>
              <Message><Body>Second &#8212; one</Body></Message>
              <Redirect>https://example.com/next</Redirect>
              <Message/>
            </Response>"#;
        assert_eq!(
            replies(twiml).unwrap(),
            ["Thanks & welcome!", "Second \u{2014} one"]
        );
    }

    #[test]
    fn empty_and_foreign_answers() {
        assert_eq!(replies("").unwrap(), Vec::<String>::new());
        assert_eq!(replies("<Response/>").unwrap(), Vec::<String>::new());
        assert_eq!(
            replies("<html><body>ok</body></html>"),
            Err(TwimlError::NotAResponse("html".into()))
        );
        assert!(matches!(
            replies("<Response><Message>open"),
            Err(TwimlError::Malformed(_))
        ));
    }
}
