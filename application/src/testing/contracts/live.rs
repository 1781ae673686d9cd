//! The `LiveFiles` contract.

use std::time::Duration;

use ferry_domain::JobId;
use tokio::io::AsyncReadExt;

use super::{EngineFixture, finished};
use crate::ports::*;

/// All of `reader`, failing the test after 30 s.
async fn drain(mut reader: LiveReader) -> Vec<u8> {
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), reader.read_to_end(&mut out))
        .await
        .expect("the reader ended in time")
        .expect("the reader reads to its end");
    out
}

/// `LiveFiles`: a running job's selected file read from any position, also across the
/// job's hand-over (a reader opened before goes on); the staged file after it; files the
/// job does not download, jobs the engine does not run (or no longer runs) and staged files
/// delivered meanwhile are `NotRunning`. The fixture's data (two files or more) is staged first, so no
/// peer is needed.
pub async fn live_files_contract(
    engine: &dyn TorrentEngine,
    live: &dyn LiveFiles,
    inspector: &dyn TorrentInspector,
    staging: &dyn Staging,
    fixture: &EngineFixture,
) {
    assert!(
        fixture.files.len() >= 2,
        "the fixture has two files or more"
    );
    let meta = inspector.inspect(&fixture.metainfo).unwrap();
    let index_of = |path: &ferry_domain::SafePath| {
        meta.files
            .iter()
            .find(|f| f.path == path.as_str())
            .unwrap()
            .index
    };
    let (path, data) = &fixture.files[0];
    let (other_path, _) = &fixture.files[1];
    let (index, other_index) = (index_of(path), index_of(other_path));

    let job = JobId::new();
    assert!(matches!(
        live.open(job, index, 0).await,
        Err(LiveFileError::NotRunning)
    ));
    // Every file is staged: a piece may span the selected file and the next.
    for (path, data) in &fixture.files {
        let dest = staging.file(job, path);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::write(&dest, data).unwrap();
    }
    engine
        .start(TorrentSpec {
            job_id: job,
            metainfo: fixture.metainfo.clone(),
            only_files: Some(vec![index]),
            peers: vec![],
            data_dir: None,
            limits: Default::default(),
        })
        .await
        .unwrap();
    finished(engine, job).await;

    let len = data.len() as u64;
    for start in [0, 1, len / 2, len - 1] {
        let reader = live.open(job, index, start).await.unwrap();
        let from = usize::try_from(start).unwrap();
        assert!(drain(reader).await == data[from..], "read from {start}");
    }
    assert!(matches!(
        live.open(job, other_index, 0).await,
        Err(LiveFileError::NotRunning)
    ));
    assert!(matches!(
        live.open(JobId::new(), index, 0).await,
        Err(LiveFileError::NotRunning)
    ));

    // A reader opened before the hand-over reads the whole file after it.
    let mut open = live.open(job, index, 0).await.unwrap();
    let mut first = [0u8; 1];
    open.read_exact(&mut first).await.unwrap();
    engine.hand_over(job).await.unwrap();
    let rest = drain(open).await;
    assert_eq!(first[0], data[0]);
    assert!(rest == data[1..], "the rest, after the hand-over");
    assert!(matches!(
        live.open(job, index, 0).await,
        Err(LiveFileError::NotRunning)
    ));
    let staged = live.open_staged(job, path, 3).await.unwrap();
    assert!(drain(staged).await == data[3..]);
    staging.discard(job).await.unwrap();
    assert!(matches!(
        live.open_staged(job, path, 0).await,
        Err(LiveFileError::NotRunning)
    ));
}
