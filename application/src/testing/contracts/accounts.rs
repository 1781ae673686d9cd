//! The accounts' contracts: users and identities, setup links, personal tokens (and, in
//! `sessions` and `audit`, browser sessions and the audit log). Each suite expects a store
//! of its own, empty at the start.
//!
//! Time is the `now`/`at` the caller passes (from [`epoch`]), never the wall clock, so a
//! suite takes no longer than its round trips; hostile strings (quotes, `%`, `_`, `;`,
//! newlines, emoji) go wherever a caller's text goes.

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use ferry_domain::{
    Identity, OwnerId, PersonalToken, Quotas, Role, Scopes, TokenId, User, UserName,
};
use futures::future::join_all;

use crate::ports::*;
use crate::testing::epoch;

pub(super) const HOSTILE: &str = "it's \"quoted\"; DROP TABLE users; -- 100%_ \\ \n\u{1F600}";

pub(super) fn at(secs: i64) -> DateTime<Utc> {
    epoch() + ChronoDuration::seconds(secs)
}

pub(super) fn owner(id: &str) -> OwnerId {
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
    assert_eq!(users.get(&carol.id).await.unwrap(), Some(changed.clone()));
    assert_eq!(
        users.get(&alice.id).await.unwrap().as_ref(),
        Some(alice),
        "others untouched"
    );
    assert!(matches!(
        users.update(&account("nobody", "Nobody", 0)).await,
        Err(RepoError::NotFound)
    ));
    // The role alone: a disabled flag written meanwhile stays.
    let mut disabled = changed.clone();
    disabled.disabled = true;
    users.update(&disabled).await.unwrap();
    let role = |role| UserChange {
        role: Some(role),
        ..UserChange::default()
    };
    users.change(&carol.id, &role(Role::User)).await.unwrap();
    disabled.role = Role::User;
    assert_eq!(users.get(&carol.id).await.unwrap(), Some(disabled.clone()));
    // Two admins at once, one enabling, one setting quotas: both changes stay.
    let quotas = Quotas {
        job_bytes: Some(7),
        ..Quotas::default()
    };
    let enable = UserChange {
        disabled: Some(false),
        ..UserChange::default()
    };
    let limit = UserChange {
        quotas: Some(quotas),
        ..UserChange::default()
    };
    let (a, b) = futures::join!(
        users.change(&carol.id, &enable),
        users.change(&carol.id, &limit)
    );
    a.unwrap();
    b.unwrap();
    disabled.disabled = false;
    disabled.quotas = quotas;
    assert_eq!(users.get(&carol.id).await.unwrap(), Some(disabled));
    users
        .change(&carol.id, &UserChange::default())
        .await
        .unwrap();
    for change in [role(Role::Admin), UserChange::default()] {
        assert!(matches!(
            users
                .change(&account("nobody", "Nobody", 0).id, &change)
                .await,
            Err(RepoError::NotFound)
        ));
    }
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
