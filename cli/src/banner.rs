//! The message a server prints once it is ready: where it listens, where its API token is,
//! and a request to try. It goes to stderr, so stdout carries log lines only.

use std::net::SocketAddr;
use std::path::Path;

use ferry_wiring::{ApiToken, TokenSource as Source};

/// The lines to print once `name` serves on `addr`.
pub fn ready(name: &str, addr: SocketAddr, token: &ApiToken) -> String {
    // A wildcard listener is reached on this machine through loopback.
    let (host, note) = if addr.ip().is_unspecified() {
        ("localhost".to_owned(), " (all interfaces)")
    } else if addr.is_ipv6() {
        (format!("[{}]", addr.ip()), "")
    } else {
        (addr.ip().to_string(), "")
    };
    let base = format!("http://{host}:{}", addr.port());
    let (about, bearer) = match &token.source {
        Source::Configured => {
            let bearer = if std::env::var_os("FERRY_API_TOKEN").is_some() {
                "$FERRY_API_TOKEN".to_owned()
            } else if let Some(file) = std::env::var_os("FERRY_API_TOKEN_FILE") {
                format!("$(cat {})", shell_word(Path::new(&file)))
            } else {
                "<your api_token>".to_owned()
            };
            (
                "Admin bootstrap token: the configured one (api_token)".to_owned(),
                bearer,
            )
        }
        Source::Stored(path) => (
            format!(
                "Admin bootstrap token (for automation): in {}",
                path.display()
            ),
            format!("$(cat {})", shell_word(path)),
        ),
        Source::Generated(path) => (
            format!(
                "Admin bootstrap token, for automation (generated now, saved in {}):\n\n    {}\n",
                path.display(),
                token.value
            ),
            format!("$(cat {})", shell_word(path)),
        ),
    };
    format!(
        "\n{name} is ready on {base}{note}; API docs: {base}/docs\n{about}\nTry it:\n\n    \
         curl -H \"Authorization: Bearer {bearer}\" {base}/api/v1/jobs\n\n\
         Stop with Ctrl-C (or SIGTERM).\n"
    )
}

/// The lines to print when no admin can log in yet: how to use the one-time setup link.
pub fn setup(public_url: &str, link: &ferry_application::SetupLink) -> String {
    format!(
        "\nNo admin can log in yet. Open this one-time link in a browser to choose the admin's login \
         name and password (valid until {}):\n\n    {public_url}/setup#{}\n\n\
         or, without a browser:\n\n    \
         curl -X POST {public_url}/api/v1/auth/setup -H 'Content-Type: application/json' \
         -d '{{\"link\": \"{}\", \"username\": \"admin\", \"password\": \"<at least 8 characters>\"}}'\n\n\
         (or add users with `ferry user add NAME --admin`).\n",
        link.expires_at.format("%Y-%m-%d %H:%M UTC"),
        link.secret,
        link.secret
    )
}

/// `path` as one shell word.
fn shell_word(path: &Path) -> String {
    let text = path.display().to_string();
    let plain = text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+,:@%".contains(c));
    if plain {
        text
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn says_where_ferry_listens_and_how_to_authenticate() {
        let token = ApiToken {
            value: "abc123".into(),
            source: Source::Generated(PathBuf::from("ferry-data/api-token")),
        };
        let text = ready("Ferry", "127.0.0.1:8080".parse().unwrap(), &token);
        assert!(
            text.contains("Ferry is ready on http://127.0.0.1:8080"),
            "{text}"
        );
        assert!(
            text.contains("    abc123"),
            "a new token is shown once: {text}"
        );
        assert!(
            text.contains(
                r#"curl -H "Authorization: Bearer $(cat ferry-data/api-token)" http://127.0.0.1:8080/api/v1/jobs"#
            ),
            "{text}"
        );
        let stored = ApiToken {
            value: "abc123".into(),
            source: Source::Stored(PathBuf::from("/srv/my data/api-token")),
        };
        let text = ready("Ferry", "0.0.0.0:9000".parse().unwrap(), &stored);
        assert!(
            !text.contains("abc123"),
            "a stored token is not printed again"
        );
        assert!(
            text.contains("http://localhost:9000 (all interfaces)"),
            "{text}"
        );
        assert!(text.contains("$(cat '/srv/my data/api-token')"), "{text}");
    }
}
