//! The config file is operator input, and a hostile one is refused with a message naming the
//! key, never a panic or a hang: random text, and files of every real key set to values chosen
//! to hurt (out-of-range numbers, NaN, wrong types, NUL bytes, devices as secret files).
//!
//! `PROPTEST_CASES` raises the case count (`bench/fuzz.sh` runs 10 million); proptest keeps
//! any failing case in `proptest-regressions/` and replays it first on every run.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ferry_wiring::Config;
use proptest::prelude::*;

/// Every key of the configuration, dotted (`torrent.proxy`), read off the defaults.
fn known_keys() -> Vec<String> {
    fn walk(v: &serde_json::Value, at: &str, out: &mut Vec<String>) {
        out.push(at.to_owned());
        if let serde_json::Value::Object(map) = v {
            for (k, v) in map {
                let key = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                walk(v, &key, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(
        &serde_json::to_value(Config::default()).unwrap(),
        "",
        &mut out,
    );
    out.retain(|k| !k.is_empty());
    out
}

/// Values that have broken config loaders: bounds, NaN, wrong types, paths that never end.
fn hostile_value() -> impl Strategy<Value = String> {
    let fixed = prop::sample::select(vec![
        "-1",
        "0",
        "18446744073709551616",
        "-9223372036854775809",
        "1e309",
        "nan",
        "-inf",
        "0.0",
        "true",
        "\"\"",
        "\"\\u0000\"",
        "\"/dev/zero\"",
        "\"/dev/urandom\"",
        "\"/proc/self/mem\"",
        "\"/\"",
        "\"../../../../etc/passwd\"",
        "\"socks5h://[::1\"",
        "\"socks5://user:pass@127.0.0.1:0\"",
        "\"http://\"",
        "\"0.0.0.0/0\"",
        "\"::/0\"",
        "\"1.2.3.4/99\"",
        "\"99999999999999999999 MiB\"",
        "\"1.5 GiB\"",
        "\"-5s\"",
        "\"1000000000000000000000000h\"",
        "[]",
        "[\"\", 1, true]",
        "{}",
        "{ a = { b = { c = 1 } } }",
        "1979-05-27T07:32:00Z",
    ]);
    prop_oneof![
        fixed.prop_map(str::to_owned),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|n| format!("{n:?}")),
        // Any text, as a TOML basic string (JSON's escapes are TOML's).
        "\\PC{0,40}".prop_map(|s| serde_json::to_string(&s).unwrap()),
    ]
}

fn config_text() -> impl Strategy<Value = String> {
    let keys = known_keys();
    let structured = proptest::collection::vec((prop::sample::select(keys), hostile_value()), 0..8)
        .prop_map(|pairs| {
            pairs
                .into_iter()
                .map(|(k, v)| format!("{k} = {v}\n"))
                .collect::<String>()
        });
    prop_oneof![
        3 => structured,
        1 => "\\PC{0,200}",
        1 => "[a-z_.=\\[\\]\"0-9 \n{},-]{0,120}",
    ]
}

proptest! {
    #[test]
    fn hostile_config_is_refused_not_a_panic(text in config_text()) {
        if let Err(e) = Config::load_toml(&text) {
            // The message says what is wrong (it is shown at start).
            let message = format!("{e:#}");
            prop_assert!(!message.trim().is_empty());
        }
    }
}

/// Secret files are read to at most 64 KiB: a device that never ends is refused at once.
#[test]
fn a_secret_file_that_never_ends_is_refused() {
    for key in ["api_token_file", "secret_key_file"] {
        let e = Config::load_toml(&format!("{key} = \"/dev/zero\"")).unwrap_err();
        let message = format!("{e:#}");
        assert!(
            message.contains(key) && message.contains("larger than"),
            "{message}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "  s3cret-token\n").unwrap();
    let loaded = Config::load_toml(&format!(
        "api_token_file = {:?}",
        token.display().to_string()
    ))
    .unwrap();
    assert_eq!(loaded.config.api_token.unwrap().expose(), "s3cret-token");
    std::fs::write(&token, [0xff, 0xfe]).unwrap();
    let e = Config::load_toml(&format!(
        "api_token_file = {:?}",
        token.display().to_string()
    ))
    .unwrap_err();
    assert!(format!("{e:#}").contains("not UTF-8"), "{e:#}");
}
