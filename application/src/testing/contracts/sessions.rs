//! The `Sessions` contract: browser sessions in logical time (the `now` each call is given).

use std::time::Duration;

use ferry_domain::OwnerId;

use super::accounts::{HOSTILE, at, owner};
use crate::ports::*;

const MINUTE: i64 = 60;

fn session(user: &OwnerId, hours: i64) -> Session {
    Session {
        user: user.clone(),
        created_at: at(0),
        last_seen_at: at(0),
        expires_at: at(hours * 3600),
        user_agent: Some(HOSTILE.to_owned()),
        ip: Some("2001:db8::1".to_owned()),
    }
}

/// `Sessions`: round trips; a session ends `idle` after its last request or at its absolute
/// end, whichever comes first, and is gone from then on (a later, or earlier, `get` finds
/// nothing, a late `touch` revives nothing); logout; "sign out everywhere" for one user only.
pub async fn sessions_contract(sessions: &dyn Sessions) {
    let idle = Duration::from_secs(30 * 60);
    let alice = owner("alice");
    let bob = owner("bob");

    let busy = [1; 32];
    let s1 = session(&alice, 12);
    sessions.create(&busy, &s1, idle).await.unwrap();
    assert_eq!(
        sessions.get(&busy, at(MINUTE), idle).await.unwrap(),
        Some(s1.clone())
    );
    assert_eq!(sessions.get(&[0xff; 32], at(0), idle).await.unwrap(), None);
    // A request moves the idle end.
    sessions.touch(&busy, at(20 * MINUTE), idle).await.unwrap();
    let seen = sessions.get(&busy, at(40 * MINUTE), idle).await.unwrap();
    assert_eq!(seen.map(|s| s.last_seen_at), Some(at(20 * MINUTE)));
    assert_eq!(
        sessions.get(&busy, at(50 * MINUTE), idle).await.unwrap(),
        None,
        "idle for 30 minutes"
    );
    assert_eq!(
        sessions.get(&busy, at(21 * MINUTE), idle).await.unwrap(),
        None,
        "and deleted"
    );
    sessions.touch(&busy, at(22 * MINUTE), idle).await.unwrap();
    assert_eq!(
        sessions.get(&busy, at(22 * MINUTE), idle).await.unwrap(),
        None
    );

    // Kept busy, it still ends at its absolute end.
    let short = [2; 32];
    sessions
        .create(&short, &session(&alice, 1), idle)
        .await
        .unwrap();
    for m in [20, 40, 55] {
        sessions.touch(&short, at(m * MINUTE), idle).await.unwrap();
        assert!(
            sessions
                .get(&short, at(m * MINUTE), idle)
                .await
                .unwrap()
                .is_some()
        );
    }
    assert_eq!(
        sessions.get(&short, at(60 * MINUTE), idle).await.unwrap(),
        None,
        "ended at its absolute end"
    );
    assert_eq!(
        sessions.get(&short, at(56 * MINUTE), idle).await.unwrap(),
        None,
        "and deleted"
    );

    // A touch after the idle end does not bring a session back.
    let idled = [3; 32];
    sessions
        .create(&idled, &session(&alice, 12), idle)
        .await
        .unwrap();
    sessions.touch(&idled, at(31 * MINUTE), idle).await.unwrap();
    assert_eq!(
        sessions.get(&idled, at(31 * MINUTE), idle).await.unwrap(),
        None
    );

    // Logout, twice.
    let out = [4; 32];
    sessions
        .create(&out, &session(&alice, 12), idle)
        .await
        .unwrap();
    sessions.delete(&out).await.unwrap();
    sessions.delete(&out).await.unwrap();
    assert_eq!(sessions.get(&out, at(MINUTE), idle).await.unwrap(), None);

    sign_out_everywhere(sessions, &alice, &bob, idle).await;
    sweep(sessions, &bob, idle).await;
}

/// A sweep ends what has ended and nothing else (a store that expires entries by itself
/// may report 0).
async fn sweep(sessions: &dyn Sessions, user: &OwnerId, idle: Duration) {
    let (live, idled) = ([10; 32], [11; 32]);
    let mut recent = session(user, 12);
    recent.last_seen_at = at(30 * MINUTE);
    sessions.create(&live, &recent, idle).await.unwrap();
    sessions
        .create(&idled, &session(user, 12), idle)
        .await
        .unwrap();
    sessions.sweep(at(45 * MINUTE), idle).await.unwrap();
    assert_eq!(
        sessions.get(&live, at(45 * MINUTE), idle).await.unwrap(),
        Some(recent),
        "a live session survives the sweep"
    );
    assert_eq!(
        sessions.get(&idled, at(45 * MINUTE), idle).await.unwrap(),
        None
    );
    sessions.delete(&live).await.unwrap();
}

async fn sign_out_everywhere(
    sessions: &dyn Sessions,
    alice: &OwnerId,
    bob: &OwnerId,
    idle: Duration,
) {
    let mine = [[5; 32], [6; 32]];
    let bobs = [7; 32];
    for hash in &mine {
        sessions
            .create(hash, &session(alice, 12), idle)
            .await
            .unwrap();
    }
    let mut bob_session = session(bob, 12);
    bob_session.user_agent = None;
    bob_session.ip = None;
    sessions.create(&bobs, &bob_session, idle).await.unwrap();
    // Each sees their own live sessions only, newest first.
    let mut newer = session(alice, 12);
    newer.created_at = at(MINUTE);
    newer.last_seen_at = at(MINUTE);
    let (newest, idled) = ([12; 32], [13; 32]);
    sessions.create(&newest, &newer, idle).await.unwrap();
    let mut old = session(alice, 12);
    old.last_seen_at = at(-40 * MINUTE);
    old.created_at = at(-40 * MINUTE);
    sessions.create(&idled, &old, idle).await.unwrap();
    let listed = sessions.list(alice, at(2 * MINUTE), idle).await.unwrap();
    let hashes: Vec<SecretHash> = listed.iter().map(|(h, _)| *h).collect();
    assert_eq!(
        hashes,
        vec![newest, mine[0], mine[1]],
        "newest first, idled out left out"
    );
    assert_eq!(listed[0].1, newer);
    assert_eq!(
        sessions.list(bob, at(2 * MINUTE), idle).await.unwrap(),
        vec![(bobs, bob_session.clone())]
    );
    assert_eq!(
        sessions.list(&owner("nobody"), at(0), idle).await.unwrap(),
        vec![]
    );
    sessions.delete(&newest).await.unwrap();
    sessions.delete(&idled).await.unwrap();
    assert_eq!(sessions.delete_user(alice).await.unwrap(), 2);
    for hash in &mine {
        assert_eq!(sessions.get(hash, at(MINUTE), idle).await.unwrap(), None);
    }
    assert_eq!(
        sessions.get(&bobs, at(MINUTE), idle).await.unwrap(),
        Some(bob_session),
        "bob stays signed in"
    );
    assert_eq!(sessions.delete_user(alice).await.unwrap(), 0);
    assert_eq!(
        sessions.list(alice, at(MINUTE), idle).await.unwrap(),
        vec![]
    );
    assert_eq!(sessions.delete_user(&owner("nobody")).await.unwrap(), 0);
    // Signing in again afterwards works, and counts afresh.
    let again = [8; 32];
    sessions
        .create(&again, &session(alice, 12), idle)
        .await
        .unwrap();
    assert!(
        sessions
            .get(&again, at(MINUTE), idle)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(sessions.delete_user(alice).await.unwrap(), 1);
    assert_eq!(sessions.delete_user(bob).await.unwrap(), 1);
}
