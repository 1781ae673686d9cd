//! The page's script and stylesheet, embedded in the binary and served under a name that
//! carries a prefix of their SHA-256 (`/assets/app.3f9c…​.js`), so a new build has new URLs and
//! browsers may keep each one forever.

use std::sync::OnceLock;

use poem::http::StatusCode;
use poem::web::Path;
use poem::{Response, handler};
use sha2::{Digest, Sha256};

/// One embedded file.
pub struct Asset {
    /// `app.js`
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

const ASSETS: [Asset; 2] = [
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../../web/app.js"),
    },
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../../../web/app.css"),
    },
];

/// Each asset's served name (`app.{hash}.js`), computed once.
fn served() -> &'static [String] {
    static NAMES: OnceLock<Vec<String>> = OnceLock::new();
    NAMES.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let hash = hex::encode(&Sha256::digest(a.bytes)[..6]);
                let (stem, ext) = a.name.rsplit_once('.').unwrap_or((a.name, ""));
                format!("{stem}.{hash}.{ext}")
            })
            .collect()
    })
}

/// The URL of asset `name` (`app.js` → `/assets/app.{hash}.js`).
pub fn url(name: &str) -> String {
    let at = ASSETS.iter().position(|a| a.name == name).unwrap_or(0);
    format!("/assets/{}", served()[at])
}

#[handler]
pub fn serve(Path(file): Path<String>) -> Response {
    match served().iter().position(|s| *s == file) {
        Some(at) => Response::builder()
            .content_type(ASSETS[at].content_type)
            .header("Cache-Control", "public, max-age=31536000, immutable")
            .body(ASSETS[at].bytes),
        None => Response::builder()
            .status(StatusCode::NOT_FOUND)
            .content_type("text/plain; charset=utf-8")
            .body("no such asset (the page that asked for it is older than this server)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_content_hash_and_only_they_are_served() {
        let js = url("app.js");
        assert!(
            js.starts_with("/assets/app.") && js.ends_with(".js") && js.len() == 27,
            "{js}"
        );
        assert_ne!(url("app.css"), js);
        let name = js.trim_start_matches("/assets/").to_owned();
        assert_eq!(serve_name(&name), StatusCode::OK);
        assert_eq!(serve_name("app.js"), StatusCode::NOT_FOUND);
        assert_eq!(serve_name("../Cargo.toml"), StatusCode::NOT_FOUND);
    }

    fn serve_name(name: &str) -> StatusCode {
        match served().iter().position(|s| s == name) {
            Some(_) => StatusCode::OK,
            None => StatusCode::NOT_FOUND,
        }
    }
}
