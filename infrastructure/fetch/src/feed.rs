//! `FeedSource` on the same client as URL jobs (proxy, SSRF guard and the operator's URL block
//! list on every hop, timeouts),
//! but not their content-type list: RSS feeds read with the `rss` crate, conditional GETs
//! (`If-None-Match`, `If-Modified-Since`), a size cap while the body streams.
//!
//! What an item offers, first found first: a magnet (`<link>`, the enclosure,
//! `torrent:magnetURI`, `torznab:attr name="magneturl"`), an info hash (`torrent:infoHash`,
//! `torznab:attr name="infohash"`, `nyaa:infoHash`: a magnet with the item's trackers), or
//! a .torrent URL (an enclosure of type `application/x-bittorrent`, or any link ending in
//! `.torrent`).

use async_trait::async_trait;
use ferry_application::ports::{FeedFetch, FeedItem, FeedLimits, FeedSource, FetchError, ItemLink};
use ferry_domain::FetchUrl;
use reqwest::StatusCode;
use reqwest::header::{ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED};
use sha2::{Digest, Sha256};

use crate::{HttpFetcher, request_error};

/// Longest item key kept as it is (longer ones are replaced by their SHA-256).
const MAX_KEY_BYTES: usize = 512;
/// Longest title kept.
const MAX_TITLE_CHARS: usize = 1000;
/// Deepest element nesting accepted: RSS needs about five levels; the `rss` crate reads
/// extension elements recursively, so a document nested thousands deep would exhaust the
/// stack (an abort, not an error).
const MAX_DEPTH: usize = 64;
/// Longest download link kept (a magnet with many trackers is a few KiB).
const MAX_LINK_BYTES: usize = 16 << 10;
/// Longest validator kept.
const MAX_VALIDATOR_BYTES: usize = 1024;

#[async_trait]
impl FeedSource for HttpFetcher {
    async fn check(&self, url: &FetchUrl) -> Result<(), FetchError> {
        HttpFetcher::check(self, url).await
    }

    async fn fetch(
        &self,
        url: &FetchUrl,
        etag: Option<&str>,
        last_modified: Option<&str>,
        limits: FeedLimits,
    ) -> Result<FeedFetch, FetchError> {
        let mut hop = url.clone();
        let mut redirects = 0;
        let mut resp = loop {
            HttpFetcher::check(self, &hop).await?;
            let mut req = self.client.get(hop.as_url().clone());
            if let Some(etag) = etag {
                req = req.header(IF_NONE_MATCH, etag);
            }
            if let Some(since) = last_modified {
                req = req.header(IF_MODIFIED_SINCE, since);
            }
            let resp = req.send().await.map_err(request_error)?;
            let status = resp.status();
            if !status.is_redirection() || status == StatusCode::NOT_MODIFIED {
                break resp;
            }
            redirects += 1;
            if redirects > self.settings.max_redirects {
                return Err(FetchError::Status(status.as_u16()));
            }
            let next = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|l| hop.as_url().join(l).ok())
                .ok_or(FetchError::Status(status.as_u16()))?;
            hop = FetchUrl::parse(next.as_str())
                .map_err(|e| FetchError::NotAllowed(format!("redirect: {e}")))?;
        };
        if resp.status() == StatusCode::NOT_MODIFIED {
            return Ok(FeedFetch::NotModified);
        }
        if !resp.status().is_success() {
            return Err(FetchError::Status(resp.status().as_u16()));
        }
        let header = |name: reqwest::header::HeaderName| {
            resp.headers()
                .get(name)
                .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
                .filter(|v| v.len() <= MAX_VALIDATOR_BYTES)
                .map(str::to_owned)
        };
        let (etag, last_modified) = (header(ETAG), header(LAST_MODIFIED));
        let limit = limits.max_bytes;
        if resp.content_length().is_some_and(|n| n > limit) {
            return Err(FetchError::TooLarge { limit });
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(request_error)? {
            if (body.len() + chunk.len()) as u64 > limit {
                return Err(FetchError::TooLarge { limit });
            }
            body.extend_from_slice(&chunk);
        }
        let max_items = limits.max_items;
        let items = tokio::task::spawn_blocking(move || parse(&body, max_items))
            .await
            .map_err(|e| FetchError::Unexpected(e.into()))??;
        Ok(FeedFetch::Fetched {
            items,
            etag,
            last_modified,
        })
    }
}

/// The items of an RSS document (at most `max_items`, in document order).
///
/// # Errors
/// `Unexpected` with the reason when `body` is not an RSS feed.
pub fn parse(body: &[u8], max_items: usize) -> Result<Vec<FeedItem>, FetchError> {
    // Entities are never expanded (the parser keeps unknown ones as text), but a document
    // that declares them is an entity bomb or worse: refused outright.
    if body.windows(8).any(|w| w == b"<!ENTITY") {
        return Err(FetchError::Unexpected(anyhow::anyhow!(
            "the document declares XML entities: refused"
        )));
    }
    if nesting(body) > MAX_DEPTH {
        return Err(FetchError::Unexpected(anyhow::anyhow!(
            "the document nests elements deeper than {MAX_DEPTH} levels: refused"
        )));
    }
    let channel = rss::Channel::read_from(body).map_err(|e| {
        FetchError::Unexpected(anyhow::anyhow!("the document is not an RSS feed: {e}"))
    })?;
    Ok(channel
        .items()
        .iter()
        .take(max_items)
        .filter_map(item)
        .collect())
}

/// The deepest element nesting of an XML document, read without parsing it: comments,
/// CDATA sections, declarations and quoted attribute values are skipped, so nothing in them
/// counts.
fn nesting(body: &[u8]) -> usize {
    fn find(hay: &[u8], from: usize, needle: &[u8]) -> usize {
        hay[from.min(hay.len())..]
            .windows(needle.len())
            .position(|w| w == needle)
            .map_or(hay.len(), |p| from + p + needle.len())
    }
    let (mut depth, mut deepest, mut i) = (0usize, 0usize, 0usize);
    while i < body.len() {
        if body[i] != b'<' {
            i += 1;
            continue;
        }
        let rest = &body[i..];
        if rest.starts_with(b"<!--") {
            i = find(body, i + 4, b"-->");
        } else if rest.starts_with(b"<![CDATA[") {
            i = find(body, i + 9, b"]]>");
        } else if rest.starts_with(b"<!") || rest.starts_with(b"<?") {
            i = find(body, i + 2, b">");
        } else if rest.starts_with(b"</") {
            depth = depth.saturating_sub(1);
            i = find(body, i + 2, b">");
        } else {
            let mut j = i + 1;
            let mut quote = None;
            while j < body.len() {
                let c = body[j];
                match quote {
                    Some(q) if c == q => quote = None,
                    Some(_) => {}
                    None if c == b'"' || c == b'\'' => quote = Some(c),
                    None if c == b'>' => break,
                    None => {}
                }
                j += 1;
            }
            if body.get(j.wrapping_sub(1)) != Some(&b'/') {
                depth += 1;
                deepest = deepest.max(depth);
            }
            i = j + 1;
        }
    }
    deepest
}

/// `text` without control characters (a NUL cannot be stored in PostgreSQL's text).
fn printable(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).collect()
}

fn item(i: &rss::Item) -> Option<FeedItem> {
    let title: String = printable(i.title()?.trim())
        .chars()
        .take(MAX_TITLE_CHARS)
        .collect();
    let link = download(i).filter(|l| match l {
        ItemLink::Magnet(s) | ItemLink::Torrent(s) => s.len() <= MAX_LINK_BYTES,
    });
    let key = i
        .guid()
        .map(rss::Guid::value)
        .or(i.link())
        .or(i.enclosure().map(rss::Enclosure::url))
        .unwrap_or(title.as_str())
        .trim();
    let key = printable(key);
    let key = if key.len() > MAX_KEY_BYTES {
        format!("sha256:{}", hex::encode(Sha256::digest(key.as_bytes())))
    } else {
        key
    };
    let size = i
        .enclosure()
        .and_then(|e| e.length().parse::<u64>().ok())
        .filter(|n| *n > 0)
        .or_else(|| ext_value(i, "torrent", "contentLength")?.parse().ok())
        .or_else(|| torznab(i, "size")?.parse().ok());
    Some(FeedItem {
        title,
        key,
        published: i.pub_date().map(|d| d.chars().take(100).collect()),
        size,
        link,
    })
}

fn ext_value<'a>(i: &'a rss::Item, prefix: &str, name: &str) -> Option<&'a str> {
    i.extensions()
        .get(prefix)?
        .get(name)?
        .iter()
        .find_map(|e| e.value())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// `<torznab:attr name="{name}" value="…"/>`.
fn torznab<'a>(i: &'a rss::Item, name: &str) -> Option<&'a str> {
    i.extensions()
        .get("torznab")?
        .get("attr")?
        .iter()
        .find(|e| {
            e.attrs()
                .get("name")
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        })?
        .attrs()
        .get("value")
        .map(|v| v.trim())
}

fn is_magnet(s: &str) -> bool {
    s.get(..7)
        .is_some_and(|p| p.eq_ignore_ascii_case("magnet:"))
}

fn is_torrent_url(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    (lower.starts_with("http://") || lower.starts_with("https://"))
        && lower
            .split(['?', '#'])
            .next()
            .is_some_and(|p| p.ends_with(".torrent"))
}

/// The trackers an item names (ezRSS `torrent:trackers`), for a magnet made of a hash.
fn trackers(i: &rss::Item) -> Vec<String> {
    fn walk(e: &rss::extension::Extension, out: &mut Vec<String>) {
        if e.name().ends_with("tracker")
            && let Some(v) = e.value()
        {
            out.push(v.trim().to_owned());
        }
        for child in e.children().values().flatten() {
            walk(child, out);
        }
    }
    let mut out = Vec::new();
    if let Some(exts) = i.extensions().get("torrent") {
        for e in exts.values().flatten() {
            walk(e, &mut out);
        }
    }
    out.retain(|t| t.starts_with("http") || t.starts_with("udp"));
    out.truncate(20);
    out
}

fn download(i: &rss::Item) -> Option<ItemLink> {
    let enclosure = i.enclosure().map(rss::Enclosure::url).map(str::trim);
    let magnet = [
        i.link().map(str::trim),
        enclosure,
        ext_value(i, "torrent", "magnetURI"),
        torznab(i, "magneturl"),
    ]
    .into_iter()
    .flatten()
    .find(|s| is_magnet(s));
    if let Some(m) = magnet {
        return Some(ItemLink::Magnet(m.to_owned()));
    }
    let hash = [
        ext_value(i, "torrent", "infoHash"),
        torznab(i, "infohash"),
        ext_value(i, "nyaa", "infoHash"),
    ]
    .into_iter()
    .flatten()
    .find(|h| ferry_domain::InfoHash::parse(h).is_ok());
    if let Some(hash) = hash {
        let mut magnet = format!("magnet:?xt=urn:btih:{}", hash.to_ascii_lowercase());
        for t in trackers(i) {
            magnet.push_str("&tr=");
            magnet
                .push_str(&url::form_urlencoded::byte_serialize(t.as_bytes()).collect::<String>());
        }
        return Some(ItemLink::Magnet(magnet));
    }
    let typed = i
        .enclosure()
        .filter(|e| {
            e.mime_type()
                .eq_ignore_ascii_case("application/x-bittorrent")
        })
        .map(|e| e.url().trim())
        .filter(|u| u.starts_with("http://") || u.starts_with("https://"));
    typed
        .or_else(|| {
            [enclosure, i.link().map(str::trim)]
                .into_iter()
                .flatten()
                .find(|u| is_torrent_url(u))
        })
        .map(|u| ItemLink::Torrent(u.to_owned()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const HASH: &str = "0123456789abcdef0123456789abcdef01234567";

    fn one(xml: &str) -> FeedItem {
        let items = parse(xml.as_bytes(), 100).unwrap();
        assert_eq!(items.len(), 1, "{items:?}");
        items.into_iter().next().unwrap()
    }

    fn rss(ns: &str, item: &str) -> String {
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><rss version="2.0" {ns}><channel><title>t</title><link>http://x</link><description>d</description><item>{item}</item></channel></rss>"#
        )
    }

    #[test]
    fn plain_rss_with_a_magnet_link() {
        let i = one(&rss(
            "",
            &format!(
                "<title>Show S01E01</title><link>magnet:?xt=urn:btih:{HASH}&amp;dn=x</link>\
                 <guid>id-1</guid><pubDate>Mon, 01 Jan 2026 00:00:00 +0000</pubDate>"
            ),
        ));
        assert_eq!(i.title, "Show S01E01");
        assert_eq!(i.key, "id-1");
        assert_eq!(
            i.link,
            Some(ItemLink::Magnet(format!("magnet:?xt=urn:btih:{HASH}&dn=x")))
        );
        assert!(i.published.is_some());
    }

    #[test]
    fn torrent_enclosure() {
        let i = one(&rss(
            "",
            r#"<title>A</title><link>https://site/page/1</link><enclosure url="https://site/dl/1" length="1234" type="application/x-bittorrent"/>"#,
        ));
        assert_eq!(i.link, Some(ItemLink::Torrent("https://site/dl/1".into())));
        assert_eq!(i.size, Some(1234));
        assert_eq!(i.key, "https://site/page/1");
        let i = one(&rss(
            "",
            "<title>B</title><link>https://site/b.torrent?x=1</link>",
        ));
        assert_eq!(
            i.link,
            Some(ItemLink::Torrent("https://site/b.torrent?x=1".into()))
        );
    }

    #[test]
    fn ezrss_torrent_namespace() {
        let i = one(&rss(
            r#"xmlns:torrent="http://xmlns.ezrss.it/0.1/""#,
            &format!(
                "<title>E</title><link>https://site/page</link><torrent:contentLength>99</torrent:contentLength>\
                 <torrent:infoHash>{}</torrent:infoHash>\
                 <torrent:trackers><torrent:group order=\"random\"><torrent:tracker>udp://t.example:80</torrent:tracker></torrent:group></torrent:trackers>",
                HASH.to_uppercase()
            ),
        ));
        assert_eq!(
            i.link,
            Some(ItemLink::Magnet(format!(
                "magnet:?xt=urn:btih:{HASH}&tr=udp%3A%2F%2Ft.example%3A80"
            )))
        );
        assert_eq!(i.size, Some(99));
        let i = one(&rss(
            r#"xmlns:torrent="http://xmlns.ezrss.it/0.1/""#,
            &format!(
                "<title>E</title><torrent:magnetURI>magnet:?xt=urn:btih:{HASH}</torrent:magnetURI>"
            ),
        ));
        assert!(matches!(i.link, Some(ItemLink::Magnet(_))));
    }

    #[test]
    fn torznab_jackett_prowlarr() {
        let ns = r#"xmlns:torznab="http://torznab.com/schemas/2015/feed""#;
        let i = one(&rss(
            ns,
            &format!(
                r#"<title>T</title><guid>https://jackett/g/1</guid><link>https://jackett/dl/1?jackett_apikey=k</link>
                <enclosure url="https://jackett/dl/1?jackett_apikey=k" length="5" type="application/x-bittorrent"/>
                <torznab:attr name="size" value="5"/><torznab:attr name="magneturl" value="magnet:?xt=urn:btih:{HASH}"/>"#
            ),
        ));
        assert_eq!(
            i.link,
            Some(ItemLink::Magnet(format!("magnet:?xt=urn:btih:{HASH}")))
        );
        assert_eq!(i.key, "https://jackett/g/1");
        let i = one(&rss(
            ns,
            &format!(r#"<title>T</title><torznab:attr name="infohash" value="{HASH}"/>"#),
        ));
        assert_eq!(
            i.link,
            Some(ItemLink::Magnet(format!("magnet:?xt=urn:btih:{HASH}")))
        );
        // Only a .torrent download.
        let i = one(&rss(
            ns,
            r#"<title>T</title><enclosure url="https://jackett/dl/2" length="0" type="application/x-bittorrent"/>"#,
        ));
        assert_eq!(
            i.link,
            Some(ItemLink::Torrent("https://jackett/dl/2".into()))
        );
    }

    #[test]
    fn nyaa() {
        let i = one(&rss(
            r#"xmlns:nyaa="https://nyaa.si/xmlns/nyaa""#,
            &format!(
                "<title>[Sub] Show - 01</title><link>https://nyaa.si/download/1.torrent</link>\
                 <guid isPermaLink=\"true\">https://nyaa.si/view/1</guid><nyaa:infoHash>{HASH}</nyaa:infoHash><nyaa:size>1.0 GiB</nyaa:size>"
            ),
        ));
        assert_eq!(
            i.link,
            Some(ItemLink::Magnet(format!("magnet:?xt=urn:btih:{HASH}")))
        );
        assert_eq!(i.key, "https://nyaa.si/view/1");
    }

    #[test]
    fn hostile_documents_are_errors_or_bounded() {
        for bad in [
            "not xml at all",
            "<html><body>hi</body></html>",
            r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]><rss version="2.0"><channel><title>&lol2;</title></channel></rss>"#,
            "<rss><channel><item><title>x",
        ] {
            assert!(parse(bad.as_bytes(), 10).is_err(), "{bad}");
        }
        let many: String = (0..50)
            .map(|n| format!("<item><title>{n}</title><guid>{n}</guid></item>"))
            .collect();
        let xml = format!(r#"<rss version="2.0"><channel><title>t</title>{many}</channel></rss>"#);
        assert_eq!(parse(xml.as_bytes(), 10).unwrap().len(), 10);
        // A huge guid becomes a bounded key; an item without a title is skipped.
        let long = "g".repeat(5000);
        let xml = format!(
            r#"<rss version="2.0"><channel><title>t</title><item><title>x</title><guid>{long}</guid></item><item><guid>2</guid></item></channel></rss>"#
        );
        let items = parse(xml.as_bytes(), 10).unwrap();
        assert_eq!(items.len(), 1);
        assert!(items[0].key.starts_with("sha256:"));
    }

    /// Extension elements nested thousands deep (40 KB) would overflow the stack of the `rss`
    /// crate's recursive reader and abort the process: refused before it reads them.
    #[test]
    fn a_nesting_bomb_is_refused_not_a_crash() {
        let deep = 8000;
        let xml = format!(
            r#"<rss version="2.0" xmlns:x="urn:x"><channel><title>t</title><item><title>a</title>{}{}</item></channel></rss>"#,
            "<x:a>".repeat(deep),
            "</x:a>".repeat(deep)
        );
        let e = parse(xml.as_bytes(), 10).unwrap_err();
        assert!(e.to_string().contains("deeper"), "{e}");
    }

    #[test]
    fn nesting_skips_comments_cdata_declarations_and_quoted_values() {
        assert_eq!(nesting(b"<a><b/><c x='>' y=\"/>\"><d></d></c></a>"), 3);
        assert_eq!(
            nesting(b"<?xml version='1.0'?><!-- <a><a><a> --><a><![CDATA[<b><b>]]></a>"),
            1
        );
        assert_eq!(nesting(b"<a><b><c>"), 3);
        assert_eq!(nesting(b"<<<<"), 1); // one unterminated tag
        assert_eq!(nesting(b""), 0);
    }

    /// Control characters (a NUL cannot be stored in PostgreSQL's text) leave titles and keys.
    #[test]
    fn control_characters_leave_titles_and_keys() {
        let item = one(&rss(
            "",
            "<title>Show\u{1}.S01E01</title><guid>g\u{7}1</guid><link>magnet:?xt=urn:btih:0123456789abcdef0123456789abcdef01234567</link>",
        ));
        assert_eq!(item.title, "Show.S01E01");
        assert_eq!(item.key, "g1");
    }
}
