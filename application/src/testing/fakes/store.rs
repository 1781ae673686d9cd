//! `ObjectStore` in memory.

use super::*;

/// Objects held in memory; "located" as a made-up URL.
#[derive(Default)]
pub struct MemoryStore {
    objects: Mutex<HashMap<String, Vec<u8>>>,
    /// While set, a put reports half its bytes and waits before it stores anything.
    held: std::sync::atomic::AtomicBool,
    /// Puts started and not yet finished (or dropped).
    in_flight: std::sync::Arc<AtomicU64>,
}

/// Counts a put as in flight until it ends or is dropped.
struct InFlight(std::sync::Arc<AtomicU64>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl MemoryStore {
    pub fn keys(&self) -> Vec<String> {
        let mut k: Vec<_> = lock(&self.objects).keys().cloned().collect();
        k.sort();
        k
    }

    /// Holds every put halfway (an upload stays in flight) until released.
    pub fn hold(&self, held: bool) {
        self.held.store(held, Ordering::SeqCst);
    }

    /// Puts running now.
    pub fn puts_in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl ObjectStore for MemoryStore {
    async fn put_file(&self, req: PutRequest<'_>) -> Result<StoredObject, StoreError> {
        let bytes = match std::fs::read(req.source) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(StoreError::NotFound),
            Err(e) => return Err(StoreError::Unexpected(e.into())),
        };
        let n = bytes.len() as u64;
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let _in_flight = InFlight(self.in_flight.clone());
        (req.progress)(n / 2);
        while self.held.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        (req.progress)(n);
        let sha256 = fake_digest(&bytes);
        lock(&self.objects).insert(req.key.as_str().to_owned(), bytes);
        Ok(StoredObject { size: n, sha256 })
    }

    async fn abort_uploads(&self, _job: JobId) -> Result<(), StoreError> {
        Ok(())
    }

    async fn size(&self, key: &StorageKey) -> Result<Option<u64>, StoreError> {
        Ok(lock(&self.objects)
            .get(key.as_str())
            .map(|b| b.len() as u64))
    }

    async fn locate(&self, key: &StorageKey) -> Result<ObjectLocation, StoreError> {
        if lock(&self.objects).contains_key(key.as_str()) {
            Ok(ObjectLocation::Url(format!("memory://{key}")))
        } else {
            Err(StoreError::NotFound)
        }
    }

    async fn delete_prefix(&self, prefix: &StorageKey) -> Result<(), StoreError> {
        let p = prefix.as_str();
        lock(&self.objects).retain(|k, _| !(k == p || k.starts_with(&format!("{p}/"))));
        Ok(())
    }

    async fn check(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
