//! `AuditLog` in memory: append and read, as the adapters.

use super::*;

use crate::testing::contracts::AUDIT_PAGE_MAX as PAGE_MAX;

#[derive(Default)]
pub struct MemoryAudit {
    entries: Mutex<Vec<AuditEntry>>,
}

fn matches(e: &AuditEntry, q: &AuditQuery) -> bool {
    let action = match q.action.as_deref() {
        None => true,
        Some(prefix) if prefix.ends_with('.') => e.action.starts_with(prefix),
        Some(exact) => e.action == exact,
    };
    action
        && q.actor.as_ref().is_none_or(|a| e.actor.as_ref() == Some(a))
        && q.since.is_none_or(|since| e.at >= since)
        && q.until.is_none_or(|until| e.at < until)
        && q.before.is_none_or(|before| e.id < before)
}

#[async_trait]
impl AuditLog for MemoryAudit {
    async fn append(&self, entry: &AuditEntry) -> Result<i64, RepoError> {
        let mut all = lock(&self.entries);
        let id = all.last().map_or(1, |e| e.id + 1);
        all.push(AuditEntry {
            id,
            ..entry.clone()
        });
        Ok(id)
    }

    async fn query(&self, q: &AuditQuery) -> Result<Vec<AuditEntry>, RepoError> {
        let limit = match q.limit {
            0 => PAGE_MAX,
            n => n.min(PAGE_MAX),
        };
        Ok(lock(&self.entries)
            .iter()
            .rev()
            .filter(|e| matches(e, q))
            .take(usize::try_from(limit).unwrap_or(usize::MAX))
            .cloned()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn the_fake_passes_the_contract() {
        crate::testing::contracts::audit_log_contract(&super::MemoryAudit::default()).await;
    }
}
