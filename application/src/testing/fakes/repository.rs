//! `JobRepository` in memory, with the SQL schema's unique index.

use super::*;

/// Whether `job` in `status` would be a second torrent job of its owner still downloading
/// its info-hash (the SQL repositories' unique index `jobs_one_unfinished_torrent`).
fn holds_torrent_place(jobs: &HashMap<JobId, Job>, job: &Job, status: JobStatus) -> bool {
    let unfinished = |s: JobStatus| {
        matches!(
            s,
            JobStatus::Queued | JobStatus::Resolving | JobStatus::Downloading | JobStatus::Paused
        )
    };
    let is_torrent = |j: &Job| !matches!(j.source, ferry_domain::JobSource::Url(_));
    job.info_hash.is_some()
        && is_torrent(job)
        && unfinished(status)
        && jobs.values().any(|o| {
            o.id != job.id
                && o.owner == job.owner
                && o.info_hash == job.info_hash
                && is_torrent(o)
                && unfinished(o.status)
        })
}

#[derive(Default)]
pub struct MemoryRepository {
    jobs: Mutex<HashMap<JobId, Job>>,
}

#[async_trait]
impl JobRepository for MemoryRepository {
    async fn insert(&self, job: &Job) -> Result<(), RepoError> {
        let mut jobs = lock(&self.jobs);
        if jobs.contains_key(&job.id) || holds_torrent_place(&jobs, job, job.status) {
            return Err(RepoError::AlreadyExists);
        }
        jobs.insert(job.id, job.clone());
        Ok(())
    }

    async fn get(&self, id: JobId) -> Result<Job, RepoError> {
        lock(&self.jobs)
            .get(&id)
            .cloned()
            .ok_or(RepoError::NotFound)
    }

    async fn status(&self, id: JobId) -> Result<JobStatus, RepoError> {
        lock(&self.jobs)
            .get(&id)
            .map(|j| j.status)
            .ok_or(RepoError::NotFound)
    }

    async fn watch(&self, id: JobId) -> Result<(JobStatus, ferry_domain::SpeedLimits), RepoError> {
        lock(&self.jobs)
            .get(&id)
            .map(|j| (j.status, j.speed_limits))
            .ok_or(RepoError::NotFound)
    }

    async fn queue_positions(&self, ids: &[JobId]) -> Result<HashMap<JobId, u32>, RepoError> {
        let jobs = lock(&self.jobs);
        let mut queued: Vec<&Job> = jobs
            .values()
            .filter(|j| j.status == JobStatus::Queued)
            .collect();
        queued.sort_by_key(|j| (j.updated_at, j.id.as_uuid()));
        let mut next = [0u32; 2];
        let mut out = HashMap::new();
        for j in queued {
            let kind = usize::from(matches!(j.source, ferry_domain::JobSource::Url(_)));
            next[kind] += 1;
            if ids.contains(&j.id) {
                out.insert(j.id, next[kind]);
            }
        }
        Ok(out)
    }

    async fn list(&self, q: &JobQuery) -> Result<Vec<Job>, RepoError> {
        let jobs = lock(&self.jobs);
        let mut out: Vec<Job> = jobs
            .values()
            .filter(|j| j.owner == q.owner)
            .filter(|j| q.status.is_none_or(|s| j.status == s))
            .filter(|j| {
                q.name_contains.as_ref().is_none_or(|t| {
                    j.name
                        .to_ascii_lowercase()
                        .contains(&t.to_ascii_lowercase())
                })
            })
            .filter(|j| q.before.is_none_or(|b| j.id < b))
            .filter(|j| q.torrents.as_ref().is_none_or(|t| torrent_matches(j, t)))
            .cloned()
            .collect();
        out.sort_by_key(|j| std::cmp::Reverse(j.id));
        out.truncate(q.limit as usize);
        Ok(out)
    }

    async fn transition(&self, id: JobId, c: &Transition) -> Result<Job, RepoError> {
        let mut jobs = lock(&self.jobs);
        let current = jobs.get(&id).ok_or(RepoError::NotFound)?;
        if current.status == c.from
            && (!current.purge_requested || c.to.is_terminal())
            && holds_torrent_place(&jobs, current, c.to)
        {
            return Err(RepoError::AlreadyExists);
        }
        let job = jobs.get_mut(&id).ok_or(RepoError::NotFound)?;
        if job.status != c.from || (job.purge_requested && !c.to.is_terminal()) {
            return Err(RepoError::Conflict {
                expected: c.from,
                actual: job.status,
            });
        }
        job.status = c.to;
        job.updated_at = c.at;
        job.error = c.error.clone();
        job.finished_at = c.to.is_terminal().then_some(c.at);
        if c.to == JobStatus::Seeding {
            job.seeding_started_at = Some(c.at);
        }
        if c.to == JobStatus::Queued {
            job.attempts = 0;
        }
        Ok(job.clone())
    }

    async fn request_purge(&self, id: JobId) -> Result<Job, RepoError> {
        let mut jobs = lock(&self.jobs);
        let job = jobs.get_mut(&id).ok_or(RepoError::NotFound)?;
        job.purge_requested = true;
        Ok(job.clone())
    }

    async fn record_metadata(&self, id: JobId, m: &TorrentMetadata) -> Result<(), RepoError> {
        let mut jobs = lock(&self.jobs);
        let job = jobs.get_mut(&id).ok_or(RepoError::NotFound)?;
        job.name = m.name.clone();
        job.info_hash = Some(m.info_hash);
        job.progress.bytes_total = m.selected_bytes();
        job.metadata = Some(m.clone());
        Ok(())
    }

    async fn record_digest(&self, id: JobId, index: usize, sha256: &str) -> Result<(), RepoError> {
        let mut jobs = lock(&self.jobs);
        let job = jobs.get_mut(&id).ok_or(RepoError::NotFound)?;
        if let Some(f) = job
            .metadata
            .as_mut()
            .and_then(|m| m.files.iter_mut().find(|f| f.index == index))
        {
            f.sha256 = Some(sha256.to_owned());
        }
        Ok(())
    }

    async fn record_progress(&self, id: JobId, p: &Progress) -> Result<(), RepoError> {
        let mut jobs = lock(&self.jobs);
        let job = jobs.get_mut(&id).ok_or(RepoError::NotFound)?;
        job.progress = *p;
        Ok(())
    }

    async fn record_attempt(
        &self,
        id: JobId,
        attempts: u32,
        error: Option<&JobError>,
    ) -> Result<(), RepoError> {
        let mut jobs = lock(&self.jobs);
        let job = jobs.get_mut(&id).ok_or(RepoError::NotFound)?;
        job.attempts = attempts;
        job.error = error.cloned();
        Ok(())
    }

    async fn find_unfinished_by_info_hash(
        &self,
        owner: &OwnerId,
        info_hash: InfoHash,
    ) -> Result<Option<JobId>, RepoError> {
        Ok(lock(&self.jobs)
            .values()
            .find(|j| {
                &j.owner == owner && j.info_hash == Some(info_hash) && !j.status.is_terminal()
            })
            .map(|j| j.id))
    }

    async fn unfinished(&self) -> Result<Vec<Unfinished>, RepoError> {
        let mut out: Vec<_> = lock(&self.jobs)
            .values()
            .filter(|j| {
                (!j.status.is_terminal() && j.status != JobStatus::Paused) || j.purge_requested
            })
            .map(|j| Unfinished {
                id: j.id,
                status: j.status,
                is_url: matches!(j.source, ferry_domain::JobSource::Url(_)),
                purge: j.purge_requested,
            })
            .collect();
        out.sort_by_key(|u| u.id);
        Ok(out)
    }

    async fn count_by_status(&self) -> Result<Vec<(JobStatus, u64)>, RepoError> {
        let mut counts: HashMap<JobStatus, u64> = HashMap::new();
        for job in lock(&self.jobs).values() {
            *counts.entry(job.status).or_default() += 1;
        }
        let mut out: Vec<(JobStatus, u64)> = counts.into_iter().collect();
        out.sort_by_key(|(s, _)| s.as_str());
        Ok(out)
    }

    async fn record_byte_limit(&self, id: JobId, limit: Option<u64>) -> Result<(), RepoError> {
        let mut jobs = lock(&self.jobs);
        jobs.get_mut(&id).ok_or(RepoError::NotFound)?.byte_limit = limit;
        Ok(())
    }

    async fn record_seed(
        &self,
        id: JobId,
        seed: Option<ferry_domain::SeedPolicy>,
    ) -> Result<(), RepoError> {
        let mut jobs = lock(&self.jobs);
        jobs.get_mut(&id).ok_or(RepoError::NotFound)?.seed = seed;
        Ok(())
    }

    async fn record_speed_limits(
        &self,
        id: JobId,
        change: ferry_domain::SpeedLimitsChange,
    ) -> Result<(), RepoError> {
        let mut jobs = lock(&self.jobs);
        let job = jobs.get_mut(&id).ok_or(RepoError::NotFound)?;
        job.speed_limits = change.applied_to(job.speed_limits);
        Ok(())
    }

    async fn record_content(&self, id: JobId, sha256: &str) -> Result<(), RepoError> {
        let mut jobs = lock(&self.jobs);
        let job = jobs.get_mut(&id).ok_or(RepoError::NotFound)?;
        job.content_sha256 = Some(sha256.to_owned());
        Ok(())
    }

    async fn find_packaged(
        &self,
        sha256: &str,
        name: &str,
    ) -> Result<Option<TorrentMetadata>, RepoError> {
        Ok(lock(&self.jobs)
            .values()
            .filter(|j| j.content_sha256.as_deref() == Some(sha256))
            .filter_map(|j| j.metadata.clone())
            .find(|m| m.name == name))
    }

    async fn delete(&self, id: JobId) -> Result<(), RepoError> {
        lock(&self.jobs)
            .remove(&id)
            .map(|_| ())
            .ok_or(RepoError::NotFound)
    }

    async fn ping(&self) -> Result<(), RepoError> {
        Ok(())
    }
}

/// Whether `job` is a torrent job the filter keeps.
fn torrent_matches(job: &Job, filter: &TorrentFilter) -> bool {
    let Some(hash) = job.info_hash else {
        return false;
    };
    !job.purge_requested
        && !matches!(job.source, ferry_domain::JobSource::Url(_))
        && filter
            .info_hashes
            .as_ref()
            .is_none_or(|hs| hs.contains(&hash))
        && filter.ids.as_ref().is_none_or(|ids| ids.contains(&job.id))
        && filter
            .statuses
            .as_ref()
            .is_none_or(|ss| ss.contains(&job.status))
}
