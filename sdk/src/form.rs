//! `application/x-www-form-urlencoded` bodies and query strings.

/// Encodes pairs as `a=1&b=x+y`: unreserved characters (`A-Z a-z 0-9 - . _ ~`)
/// are kept, spaces become `+`, everything else is percent-encoded as UTF-8.
pub fn encode<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        encode_component_into(k.as_ref(), &mut out);
        out.push('=');
        encode_component_into(v.as_ref(), &mut out);
    }
    out
}

/// Encodes one key or value (as in [`encode`]).
pub fn encode_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    encode_component_into(text, &mut out);
    out
}

fn encode_component_into(text: &str, out: &mut String) {
    for &b in text.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => {
                out.push('%');
                out.push_str(&crate::encoding::hex_encode(&[b]).to_ascii_uppercase());
            }
        }
    }
}

/// Decodes one key or value: `+` is a space, `%XX` a byte; a malformed
/// escape is kept as it is, and invalid UTF-8 is replaced.
pub fn decode_component(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match bytes
                .get(i + 1..i + 3)
                .and_then(|h| crate::encoding::hex_decode(std::str::from_utf8(h).ok()?))
            {
                Some(byte) => {
                    out.push(byte[0]);
                    i += 2;
                }
                None => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Decoded parameters in their original order; a name may repeat.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// Parses `a=1&b=x+y` (a leading `?` is ignored; `a` alone is `a=""`).
    pub fn parse(text: &str) -> Self {
        let text = text.strip_prefix('?').unwrap_or(text);
        Params(
            text.split('&')
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    (decode_component(k), decode_component(v))
                })
                .collect(),
        )
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// All pairs, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Appends another set of parameters.
    pub fn extend(&mut self, other: Params) {
        self.0.extend(other.0);
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Encodes the pairs again (see [`encode`]).
    pub fn encode(&self) -> String {
        encode(&self.0)
    }

    /// The pairs.
    pub fn into_vec(self) -> Vec<(String, String)> {
        self.0
    }
}

impl FromIterator<(String, String)> for Params {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Self {
        Params(iter.into_iter().collect())
    }
}

/// Parses a query string (same as [`Params::parse`]).
pub fn parse_query(query: &str) -> Params {
    Params::parse(query)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_reserved_and_unicode() {
        assert_eq!(
            encode(&[("to", "+84 912"), ("text", "Hé&=ok~")]),
            "to=%2B84+912&text=H%C3%A9%26%3Dok~"
        );
        assert_eq!(encode::<&str, &str>(&[]), "");
    }

    #[test]
    fn decodes_what_it_encodes() {
        let pairs = [("a b", "c+d&e=f"), ("emoji", "👋 done"), ("empty", "")];
        let params = Params::parse(&encode(&pairs));
        let expected: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(params.into_vec(), expected);
    }

    #[test]
    fn parses_queries_leniently() {
        let p = parse_query("?id=1&flag&id=2&bad=%zz&&pct=100%");
        assert_eq!(p.get("id"), Some("1"));
        assert_eq!(p.get_all("id").collect::<Vec<_>>(), ["1", "2"]);
        assert_eq!(p.get("flag"), Some(""));
        assert_eq!(p.get("bad"), Some("%zz"));
        assert_eq!(p.get("pct"), Some("100%"));
        assert_eq!(p.get("missing"), None);
        assert_eq!(p.len(), 5);
        assert!(parse_query("").is_empty());
    }
}
