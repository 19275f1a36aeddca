//! Opt-out, opt-in and help keywords: what a handset's whole message must
//! say, after folding, to count as one, and the replies Pigeon sends.

use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// What an inbound message asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Keyword {
    OptOut,
    OptIn,
    Help,
}

impl Keyword {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OptOut => "opt_out",
            Self::OptIn => "opt_in",
            Self::Help => "help",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::OptOut, Self::OptIn, Self::Help]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// An account's (or a pool's) keywords and replies. An empty reply sends
/// none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Keywords {
    pub opt_out: Vec<String>,
    pub opt_in: Vec<String>,
    pub help: Vec<String>,
    pub opt_out_reply: String,
    pub opt_in_reply: String,
    pub help_reply: String,
}

pub const DEFAULT_OPT_OUT: [&str; 17] = [
    "STOP",
    "STOPALL",
    "UNSUBSCRIBE",
    "CANCEL",
    "END",
    "QUIT",
    "OPTOUT",
    "REVOKE",
    "TD",
    "T",
    "退订",
    "取消",
    "HUY",
    "HỦY",
    "TU CHOI",
    "配信停止",
    "停止",
];
pub const DEFAULT_OPT_IN: [&str; 4] = ["START", "UNSTOP", "YES", "订阅"];
pub const DEFAULT_HELP: [&str; 3] = ["HELP", "INFO", "帮助"];

impl Keywords {
    /// The shipped lists, with replies that name the account.
    pub fn defaults(account_name: &str) -> Self {
        let list = |words: &[&str]| words.iter().map(|w| (*w).to_owned()).collect();
        Self {
            opt_out: list(&DEFAULT_OPT_OUT),
            opt_in: list(&DEFAULT_OPT_IN),
            help: list(&DEFAULT_HELP),
            opt_out_reply: format!(
                "{account_name}: you are unsubscribed and will receive no more messages. Reply START to resubscribe."
            ),
            opt_in_reply: format!(
                "{account_name}: you are subscribed again. Reply STOP to unsubscribe."
            ),
            help_reply: format!("{account_name}: reply STOP to unsubscribe, START to resubscribe."),
        }
    }

    /// What `body` asks for: the whole body must be one keyword, compared
    /// folded (see [`fold`]). Opt-out wins over the others where a word is
    /// in two lists, then opt-in.
    pub fn classify(&self, body: &str) -> Option<Keyword> {
        let folded = fold(body);
        if folded.is_empty() {
            return None;
        }
        let matches = |words: &[String]| words.iter().any(|w| fold(w) == folded);
        [
            (Keyword::OptOut, &self.opt_out),
            (Keyword::OptIn, &self.opt_in),
            (Keyword::Help, &self.help),
        ]
        .into_iter()
        .find(|(_, words)| matches(words))
        .map(|(keyword, _)| keyword)
    }

    pub fn reply(&self, keyword: Keyword) -> &str {
        match keyword {
            Keyword::OptOut => &self.opt_out_reply,
            Keyword::OptIn => &self.opt_in_reply,
            Keyword::Help => &self.help_reply,
        }
    }
}

/// A message as keywords are compared: compatibility-decomposed (full-width
/// `ＳＴＯＰ` is `STOP`), accents dropped (`HỦY` is `HUY`; `Đ` is `D`),
/// upper case, runs of spaces made one, and trimmed of spaces and trailing
/// punctuation (`Stop!`, `停止。`).
pub fn fold(text: &str) -> String {
    let folded: String = text
        .nfkd()
        .filter(|c| !is_combining_mark(*c))
        .map(|c| match c {
            'đ' | 'Đ' => 'D',
            c => c,
        })
        .flat_map(char::to_uppercase)
        .collect();
    let trimmed = folded
        .trim()
        .trim_end_matches(|c: char| c.is_whitespace() || is_punctuation(c));
    trimmed.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn is_punctuation(c: char) -> bool {
    c.is_ascii_punctuation() || matches!(c, '。' | '、' | '！' | '？' | '～' | '…' | '·')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_ignores_case_accents_width_spacing_and_trailing_punctuation() {
        assert_eq!(fold("  stop  "), "STOP");
        assert_eq!(fold("Stop!"), "STOP");
        assert_eq!(fold("STOP."), "STOP");
        assert_eq!(fold("ＳＴＯＰ"), "STOP");
        assert_eq!(fold("Hủy"), "HUY");
        assert_eq!(fold("hủy!!"), "HUY");
        assert_eq!(fold("từ   chối"), "TU CHOI");
        assert_eq!(fold("đăng ký"), "DANG KY");
        assert_eq!(fold("退订。"), "退订");
        assert_eq!(fold("配信停止！"), "配信停止");
        assert_eq!(fold("?!"), "");
    }

    #[test]
    fn the_whole_body_must_be_the_keyword() {
        let keywords = Keywords::defaults("Acme");
        for stop in [
            "STOP",
            "stop",
            "Stop.",
            "ＳＴＯＰ",
            "td",
            "退订",
            "HỦY",
            "huy",
            "Từ chối",
            "配信停止",
            "停止",
            "unsubscribe!",
        ] {
            assert_eq!(keywords.classify(stop), Some(Keyword::OptOut), "{stop}");
        }
        for start in ["START", "unstop", "Yes", "订阅"] {
            assert_eq!(keywords.classify(start), Some(Keyword::OptIn), "{start}");
        }
        for help in ["HELP", "info?", "帮助"] {
            assert_eq!(keywords.classify(help), Some(Keyword::Help), "{help}");
        }
        for other in [
            "please stop",
            "STOP it",
            "stopping",
            "",
            "   ",
            "YES please",
            "HUYỆN",
        ] {
            assert_eq!(keywords.classify(other), None, "{other}");
        }
    }

    #[test]
    fn custom_lists_replace_the_defaults() {
        let mut keywords = Keywords::defaults("Acme");
        keywords.opt_out = vec!["BASTA".into()];
        assert_eq!(keywords.classify("basta!"), Some(Keyword::OptOut));
        assert_eq!(keywords.classify("STOP"), None);
        assert!(keywords.opt_out_reply.starts_with("Acme:"));
    }
}
