//! RSS download rules as qBittorrent's auto-downloader applies them
//! (`rss_autodownloadrule.cpp`): must-contain / must-not-contain (wildcards or regular
//! expressions), the episode filter (`1x2;8-15;30-;`) and the smart episode filter.
//!
//! Everything is case-insensitive. A rule is compiled once ([`RuleMatcher::new`]), refusing
//! invalid or oversized patterns, so a matcher that exists cannot fail while it matches.

use std::sync::LazyLock;

use regex::{Regex, RegexBuilder};

/// Longest pattern field (must-contain, must-not-contain, episode filter), in characters.
pub const MAX_PATTERN_CHARS: usize = 1000;

/// Compiled size limit of one regular expression (bytes of the compiled program).
const REGEX_SIZE_LIMIT: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("{field}: {reason}")]
    Pattern { field: &'static str, reason: String },
    #[error(
        "episode_filter: expected a season, 'x', then ';'-terminated episodes, ranges or open \
         ranges, like 1x2;8-15;30-;"
    )]
    EpisodeFilter,
}

/// The text fields of a rule, as a user wrote them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RulePatterns {
    pub must_contain: String,
    pub must_not_contain: String,
    pub use_regex: bool,
    pub episode_filter: String,
}

/// A rule's patterns, compiled.
#[derive(Debug, Clone)]
pub struct RuleMatcher {
    /// Alternatives, each a list of tokens that must all be found (wildcards), or one regex.
    must_contain: Vec<Vec<Regex>>,
    must_not_contain: Vec<Vec<Regex>>,
    episodes: Option<EpisodeFilter>,
}

fn build(pattern: &str, field: &'static str) -> Result<Regex, RuleError> {
    RegexBuilder::new(pattern)
        .case_insensitive(true)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .nest_limit(64)
        .build()
        .map_err(|e| RuleError::Pattern {
            field,
            reason: e.to_string(),
        })
}

/// A wildcard (`*`: any run, `?`: any one character; the rest literal) as an unanchored
/// regular expression, as Qt's `wildcardToRegularExpression(…, UnanchoredWildcardConversion)`.
fn wildcard(token: &str, field: &'static str) -> Result<Regex, RuleError> {
    let mut pattern = String::with_capacity(token.len() * 2);
    for c in token.chars() {
        match c {
            '*' => pattern.push_str(".*"),
            '?' => pattern.push('.'),
            c => pattern.push_str(&regex::escape(c.encode_utf8(&mut [0; 4]))),
        }
    }
    build(&pattern, field)
}

/// The alternatives of a must-(not-)contain field.
fn expressions(
    text: &str,
    use_regex: bool,
    field: &'static str,
) -> Result<Vec<Vec<Regex>>, RuleError> {
    if text.chars().count() > MAX_PATTERN_CHARS {
        return Err(RuleError::Pattern {
            field,
            reason: format!("at most {MAX_PATTERN_CHARS} characters"),
        });
    }
    if text.is_empty() {
        return Ok(Vec::new());
    }
    if use_regex {
        return Ok(vec![vec![build(text, field)?]]);
    }
    // `a|` has an empty alternative, which matches anything (as a regex would).
    text.split('|')
        .map(|alternative| {
            alternative
                .split_whitespace()
                .map(|token| wildcard(token, field))
                .collect::<Result<Vec<_>, _>>()
        })
        .collect()
}

fn all_found(tokens: &[Regex], title: &str) -> bool {
    tokens.iter().all(|t| t.is_match(title))
}

impl RuleMatcher {
    /// # Errors
    /// An invalid or oversized pattern, or an episode filter that does not parse.
    pub fn new(p: &RulePatterns) -> Result<Self, RuleError> {
        Ok(Self {
            must_contain: expressions(&p.must_contain, p.use_regex, "must_contain")?,
            must_not_contain: expressions(&p.must_not_contain, p.use_regex, "must_not_contain")?,
            episodes: if p.episode_filter.is_empty() {
                None
            } else {
                Some(EpisodeFilter::parse(&p.episode_filter)?)
            },
        })
    }

    /// Whether `title` passes must-contain, must-not-contain and the episode filter (the
    /// smart filter is [`episode_keys`] plus what the rule took before).
    pub fn matches(&self, title: &str) -> bool {
        let contains = self.must_contain.is_empty()
            || self.must_contain.iter().any(|alt| all_found(alt, title));
        let excluded = self
            .must_not_contain
            .iter()
            .any(|alt| all_found(alt, title));
        contains && !excluded && self.episodes.as_ref().is_none_or(|e| e.matches(title))
    }
}

/// One item of an episode filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Episodes {
    One(u32),
    Range(u32, u32),
    From(u32),
}

/// `1x2;8-15;30-;`: season 1, episode 2, 8 to 15, and 30 onwards (also every later season).
#[derive(Debug, Clone)]
pub struct EpisodeFilter {
    season: u32,
    items: Vec<Episodes>,
}

static FILTER: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"^(\d{1,4})x((?:\d{1,4}(?:-(?:\d{1,4})?)?;)+)$").ok());
// qBittorrent writes the separator class `[ -_\.]`, a range from space to '_'; the intended
// separators are meant here.
static SXE: LazyLock<Option<Regex>> = LazyLock::new(|| {
    RegexBuilder::new(r"\bs0?(\d{1,4})[ _.\-]?e(0?\d{1,4})(?:\D|\b)")
        .case_insensitive(true)
        .build()
        .ok()
});
static NXM: LazyLock<Option<Regex>> = LazyLock::new(|| {
    RegexBuilder::new(r"\b(\d{1,4})x(0?\d{1,4})(?:\D|\b)")
        .case_insensitive(true)
        .build()
        .ok()
});

impl EpisodeFilter {
    /// # Errors
    /// `EpisodeFilter` when `text` is not of the form `1x2;8-15;30-;`.
    pub fn parse(text: &str) -> Result<Self, RuleError> {
        let caps = FILTER
            .as_ref()
            .and_then(|r| r.captures(text))
            .ok_or(RuleError::EpisodeFilter)?;
        let number = |s: &str| s.parse::<u32>().map_err(|_| RuleError::EpisodeFilter);
        let season = number(&caps[1])?;
        let mut items = Vec::new();
        for item in caps[2].split(';').filter(|i| !i.is_empty()) {
            items.push(match item.split_once('-') {
                None => Episodes::One(number(item)?),
                Some((from, "")) => Episodes::From(number(from)?),
                Some((from, to)) => Episodes::Range(number(from)?, number(to)?),
            });
        }
        Ok(Self { season, items })
    }

    /// Whether the title names an episode the filter wants (the first `SxxEyy` or `NxM`).
    pub fn matches(&self, title: &str) -> bool {
        let found = [&SXE, &NXM]
            .into_iter()
            .filter_map(|r| r.as_ref()?.captures(title))
            .next()
            .and_then(|c| Some((c[1].parse::<u32>().ok()?, c[2].parse::<u32>().ok()?)));
        let Some((season, episode)) = found else {
            return false;
        };
        self.items.iter().any(|item| match *item {
            Episodes::One(e) => season == self.season && episode == e,
            // A reversed range is ignored, as qBittorrent does.
            Episodes::Range(a, b) => season == self.season && a <= episode && episode <= b,
            Episodes::From(a) => (season == self.season && episode >= a) || season > self.season,
        })
    }
}

static SMART: LazyLock<Option<Regex>> = LazyLock::new(|| {
    RegexBuilder::new(concat!(
        r"(?:^|[^a-z0-9])(?:",
        r"s(?P<s>\d{1,4})[ _.\-]?e(?P<e>\d{1,4})(?P<more>(?:[ _.\-]?-?[ _.\-]?e\d{1,4})*)",
        r"|(?P<n>\d{1,4})x(?P<m>\d{1,4})",
        r"|(?P<date>\d{4}[.\-]\d{1,2}[.\-]\d{1,2})",
        r")(?:$|[^a-z0-9])"
    ))
    .case_insensitive(true)
    .build()
    .ok()
});
static MORE: LazyLock<Option<Regex>> = LazyLock::new(|| {
    RegexBuilder::new(r"e(\d{1,4})")
        .case_insensitive(true)
        .build()
        .ok()
});
static REPACK: LazyLock<Option<Regex>> = LazyLock::new(|| {
    RegexBuilder::new(r"\b(?:REPACK|PROPER)\b")
        .case_insensitive(true)
        .build()
        .ok()
});

/// The episodes a title names, as the smart filter keys them: `S01E02` (each episode of
/// `S01E01E02` / `S01E01-E02`, and of a range `S01E01-E03`), `1x02` as `S01E02`, and dates
/// (`2026-01-02`, `2026.01.02`) as `2026-01-02`. Empty: the title names no episode.
pub fn episode_keys(title: &str) -> Vec<String> {
    let Some(c) = SMART.as_ref().and_then(|r| r.captures(title)) else {
        return Vec::new();
    };
    let key = |s: u32, e: u32| format!("S{s:02}E{e:02}");
    if let (Some(s), Some(e)) = (c.name("s"), c.name("e")) {
        let (Ok(s), Ok(first)) = (s.as_str().parse::<u32>(), e.as_str().parse::<u32>()) else {
            return Vec::new();
        };
        let more = c.name("more").map_or("", |m| m.as_str());
        let others: Vec<u32> = MORE
            .as_ref()
            .map(|r| {
                r.captures_iter(more)
                    .filter_map(|m| m[1].parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        let mut episodes = vec![first];
        match others.as_slice() {
            // `S01E01-E03`: a range (bounded, so a title cannot name a million episodes).
            [last] if more.contains('-') && *last > first && *last - first < 100 => {
                episodes.extend(first + 1..=*last);
            }
            _ => episodes.extend(others.iter().take(100)),
        }
        episodes.sort_unstable();
        episodes.dedup();
        return episodes.into_iter().map(|e| key(s, e)).collect();
    }
    if let (Some(n), Some(m)) = (c.name("n"), c.name("m")) {
        return match (n.as_str().parse(), m.as_str().parse()) {
            (Ok(s), Ok(e)) => vec![key(s, e)],
            _ => Vec::new(),
        };
    }
    c.name("date")
        .map(|d| {
            let parts: Vec<u32> = d
                .as_str()
                .split(['.', '-'])
                .filter_map(|p| p.parse().ok())
                .collect();
            match parts.as_slice() {
                [y, m, d] => vec![format!("{y:04}-{m:02}-{d:02}")],
                _ => Vec::new(),
            }
        })
        .unwrap_or_default()
}

/// Whether a title announces a repack (`REPACK` or `PROPER` as a word).
pub fn is_repack(title: &str) -> bool {
    REPACK.as_ref().is_some_and(|r| r.is_match(title))
}

/// What the smart episode filter decides for an item: `None` to skip it (an episode this
/// rule took before, and not a first repack of it), or the keys to take with it (empty when
/// the title names no episode). `taken` says whether the rule took a key before. A repack of
/// a taken episode takes `S01E02-REPACK`, so only one repack of each is downloaded.
pub fn smart_filter(title: &str, taken: impl Fn(&str) -> bool) -> Option<Vec<String>> {
    let keys = episode_keys(title);
    if !keys.iter().any(|k| taken(k)) {
        return Some(keys);
    }
    if !is_repack(title) {
        return None;
    }
    let repacks: Vec<String> = keys.iter().map(|k| format!("{k}-REPACK")).collect();
    if repacks.iter().any(|k| taken(k)) {
        return None;
    }
    Some(repacks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rule(must: &str, not: &str, regex: bool, episodes: &str) -> RuleMatcher {
        RuleMatcher::new(&RulePatterns {
            must_contain: must.into(),
            must_not_contain: not.into(),
            use_regex: regex,
            episode_filter: episodes.into(),
        })
        .unwrap()
    }

    #[test]
    fn wildcards_are_unordered_tokens_and_alternatives() {
        let r = rule("expression ubuntu*desktop", "", false, "");
        assert!(r.matches("Ubuntu 24.04 Desktop amd64 EXPRESSION"));
        assert!(!r.matches("ubuntu server expression"));
        let r = rule("fedora|ubu?tu", "", false, "");
        assert!(r.matches("Ubuntu"));
        assert!(r.matches("FEDORA 40"));
        assert!(!r.matches("debian"));
        // An empty alternative matches anything, as a regex `a|` would.
        assert!(rule("nothing|", "", false, "").matches("anything"));
        // Regex characters in wildcards are literal.
        assert!(rule("a.b", "", false, "").matches("a.b"));
        assert!(!rule("a.b", "", false, "").matches("axb"));
    }

    #[test]
    fn must_not_contain_rejects_any_alternative() {
        let r = rule("show", "720p|cam x264", false, "");
        assert!(r.matches("Show 1080p x265"));
        assert!(!r.matches("Show 720p"));
        assert!(!r.matches("Show x264 CAM"));
        assert!(r.matches("Show x264"));
    }

    #[test]
    fn regex_mode_is_one_case_insensitive_expression() {
        let r = rule(r"^show\.s\d+", r"(?:720|480)p", true, "");
        assert!(r.matches("SHOW.S01E01.1080p"));
        assert!(!r.matches("SHOW.S01E01.720p"));
        assert!(!r.matches("The SHOW.S01E01"));
        assert!(
            RuleMatcher::new(&RulePatterns {
                must_contain: "(".into(),
                use_regex: true,
                ..Default::default()
            })
            .is_err()
        );
        // Patterns that compile into something huge are refused, not run.
        assert!(
            RuleMatcher::new(&RulePatterns {
                must_contain: r"\w{1000}\w{1000}\w{1000}".into(),
                use_regex: true,
                ..Default::default()
            })
            .is_err()
        );
    }

    #[test]
    fn episode_filter_as_qbittorrent_documents_it() {
        // qBittorrent's examples: 1x2;8-15;5;30-;
        let r = rule("", "", false, "1x2;8-15;5;30-;");
        for yes in [
            "Show S01E02 720p",
            "Show s1e05",
            "Show 1x08",
            "Show.S01E15",
            "Show S01E30",
            "Show S01E99",
            "Show S02E01",
            "Show 3x01",
        ] {
            assert!(r.matches(yes), "{yes}");
        }
        for no in [
            "Show S01E03",
            "Show S01E16",
            "Show S01E29",
            "Show S00E02",
            "Show",
        ] {
            assert!(!r.matches(no), "{no}");
        }
        assert!(rule("", "", false, "1x01;").matches("Show S01E01"));
        // A reversed range is ignored.
        assert!(!rule("", "", false, "1x15-8;").matches("Show S01E10"));
        for bad in [
            "1x",
            "x2;",
            "1x2",
            "1x2;;",
            "ax2;",
            "1x2;3-4-5;",
            "12345x1;",
            "1x-3;",
        ] {
            assert!(EpisodeFilter::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn episode_keys_of_the_usual_forms() {
        assert_eq!(episode_keys("Show.S01E02.720p"), ["S01E02"]);
        assert_eq!(episode_keys("Show 1x2"), ["S01E02"]);
        assert_eq!(episode_keys("Show S01E01E02"), ["S01E01", "S01E02"]);
        assert_eq!(episode_keys("Show S01E01-E02"), ["S01E01", "S01E02"]);
        assert_eq!(
            episode_keys("Show S01E01-E03"),
            ["S01E01", "S01E02", "S01E03"]
        );
        assert_eq!(episode_keys("Daily 2026.01.02"), ["2026-01-02"]);
        assert_eq!(episode_keys("Daily 2026-1-2 x"), ["2026-01-02"]);
        assert!(episode_keys("Ubuntu 24.04").is_empty());
    }

    #[test]
    fn smart_filter_takes_each_episode_once_and_one_repack() {
        let mut taken: Vec<String> = Vec::new();
        let mut take = |title: &str| {
            let got = smart_filter(title, |k| taken.iter().any(|t| t == k));
            if let Some(keys) = &got {
                taken.extend(keys.iter().cloned());
            }
            got.is_some()
        };
        assert!(take("Show S01E01 1080p"));
        assert!(!take("Show S01E01 720p"));
        assert!(take("Show S01E01 REPACK 1080p"));
        assert!(!take("Show S01E01 PROPER"));
        assert!(take("Show S01E02"));
        assert!(!take("Show S01E01E02"));
        assert!(take("Show S01E03-E04"));
        assert!(!take("Show S01E04"));
        // Not an episode: never a repeat.
        assert!(take("Ubuntu"));
        assert!(take("Ubuntu"));
        // "REPACKAGED" is not a repack.
        assert!(!take("Show S01E02 REPACKAGED"));
    }

    proptest! {
        #[test]
        fn never_panics(must in ".{0,40}", not in ".{0,40}", regex: bool,
                        episodes in "[0-9x;\\-]{0,20}", title in ".{0,200}") {
            if let Ok(r) = RuleMatcher::new(&RulePatterns {
                must_contain: must,
                must_not_contain: not,
                use_regex: regex,
                episode_filter: episodes,
            }) {
                let _ = r.matches(&title);
            }
            let _ = smart_filter(&title, |_| true);
            let _ = episode_keys(&title);
        }

        #[test]
        fn episode_filter_never_panics(text in "\\PC{0,60}", title in "\\PC{0,80}") {
            if let Ok(f) = EpisodeFilter::parse(&text) {
                let _ = f.matches(&title);
            }
        }
    }
}
