//! `ProgressBus` in memory, with replay.

use super::*;

/// Keeps every event; subscribers get a replay and then whatever is published later.
#[derive(Default)]
pub struct MemoryBus {
    events: Mutex<Vec<PublishedEvent>>,
    subscribers: Mutex<Vec<(JobId, mpsc::Sender<PublishedEvent>)>>,
    owners: Mutex<Vec<(OwnerId, mpsc::Sender<PublishedEvent>)>>,
}

impl MemoryBus {
    pub fn events_of(&self, job_id: JobId) -> Vec<JobEvent> {
        lock(&self.events)
            .iter()
            .filter(|e| e.event.job_id == job_id)
            .map(|e| e.event.clone())
            .collect()
    }
}

#[async_trait]
impl ProgressBus for MemoryBus {
    async fn publish(&self, event: &JobEvent) -> Result<EventId, BusError> {
        let published = {
            let mut events = lock(&self.events);
            let p = PublishedEvent {
                id: EventId(format!("{}", events.len() + 1)),
                event: event.clone(),
            };
            events.push(p.clone());
            p
        };
        let mut subs = lock(&self.subscribers);
        subs.retain(|(job, tx)| *job != event.job_id || tx.try_send(published.clone()).is_ok());
        lock(&self.owners)
            .retain(|(owner, tx)| *owner != event.owner || tx.try_send(published.clone()).is_ok());
        Ok(published.id)
    }

    async fn subscribe(
        &self,
        job_id: JobId,
        from: &Replay,
    ) -> Result<mpsc::Receiver<PublishedEvent>, BusError> {
        let events = lock(&self.events);
        let after: usize = match from {
            Replay::Retained => 0,
            Replay::LiveOnly => events.len(),
            Replay::After(id) => {
                id.0.parse()
                    .map_err(|_| BusError::BadEventId(id.0.clone()))?
            }
        };
        let (tx, rx) = mpsc::channel(4096);
        for e in events
            .iter()
            .skip(after)
            .filter(|e| e.event.job_id == job_id)
        {
            let _ = tx.try_send(e.clone());
        }
        lock(&self.subscribers).push((job_id, tx));
        drop(events);
        Ok(rx)
    }

    async fn subscribe_owner(
        &self,
        owner: &OwnerId,
    ) -> Result<mpsc::Receiver<PublishedEvent>, BusError> {
        let (tx, rx) = mpsc::channel(4096);
        lock(&self.owners).push((owner.clone(), tx));
        Ok(rx)
    }
}
