//! Smart encoding: characters that force a whole body into UCS-2 for no
//! reason a reader would notice (curly quotes, long dashes, special spaces,
//! invisible marks pasted from word processors) replaced by their GSM-7
//! look-alikes, as Twilio's `SmartEncoded` does. The replacement is only
//! made when it lets the body travel as GSM-7: a body that needs UCS-2 for
//! other characters (Vietnamese, Chinese, emoji) keeps its typography,
//! since replacing would save nothing.

use std::borrow::Cow;

use super::{Encoding, analyze, gsm7};

/// Each look-alike and what it becomes ("" drops it). The docs print this
/// table (docs/twilio.md); keep them in step.
pub const REPLACEMENTS: &[(char, &str)] = &[
    ('\u{00AB}', "\""),  // «
    ('\u{00BB}', "\""),  // »
    ('\u{201C}', "\""),  // “
    ('\u{201D}', "\""),  // ”
    ('\u{201E}', "\""),  // „
    ('\u{201F}', "\""),  // ‟
    ('\u{2033}', "\""),  // ″
    ('\u{2036}', "\""),  // ‶
    ('\u{02BA}', "\""),  // ʺ
    ('\u{FF02}', "\""),  // ＂
    ('\u{2018}', "'"),   // ‘
    ('\u{2019}', "'"),   // ’
    ('\u{201A}', "'"),   // ‚
    ('\u{201B}', "'"),   // ‛
    ('\u{2032}', "'"),   // ′
    ('\u{2035}', "'"),   // ‵
    ('\u{2039}', "'"),   // ‹
    ('\u{203A}', "'"),   // ›
    ('\u{02B9}', "'"),   // ʹ
    ('\u{02BB}', "'"),   // ʻ
    ('\u{02BC}', "'"),   // ʼ
    ('\u{FF07}', "'"),   // ＇
    ('\u{2010}', "-"),   // ‐ hyphen
    ('\u{2011}', "-"),   // ‑ non-breaking hyphen
    ('\u{2012}', "-"),   // ‒ figure dash
    ('\u{2013}', "-"),   // – en dash
    ('\u{2014}', "-"),   // — em dash
    ('\u{2015}', "-"),   // ― horizontal bar
    ('\u{2212}', "-"),   // − minus sign
    ('\u{FE63}', "-"),   // ﹣
    ('\u{FF0D}', "-"),   // －
    ('\u{2026}', "..."), // …
    ('\u{2022}', "-"),   // • bullet
    ('\u{2043}', "-"),   // ⁃ hyphen bullet
    ('\u{2044}', "/"),   // ⁄ fraction slash
    ('\u{2215}', "/"),   // ∕ division slash
    ('\u{FF0F}', "/"),   // ／
    ('\u{02C6}', "^"),   // ˆ
    ('\u{02DC}', "~"),   // ˜
    ('\u{FF5E}', "~"),   // ～
    ('\u{00A0}', " "),   // no-break space
    ('\u{2000}', " "),   // en quad
    ('\u{2001}', " "),   // em quad
    ('\u{2002}', " "),   // en space
    ('\u{2003}', " "),   // em space
    ('\u{2004}', " "),   // three-per-em space
    ('\u{2005}', " "),   // four-per-em space
    ('\u{2006}', " "),   // six-per-em space
    ('\u{2007}', " "),   // figure space
    ('\u{2008}', " "),   // punctuation space
    ('\u{2009}', " "),   // thin space
    ('\u{200A}', " "),   // hair space
    ('\u{202F}', " "),   // narrow no-break space
    ('\u{205F}', " "),   // medium mathematical space
    ('\u{3000}', " "),   // ideographic space
    ('\u{00AD}', ""),    // soft hyphen
    ('\u{200B}', ""),    // zero width space
    ('\u{200C}', ""),    // zero width non-joiner
    ('\u{200D}', ""),    // zero width joiner
    ('\u{2060}', ""),    // word joiner
    ('\u{FEFF}', ""),    // zero width no-break space (BOM)
];

fn replacement(c: char) -> Option<&'static str> {
    REPLACEMENTS
        .iter()
        .find(|(from, _)| *from == c)
        .map(|(_, to)| *to)
}

/// `text` with its look-alikes replaced, when that makes it GSM-7; else
/// `text` unchanged.
///
/// ```
/// use pigeon::encoding::smart_encode;
///
/// assert_eq!(smart_encode("It’s 10–12 “today”…"), "It's 10-12 \"today\"...");
/// // Vietnamese needs UCS-2 anyway: nothing is gained, nothing changes.
/// assert_eq!(smart_encode("Mã của bạn – 1234"), "Mã của bạn – 1234");
/// ```
pub fn smart_encode(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| replacement(c).is_some()) {
        return Cow::Borrowed(text);
    }
    // Every other character must be GSM-7 already for the swap to pay.
    let fits = text
        .chars()
        .all(|c| replacement(c).is_some() || gsm7::lookup(c).is_some());
    if !fits {
        return Cow::Borrowed(text);
    }
    let replaced: String = text
        .chars()
        .map(|c| match replacement(c) {
            Some(to) => Cow::Borrowed(to),
            None => Cow::Owned(c.to_string()),
        })
        .collect();
    debug_assert_eq!(analyze(&replaced).encoding, Encoding::Gsm7);
    Cow::Owned(replaced)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_replacement_is_gsm7() {
        for (from, to) in REPLACEMENTS {
            assert!(gsm7::lookup(*from).is_none(), "{from:?} is GSM-7 already");
            assert!(to.chars().all(|c| gsm7::lookup(c).is_some()), "{to:?}");
        }
    }

    #[test]
    fn a_body_made_gsm7_costs_less() {
        let pasted = "Your code is 123456\u{00A0}\u{2014} don\u{2019}t share it";
        assert_eq!(analyze(pasted).encoding, Encoding::Ucs2);
        let smart = smart_encode(pasted);
        assert_eq!(smart, "Your code is 123456 - don't share it");
        assert_eq!(analyze(&smart).encoding, Encoding::Gsm7);
    }

    #[test]
    fn invisible_marks_are_dropped() {
        assert_eq!(smart_encode("a\u{200B}b\u{FEFF}c\u{00AD}d"), "abcd");
    }

    #[test]
    fn unchanged_when_nothing_would_be_gained() {
        assert!(matches!(smart_encode("plain text"), Cow::Borrowed(_)));
        assert!(matches!(smart_encode("验证码 “1234”"), Cow::Borrowed(_)));
        assert!(matches!(smart_encode("emoji 🎉 – yes"), Cow::Borrowed(_)));
    }
}
