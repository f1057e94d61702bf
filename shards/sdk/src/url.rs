//! Percent-decoding of path segments and query strings.

/// Decodes `%XX` escapes (and `+` as a space when `plus_as_space`, as in query strings).
/// Malformed escapes are kept literally; invalid UTF-8 becomes U+FFFD, so decoding never fails.
pub(crate) fn percent_decode(input: &str, plus_as_space: bool) -> String {
    if !input.contains(['%', '+']) {
        return input.to_owned();
    }
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        match byte {
            b'%' => {
                let high = bytes.get(i + 1).copied().and_then(hex_value);
                let low = bytes.get(i + 2).copied().and_then(hex_value);
                if let (Some(high), Some(low)) = (high, low) {
                    out.push(high << 4 | low);
                    i += 3;
                    continue;
                }
                out.push(byte);
            }
            b'+' if plus_as_space => out.push(b' '),
            _ => out.push(byte),
        }
        i += 1;
    }
    match String::from_utf8(out) {
        Ok(text) => text,
        Err(err) => String::from_utf8_lossy(err.as_bytes()).into_owned(),
    }
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// Parses `a=1&b=two+words&flag` into decoded pairs, in order; a key without `=` gets `""`.
pub(crate) fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key, true), percent_decode(value, true))
        })
        .collect()
}

/// Splits a path into its raw segments: `/a/b/` gives `["a", "b"]`, `/` gives `[]`. Interior
/// empty segments are kept so that `//` never matches a route by accident.
pub(crate) fn split_path(path: &str) -> Vec<&str> {
    let trimmed = path.strip_prefix('/').unwrap_or(path);
    if trimmed.is_empty() {
        return Vec::new();
    }
    let mut segments: Vec<&str> = trimmed.split('/').collect();
    if segments.len() > 1 && segments.last() == Some(&"") {
        segments.pop();
    }
    segments
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_escapes_and_plus() {
        assert_eq!(percent_decode("a%20b+c", true), "a b c");
        assert_eq!(percent_decode("a%20b+c", false), "a b+c");
        assert_eq!(percent_decode("100%", false), "100%");
        assert_eq!(percent_decode("%zz%4", false), "%zz%4");
        assert_eq!(percent_decode("%C3%A9", false), "é");
    }

    #[test]
    fn parses_queries() {
        assert_eq!(
            parse_query("q=a+b&&limit=5&flag"),
            vec![
                ("q".to_owned(), "a b".to_owned()),
                ("limit".to_owned(), "5".to_owned()),
                ("flag".to_owned(), String::new()),
            ]
        );
    }

    #[test]
    fn splits_paths() {
        assert_eq!(split_path("/"), Vec::<&str>::new());
        assert_eq!(split_path(""), Vec::<&str>::new());
        assert_eq!(split_path("/a/b/"), vec!["a", "b"]);
        assert_eq!(split_path("//"), vec![""]);
        assert_eq!(split_path("/a//b"), vec!["a", "", "b"]);
    }
}
