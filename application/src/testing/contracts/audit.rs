//! The `AuditLog` contract: append, then read newest first through every filter.

use ferry_domain::OwnerId;

use super::accounts::{HOSTILE, at, owner};
use crate::ports::*;

/// The most records one query returns; a limit of 0 asks for this many.
pub const AUDIT_PAGE_MAX: u64 = 500;

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
