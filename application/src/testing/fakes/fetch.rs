//! `Fetcher`: registered URLs served from memory.

use super::*;

/// Serves registered URLs from memory; `NotAllowed` for hosts named `internal*`.
#[derive(Default)]
pub struct FakeFetcher {
    pages: Mutex<HashMap<String, Vec<u8>>>,
    /// URLs answering an error status instead of their page.
    failing: Mutex<HashMap<String, u16>>,
    /// While set, a body stops after its first half until released.
    held: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// URLs whose answers do not say their size.
    sizeless: Mutex<std::collections::HashSet<String>>,
}

impl FakeFetcher {
    pub fn serve(&self, url: &str, body: Vec<u8>) {
        lock(&self.pages).insert(url.to_owned(), body);
    }

    /// `url` answers `status` (`None`: its page again).
    pub fn answer(&self, url: &str, status: Option<u16>) {
        let mut failing = lock(&self.failing);
        match status {
            Some(s) => failing.insert(url.to_owned(), s),
            None => failing.remove(url),
        };
    }

    /// `url` answers without saying its size (a chunked body).
    pub fn hide_size(&self, url: &str) {
        lock(&self.sizeless).insert(url.to_owned());
    }

    /// Holds every body after its first half (a fetch stays in flight) until released.
    pub fn hold(&self, held: bool) {
        self.held.store(held, Ordering::SeqCst);
    }
}

struct FakeBody {
    info: FetchInfo,
    bytes: Vec<u8>,
    held: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

#[async_trait]
impl FetchBody for FakeBody {
    fn info(&self) -> &FetchInfo {
        &self.info
    }

    async fn bytes(self: Box<Self>, max: u64) -> Result<Vec<u8>, FetchError> {
        if self.bytes.len() as u64 > max {
            return Err(FetchError::TooLarge { limit: max });
        }
        Ok(self.bytes)
    }

    async fn save(
        self: Box<Self>,
        dest: &Path,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<Fetched, FetchError> {
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|e| FetchError::Unexpected(e.into()))?;
        }
        // A new file under the name (never a write through other names of the old one).
        let io = |e: std::io::Error| FetchError::Unexpected(e.into());
        let half = self.bytes.len() / 2;
        let _ = std::fs::remove_file(dest);
        std::fs::write(dest, &self.bytes[..half]).map_err(io)?;
        progress(half as u64);
        while self.held.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        std::fs::write(dest, &self.bytes).map_err(io)?;
        progress(self.bytes.len() as u64);
        Ok(Fetched {
            size: self.bytes.len() as u64,
            sha256: fake_digest(&self.bytes),
        })
    }
}

#[async_trait]
impl Fetcher for FakeFetcher {
    async fn open(
        &self,
        url: &ferry_domain::FetchUrl,
        _partial: Option<&Path>,
    ) -> Result<Box<dyn FetchBody>, FetchError> {
        if url
            .as_url()
            .host_str()
            .is_some_and(|h| h.starts_with("internal"))
        {
            return Err(FetchError::NotAllowed(format!("{url} is internal")));
        }
        if let Some(status) = lock(&self.failing).get(url.as_url().as_str()) {
            return Err(FetchError::Status(*status));
        }
        let bytes = lock(&self.pages)
            .get(url.as_url().as_str())
            .cloned()
            .ok_or(FetchError::Status(404))?;
        Ok(Box::new(FakeBody {
            info: FetchInfo {
                size: (!lock(&self.sizeless).contains(url.as_url().as_str()))
                    .then_some(bytes.len() as u64),
                mime: None,
                final_url: url.to_string(),
                resumed_from: 0,
            },
            bytes,
            held: self.held.clone(),
        }))
    }
}
