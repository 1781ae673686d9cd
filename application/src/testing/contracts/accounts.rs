//! The accounts' contracts: users and identities, setup links, personal tokens, browser
//! sessions and the audit log. Each suite expects a store of its own, empty at the start.
//!
//! Time is the `now`/`at` the caller passes (from [`epoch`]), never the wall clock, so a
//! suite takes no longer than its round trips; hostile strings (quotes, `%`, `_`, `;`,
//! newlines, emoji) go wherever a caller's text goes.

use std::time::Duration;

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use ferry_domain::{
    Identity, OwnerId, PersonalToken, Quotas, Role, Scopes, TokenId, User, UserName,
};
use futures::future::join_all;

use crate::ports::*;
use crate::testing::epoch;

/// The most records one audit query returns; a limit of 0 asks for this many.
pub const AUDIT_PAGE_MAX: u64 = 500;

const HOSTILE: &str = "it's \"quoted\"; DROP TABLE users; -- 100%_ \\ \n\u{1F600}";

fn at(secs: i64) -> DateTime<Utc> {
    epoch() + ChronoDuration::seconds(secs)
}

fn owner(id: &str) -> OwnerId {
    OwnerId::parse(id).unwrap()
}

fn name(text: &str) -> UserName {
    UserName::parse(text).unwrap()
}

fn account(id: &str, display_name: &str, created: i64) -> User {
    User {
        id: owner(id),
        display_name: display_name.to_owned(),
        email: None,
        role: Role::User,
        disabled: false,
        quotas: Quotas::default(),
        created_at: at(created),
        last_seen_at: None,
    }
}

fn local(login: &str, password_hash: Option<&str>) -> Identity {
    Identity::Local {
        name: name(login),
        password_hash: password_hash.map(str::to_owned),
    }
}

/// `UserRepository`: round trips, identities unique across users (refused whole, in one
/// transaction), local passwords, updates, touches, and single-use setup links.
pub async fn user_repository_contract(users: &dyn UserRepository) {
    let issuer = "https://idp.example/realms/ferry";
    let oidc = Identity::Oidc {
        issuer: issuer.to_owned(),
        subject: "sub-1".to_owned(),
    };
    let mut alice = account("alice", HOSTILE, 0);
    alice.email = Some("alice@example.org".to_owned());
    alice.quotas = Quotas {
        active_jobs: Some(3),
        job_bytes: Some(1 << 40),
        stored_bytes: None,
        seeding_jobs: Some(0),
    };
    users.insert(&alice, Some(&oidc)).await.unwrap();
    assert_eq!(users.get(&alice.id).await.unwrap(), Some(alice.clone()));
    assert_eq!(users.get(&owner("nobody")).await.unwrap(), None);
    assert_eq!(
        users.by_oidc(issuer, "sub-1").await.unwrap(),
        Some(alice.clone())
    );
    for (i, s) in [
        (issuer, "sub-2"),
        ("https://other.example", "sub-1"),
        (issuer, "%"),
        ("%", "%"),
        ("' OR '1'='1", "' OR '1'='1"),
    ] {
        assert_eq!(users.by_oidc(i, s).await.unwrap(), None, "{i} {s}");
    }
    assert_eq!(
        users.identities(&alice.id).await.unwrap(),
        vec![oidc.clone()]
    );

    // A taken id or identity refuses the whole insert.
    assert!(matches!(
        users.insert(&alice, None).await,
        Err(RepoError::AlreadyExists)
    ));
    let mallory = account("mallory", "Mallory", 1);
    assert!(matches!(
        users.insert(&mallory, Some(&oidc)).await,
        Err(RepoError::AlreadyExists)
    ));
    assert_eq!(users.get(&mallory.id).await.unwrap(), None, "no user left");

    // Local names are exact (`_` is no wildcard) and case-insensitive through `UserName`.
    let carol = account("carol", "Carol", 2);
    users
        .insert(&carol, Some(&local("Carol_1", None)))
        .await
        .unwrap();
    assert_eq!(
        users.by_local_name(&name("carol_1")).await.unwrap(),
        Some((carol.clone(), None))
    );
    for other in ["carolx1", "carol", "carol_", "_arol_1"] {
        assert_eq!(users.by_local_name(&name(other)).await.unwrap(), None);
    }
    let dave = account("dave", "Dave", 3);
    assert!(matches!(
        users
            .insert(&dave, Some(&local("CAROL_1", Some("x"))))
            .await,
        Err(RepoError::AlreadyExists)
    ));
    assert_eq!(users.get(&dave.id).await.unwrap(), None, "no user left");

    local_passwords(users, &carol, &dave).await;

    // Oldest first, whatever the order of insertion.
    let erin = account("erin", "Erin", -10);
    users.insert(&erin, None).await.unwrap();
    let listed: Vec<OwnerId> = users
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.id)
        .collect();
    assert_eq!(
        listed,
        vec![erin.id, alice.id.clone(), carol.id.clone(), dave.id.clone()]
    );

    user_updates(users, &alice, &carol).await;
    setup_links(users, &dave).await;
}

async fn local_passwords(users: &dyn UserRepository, carol: &User, dave: &User) {
    users.insert(dave, None).await.unwrap();
    assert!(users.identities(&dave.id).await.unwrap().is_empty());
    let login = name("Dave@Example.org");
    users
        .set_local_password(&dave.id, &login, "$argon2id$v=19$first")
        .await
        .unwrap();
    assert_eq!(
        users.by_local_name(&login).await.unwrap(),
        Some((dave.clone(), Some("$argon2id$v=19$first".to_owned())))
    );
    users
        .set_local_password(&dave.id, &login, HOSTILE)
        .await
        .unwrap();
    assert_eq!(
        users.identities(&dave.id).await.unwrap(),
        vec![local("dave@example.org", Some(HOSTILE))],
        "replaced, not added"
    );
    assert!(matches!(
        users
            .set_local_password(&dave.id, &name("carol_1"), "third")
            .await,
        Err(RepoError::AlreadyExists)
    ));
    assert_eq!(
        users.by_local_name(&name("carol_1")).await.unwrap(),
        Some((carol.clone(), None)),
        "carol's login is untouched"
    );
    assert_eq!(
        users.by_local_name(&login).await.unwrap().map(|(_, h)| h),
        Some(Some(HOSTILE.to_owned())),
        "dave's login is untouched"
    );
    assert!(matches!(
        users
            .set_local_password(&owner("nobody"), &name("nobody"), "h")
            .await,
        Err(RepoError::NotFound)
    ));
    assert_eq!(users.by_local_name(&name("nobody")).await.unwrap(), None);
}

async fn user_updates(users: &dyn UserRepository, alice: &User, carol: &User) {
    // Seen: written, then skipped or written within a minute, written after.
    users.touch(&carol.id, at(100)).await.unwrap();
    let seen = |u: Option<User>| u.unwrap().last_seen_at;
    assert_eq!(seen(users.get(&carol.id).await.unwrap()), Some(at(100)));
    users.touch(&carol.id, at(130)).await.unwrap();
    let soon = seen(users.get(&carol.id).await.unwrap());
    assert!(soon == Some(at(100)) || soon == Some(at(130)), "{soon:?}");
    users.touch(&carol.id, at(200)).await.unwrap();
    assert_eq!(seen(users.get(&carol.id).await.unwrap()), Some(at(200)));
    users.touch(&owner("nobody"), at(200)).await.unwrap();

    // An update writes its fields, and leaves the rest (creation, last seen) alone.
    let mut changed = carol.clone();
    changed.display_name = HOSTILE.to_owned();
    changed.email = Some("c'%_@example.org".to_owned());
    changed.role = Role::Admin;
    changed.disabled = true;
    changed.quotas = Quotas {
        active_jobs: Some(1),
        job_bytes: Some(2),
        stored_bytes: Some(u64::from(u32::MAX) * 4),
        seeding_jobs: Some(4),
    };
    changed.created_at = at(999);
    users.update(&changed).await.unwrap();
    let stored = users.get(&carol.id).await.unwrap().unwrap();
    changed.created_at = carol.created_at;
    changed.last_seen_at = Some(at(200));
    assert_eq!(stored, changed);
    changed.email = None;
    changed.quotas = Quotas::default();
    changed.disabled = false;
    users.update(&changed).await.unwrap();
    assert_eq!(users.get(&carol.id).await.unwrap(), Some(changed));
    assert_eq!(
        users.get(&alice.id).await.unwrap().as_ref(),
        Some(alice),
        "others untouched"
    );
    assert!(matches!(
        users.update(&account("nobody", "Nobody", 0)).await,
        Err(RepoError::NotFound)
    ));
}

async fn setup_links(users: &dyn UserRepository, dave: &User) {
    let link = [7; 32];
    users
        .insert_setup_link(&link, &dave.id, at(3600))
        .await
        .unwrap();
    assert_eq!(users.take_setup_link(&[8; 32], at(0)).await.unwrap(), None);
    // Many requests race for one link: exactly one gets it.
    let takes = join_all((0..8).map(|_| users.take_setup_link(&link, at(10)))).await;
    let taken: Vec<OwnerId> = takes.into_iter().filter_map(Result::unwrap).collect();
    assert_eq!(taken, vec![dave.id.clone()], "a link works exactly once");
    assert_eq!(users.take_setup_link(&link, at(20)).await.unwrap(), None);

    let late = [9; 32];
    users
        .insert_setup_link(&late, &dave.id, at(3600))
        .await
        .unwrap();
    assert_eq!(
        users.take_setup_link(&late, at(3600)).await.unwrap(),
        None,
        "expired at its end"
    );
    assert_eq!(
        users.take_setup_link(&late, at(0)).await.unwrap(),
        None,
        "an expired link is gone once tried"
    );
}

fn token(owner: &OwnerId, name: &str, created: i64, secret: u8) -> PersonalToken {
    PersonalToken {
        id: TokenId::new(),
        owner: owner.clone(),
        name: name.to_owned(),
        scopes: Scopes::parse("read write").unwrap(),
        secret_sha256: [secret; 32],
        created_at: at(created),
        expires_at: None,
        last_used_at: None,
    }
}

/// `TokenRepository`: round trips, newest first, scoped by owner for listing and revoking
/// (found by id for anyone, since the secret decides), throttled touches.
pub async fn token_repository_contract(tokens: &dyn TokenRepository) {
    let alice = owner("alice");
    let bob = owner("bob");
    let first = token(&alice, HOSTILE, 0, 1);
    let mut second = token(&alice, "ci", 10, 2);
    second.scopes = Scopes::parse("read").unwrap();
    second.expires_at = Some(at(86_400));
    second.last_used_at = Some(at(5));
    let bobs = token(&bob, "bob's", 5, 3);
    for t in [&first, &second, &bobs] {
        tokens.insert(t).await.unwrap();
    }
    assert!(matches!(
        tokens.insert(&first).await,
        Err(RepoError::AlreadyExists)
    ));
    assert_eq!(tokens.get(first.id).await.unwrap(), Some(first.clone()));
    assert_eq!(tokens.get(bobs.id).await.unwrap(), Some(bobs.clone()));
    assert_eq!(tokens.get(TokenId::new()).await.unwrap(), None);
    assert_eq!(
        tokens.list(&alice).await.unwrap(),
        vec![second.clone(), first.clone()]
    );
    assert_eq!(tokens.list(&bob).await.unwrap(), vec![bobs.clone()]);
    assert!(tokens.list(&owner("carol")).await.unwrap().is_empty());

    // Another owner's token cannot be revoked.
    assert!(matches!(
        tokens.revoke(&bob, first.id).await,
        Err(RepoError::NotFound)
    ));
    assert_eq!(tokens.get(first.id).await.unwrap(), Some(first.clone()));

    let used = |t: Option<PersonalToken>| t.unwrap().last_used_at;
    tokens.touch(first.id, at(100)).await.unwrap();
    assert_eq!(used(tokens.get(first.id).await.unwrap()), Some(at(100)));
    tokens.touch(first.id, at(130)).await.unwrap();
    let soon = used(tokens.get(first.id).await.unwrap());
    assert!(soon == Some(at(100)) || soon == Some(at(130)), "{soon:?}");
    tokens.touch(first.id, at(200)).await.unwrap();
    assert_eq!(used(tokens.get(first.id).await.unwrap()), Some(at(200)));
    tokens.touch(TokenId::new(), at(200)).await.unwrap();
    assert_eq!(
        used(tokens.get(second.id).await.unwrap()),
        Some(at(5)),
        "others untouched"
    );

    tokens.revoke(&alice, first.id).await.unwrap();
    assert_eq!(tokens.get(first.id).await.unwrap(), None);
    assert_eq!(tokens.list(&alice).await.unwrap(), vec![second]);
    assert!(matches!(
        tokens.revoke(&alice, first.id).await,
        Err(RepoError::NotFound)
    ));
    assert_eq!(tokens.list(&bob).await.unwrap(), vec![bobs]);
}

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

fn record(secs: i64, actor: Option<&OwnerId>, action: &str, outcome: AuditOutcome) -> AuditEntry {
    AuditEntry {
        id: 0,
        at: at(secs),
        actor: actor.cloned(),
        action: action.to_owned(),
        target: None,
        outcome,
        ip: None,
        user_agent: None,
        detail: None,
    }
}

fn query(f: impl FnOnce(&mut AuditQuery)) -> AuditQuery {
    let mut q = AuditQuery {
        limit: 100,
        ..AuditQuery::default()
    };
    f(&mut q);
    q
}

/// `AuditLog`: increasing ids, newest first, paging with `before`, filters by actor, exact
/// action or prefix ending in `.` (whose `%` and `_` are plain characters), `since`
/// (inclusive) and `until` (exclusive), and at most [`AUDIT_PAGE_MAX`] records a query.
pub async fn audit_log_contract(log: &dyn AuditLog) {
    use AuditOutcome::{Failure, Success};
    let alice = owner("alice");
    let admin = owner("admin");
    let mut failed = record(10, None, "login", Failure);
    failed.detail = Some(HOSTILE.to_owned());
    failed.user_agent = Some(HOSTILE.to_owned());
    failed.ip = Some("203.0.113.9".to_owned());
    let mut disable = record(20, Some(&admin), "admin.user.disable", Success);
    disable.target = Some(alice.as_str().to_owned());
    let mut written = vec![
        record(0, Some(&alice), "login", Success),
        failed,
        disable,
        record(30, Some(&admin), "admin.token.revoke", Success),
        record(40, Some(&alice), "administer", Success),
        record(50, Some(&alice), "token.create", Success),
        record(60, Some(&admin), "adminXuser.disable", Failure),
        record(70, Some(&alice), "50%.off", Success),
    ];
    let mut last = 0;
    for entry in &mut written {
        entry.id = log.append(entry).await.unwrap();
        assert!(entry.id > last, "ids increase");
        last = entry.id;
    }
    let newest_first = |pick: &dyn Fn(&AuditEntry) -> bool| -> Vec<AuditEntry> {
        written.iter().rev().filter(|e| pick(e)).cloned().collect()
    };
    assert_eq!(
        log.query(&query(|_| {})).await.unwrap(),
        newest_first(&|_| true)
    );

    // Pages of three.
    let mut pages = Vec::new();
    let mut before = None;
    loop {
        let page = log
            .query(&query(|q| {
                q.limit = 3;
                q.before = before;
            }))
            .await
            .unwrap();
        let Some(end) = page.last() else { break };
        before = Some(end.id);
        pages.push(page);
    }
    assert_eq!(
        pages.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![3, 3, 2]
    );
    assert_eq!(pages.concat(), newest_first(&|_| true));

    let by_actor = log
        .query(&query(|q| q.actor = Some(alice.clone())))
        .await
        .unwrap();
    assert_eq!(
        by_actor,
        newest_first(&|e| e.actor.as_ref() == Some(&alice))
    );
    let logins = log
        .query(&query(|q| q.action = Some("login".into())))
        .await
        .unwrap();
    assert_eq!(logins, newest_first(&|e| e.action == "login"));
    let admin_actions = log
        .query(&query(|q| q.action = Some("admin.".into())))
        .await
        .unwrap();
    assert_eq!(
        admin_actions,
        newest_first(&|e| e.action.starts_with("admin."))
    );
    assert_eq!(admin_actions.len(), 2);
    let percent = log
        .query(&query(|q| q.action = Some("50%.".into())))
        .await
        .unwrap();
    assert_eq!(percent, newest_first(&|e| e.action == "50%.off"));
    for nothing in [
        "admin",
        "admin.user",
        "a_min.",
        "%.",
        "_.",
        "%",
        "'.",
        "admin.' OR '1'='1.",
    ] {
        let found = log
            .query(&query(|q| q.action = Some(nothing.into())))
            .await
            .unwrap();
        assert!(found.is_empty(), "{nothing:?} matched {found:?}");
    }
    let window = log
        .query(&query(|q| {
            q.since = Some(at(20));
            q.until = Some(at(50));
        }))
        .await
        .unwrap();
    assert_eq!(window, newest_first(&|e| e.at >= at(20) && e.at < at(50)));
    let combined = log
        .query(&query(|q| {
            q.actor = Some(admin.clone());
            q.action = Some("admin.".into());
            q.before = Some(written[3].id);
        }))
        .await
        .unwrap();
    assert_eq!(combined, vec![written[2].clone()]);

    // A page never holds more than the maximum, whatever is asked.
    let flood = owner("flood");
    for i in 0..=AUDIT_PAGE_MAX {
        let secs = 100 + i64::try_from(i).unwrap();
        log.append(&record(secs, Some(&flood), "job.submit", Success))
            .await
            .unwrap();
    }
    for limit in [0, AUDIT_PAGE_MAX + 1, u64::MAX] {
        let page = log
            .query(&query(|q| {
                q.actor = Some(flood.clone());
                q.limit = limit;
            }))
            .await
            .unwrap();
        assert_eq!(page.len() as u64, AUDIT_PAGE_MAX, "limit {limit}");
    }
}
