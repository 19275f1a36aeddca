//! Screening a message before it is stored: the recipient's opt-out, the
//! account's marketing consent rule, and the content policy.

use super::validate::MAX_SEGMENTS;
use super::{SubmitError, Submitter};
use crate::encoding;
use crate::model::MessageType;
use crate::policies::ContentDecision;
use crate::store::MessageRecord;
use crate::time::now_ms;

/// A message after the content policy: allowed (maybe rewritten), or
/// refused with the policy's code and reason.
pub enum Screened {
    Allowed(MessageRecord),
    Refused(MessageRecord, SubmitError),
}

/// Checks the recipient's opt-out and, for marketing where the account
/// requires it, consent; then runs the content policy, if there is one,
/// and records its digest.
pub(super) fn screen(submitter: &Submitter, mut message: MessageRecord) -> Screened {
    let pool = message.sender.as_ref().and_then(|s| s.pool_id.as_deref());
    let consent = submitter
        .compliance
        .view(&message.account_id, &message.to, pool);
    if consent.opted_out {
        let error = SubmitError::invalid(
            "recipient_opted_out",
            "to",
            format!(
                "{} opted out of this account's messages (see /v1/suppressions)",
                message.to
            ),
        );
        return Screened::Refused(message, error);
    }
    if message.message_type == MessageType::Marketing
        && !consent.marketing_consent
        && submitter.compliance.consent_required(&message.account_id)
    {
        let error = SubmitError::invalid(
            "no_consent",
            "to",
            format!(
                "this account sends marketing only with consent on record, and {} has none (see /v1/consents)",
                message.to
            ),
        );
        return Screened::Refused(message, error);
    }
    let Some(policies) = &submitter.policies else {
        return Screened::Allowed(message);
    };
    let (decision, digest) =
        policies.check_content(&crate::dispatch::message_view(&message, consent), now_ms());
    message.policy_digest = Some(digest.to_string());
    let refuse = |code: String, reason: String| SubmitError::invalid(code, "body", reason);
    match decision {
        ContentDecision::Allow => Screened::Allowed(message),
        ContentDecision::Reject { code, reason } => {
            Screened::Refused(message, refuse(code, reason))
        }
        ContentDecision::Rewrite { text } => {
            let analysis = encoding::analyze(&text);
            if text.is_empty() || analysis.segments > MAX_SEGMENTS {
                let reason = format!(
                    "the content policy rewrote the body to {} parts; at most {MAX_SEGMENTS} are allowed",
                    analysis.segments
                );
                return Screened::Refused(message, refuse("policy_error".into(), reason));
            }
            message.body = text;
            message.encoding = analysis.encoding;
            message.segments = analysis.segments as i64;
            Screened::Allowed(message)
        }
    }
}
