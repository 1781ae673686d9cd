//! Reading the claims Ferry maps to users from a verified token's JSON claims.

use serde_json::{Map, Value};

/// The values of the groups claim `name`: an array of strings, or one string. A name that is
/// not a claim is tried as a dotted path into nested objects (`realm_access.roles`), so
/// providers that nest their groups work too; namespaced claims such as
/// `https://example.com/groups` are found as they are, first.
pub(crate) fn groups(claims: &Map<String, Value>, name: &str) -> Vec<String> {
    let value = claims.get(name).or_else(|| {
        let mut parts = name.split('.');
        let first = claims.get(parts.next()?)?;
        parts.try_fold(first, |value, part| value.get(part))
    });
    match value {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        Some(Value::String(one)) => vec![one.clone()],
        _ => Vec::new(),
    }
}

/// An access token's granted scopes: `scope` (RFC 9068 / RFC 8693, space-separated) or
/// `scp` (an array, or a space-separated string, as some providers write it).
pub(crate) fn granted(claims: &Map<String, Value>) -> Vec<String> {
    let words = |s: &str| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    match claims.get("scope").or_else(|| claims.get("scp")) {
        Some(Value::String(s)) => words(s),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .flat_map(words)
            .collect(),
        _ => Vec::new(),
    }
}

/// A string claim.
pub(crate) fn string(claims: &Map<String, Value>, name: &str) -> Option<String> {
    claims.get(name)?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn claims(json: &str) -> Map<String, Value> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn groups_from_arrays_strings_paths_and_namespaced_names() {
        let c = claims(
            r#"{"groups":["a","b",3],"one":"x","realm_access":{"roles":["r"]},
                "https://ex.test/groups":["n"],"bad":{"k":1}}"#,
        );
        assert_eq!(groups(&c, "groups"), ["a", "b"]);
        assert_eq!(groups(&c, "one"), ["x"]);
        assert_eq!(groups(&c, "realm_access.roles"), ["r"]);
        assert_eq!(groups(&c, "https://ex.test/groups"), ["n"]);
        assert!(groups(&c, "bad").is_empty());
        assert!(groups(&c, "missing").is_empty());
        assert!(groups(&c, "bad.k.deeper").is_empty());
    }

    #[test]
    fn granted_scopes_from_scope_or_scp() {
        let of = |json: &str| granted(&claims(json));
        assert_eq!(
            of(r#"{"scope":"openid  ferry:read"}"#),
            ["openid", "ferry:read"]
        );
        assert_eq!(
            of(r#"{"scp":["ferry:write","x y",1]}"#),
            ["ferry:write", "x", "y"]
        );
        assert_eq!(of(r#"{"scp":"a b"}"#), ["a", "b"]);
        assert!(of(r#"{"scope":7}"#).is_empty());
        assert!(of("{}").is_empty());
    }
}
