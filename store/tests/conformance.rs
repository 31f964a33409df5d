//! One conformance suite, run against both backends: every typed operation of `Store`.

mod common;

use common::{Fixture, Kind, id16, id32, message, newest_first};
use tokenim_store::{
    Batch, Cf, ContactRecord, ContactState, Cursor, GroupRecord, MessageRecord, MessageState,
    OutboxRecord, Quota, Result, SCHEMA_VERSION, SCHEMA_VERSION_KEY, StoreError, StoreOptions,
    TokenRecord,
};

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod mem {
            $( #[test] fn $name() -> tokenim_store::Result<()> {
                super::cases::$name(super::Fixture::new(super::Kind::Mem))
            } )*
        }
        mod rocks {
            $( #[test] fn $name() -> tokenim_store::Result<()> {
                super::cases::$name(super::Fixture::new(super::Kind::Rocks))
            } )*
        }
    };
}

conformance!(
    backend_scan_bounds_reverse_limit,
    backend_batch_applies_in_order_with_ranges,
    meta_round_trip_and_reserved_keys,
    contacts_crud_and_find_by_name,
    sessions_crud,
    tokens_crud,
    outbox_crud_and_due_order,
    message_state_updates,
    list_messages_per_conversation_both_directions,
    list_messages_all_conversations,
    held_messages_stay_out_of_the_timeline_until_released,
    contact_states_round_trip,
    groups_put_get_list_delete,
    list_messages_limit_zero_and_empty,
    message_replace_moves_without_duplicates,
    message_id_conflict_is_refused,
    delete_message_removes_indexes,
    seen_ids_dedupe_and_expire,
    txn_is_all_or_nothing,
    txn_sees_its_own_writes,
    mailbox_put_page_dedupe_delete,
    mailbox_requires_registration,
    mailbox_put_many_is_atomic,
    quota_message_count,
    quota_mailbox_bytes,
    quota_total_bytes,
    retention_purges_only_expired,
    mailbox_counters_survive_reopen,
    mailbox_unregister_removes_everything,
    concurrent_mailbox_puts_are_consistent,
    concurrent_puts_respect_total_budget,
    schema_version_is_written_and_checked,
    corrupt_records_are_errors_and_lists_skip_them,
);

/// Sum of what paging through a mailbox returns, to check the counters against.
fn page_all(s: &tokenim_store::Store, mb: &[u8; 32]) -> Result<Vec<tokenim_store::StoredEnvelope>> {
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let page = s.mailbox_page(mb, after, 7)?;
        let Some(last) = page.last() else { break };
        after = Some(last.seq);
        all.extend(page);
    }
    Ok(all)
}

fn assert_counters_match(s: &tokenim_store::Store, mb: &[u8; 32]) -> Result<()> {
    let all = page_all(s, mb)?;
    let usage = s.mailbox_usage(mb)?;
    assert_eq!(usage.messages, all.len() as u64);
    assert_eq!(
        usage.bytes,
        all.iter().map(|e| e.envelope.len() as u64).sum::<u64>()
    );
    Ok(())
}

fn contact(n: u64, name: Option<&str>) -> ContactRecord {
    ContactRecord {
        identity_key: id32(n),
        name: name.map(str::to_owned),
        card_uri: format!("tokenim:card{n}"),
        added_at: 100 + n,
        updated_at: 100 + n,
        state: ContactState::Accepted,
        write_grant: Vec::new(),
        device_cards: vec![format!("tokenim:device-card{n}")],
    }
}

fn outbox(n: u64, next_attempt_ms: u64) -> OutboxRecord {
    OutboxRecord {
        id: id16(n),
        peer: id32(n % 3),
        message_id: n.is_multiple_of(2).then(|| id16(n)),
        envelope: vec![n as u8; 40],
        attempts: 0,
        next_attempt_ms,
        expires_at_ms: 1_000_000,
        created_at_ms: 10,
    }
}

mod cases {
    use super::*;

    pub fn backend_scan_bounds_reverse_limit(f: Fixture) -> Result<()> {
        let b = f.store().backend();
        let mut batch = Batch::new();
        for k in [1u8, 2, 3, 5, 8] {
            batch.put(Cf::Sessions, [k], [k * 10]);
        }
        b.write(batch)?;
        let keys =
            |rows: Vec<(Vec<u8>, Vec<u8>)>| rows.into_iter().map(|(k, _)| k[0]).collect::<Vec<_>>();
        assert_eq!(
            keys(b.scan(Cf::Sessions, &[2], Some(&[8]), 10, false)?),
            [2, 3, 5]
        );
        assert_eq!(
            keys(b.scan(Cf::Sessions, &[2], Some(&[8]), 10, true)?),
            [5, 3, 2]
        );
        assert_eq!(keys(b.scan(Cf::Sessions, &[], None, 2, true)?), [8, 5]);
        assert_eq!(keys(b.scan(Cf::Sessions, &[4], None, 2, false)?), [5, 8]);
        assert!(
            b.scan(Cf::Sessions, &[5], Some(&[5]), 10, false)?
                .is_empty()
        );
        assert!(b.scan(Cf::Sessions, &[], None, 0, false)?.is_empty());
        // Column families are separate keyspaces.
        assert!(b.scan(Cf::Outbox, &[], None, 10, false)?.is_empty());
        assert_eq!(b.get(Cf::Sessions, &[3])?, Some(vec![30]));
        assert_eq!(
            b.multi_get(Cf::Sessions, &[vec![1], vec![4], vec![8]])?,
            vec![Some(vec![10]), None, Some(vec![80])]
        );
        Ok(())
    }

    pub fn backend_batch_applies_in_order_with_ranges(f: Fixture) -> Result<()> {
        let b = f.store().backend();
        let mut batch = Batch::new();
        for k in 0u8..10 {
            batch.put(Cf::Outbox, [k], [k]);
        }
        batch.delete_range(Cf::Outbox, [3u8], [6u8]);
        batch.delete(Cf::Outbox, [0u8]);
        batch.put(Cf::Outbox, [4u8], [44u8]); // after the range delete: survives
        b.write(batch)?;
        let rows = b.scan(Cf::Outbox, &[], None, 100, false)?;
        let keys: Vec<u8> = rows.iter().map(|(k, _)| k[0]).collect();
        assert_eq!(keys, [1, 2, 4, 6, 7, 8, 9]);
        assert_eq!(b.get(Cf::Outbox, &[4])?, Some(vec![44]));
        Ok(())
    }

    pub fn meta_round_trip_and_reserved_keys(mut f: Fixture) -> Result<()> {
        let s = f.store();
        assert_eq!(s.get_meta("identity")?, None);
        s.put_meta("identity", b"secret-ish")?;
        assert_eq!(s.get_meta("identity")?, Some(b"secret-ish".to_vec()));
        assert!(matches!(
            s.put_meta("store.schema_version", &[0, 0, 0, 9]),
            Err(StoreError::InvalidInput(_))
        ));
        assert!(matches!(
            s.delete_meta("store.schema_version"),
            Err(StoreError::InvalidInput(_))
        ));
        f.reopen()?;
        let s = f.store();
        assert_eq!(s.get_meta("identity")?, Some(b"secret-ish".to_vec()));
        assert!(s.delete_meta("identity")?);
        assert!(!s.delete_meta("identity")?);
        assert_eq!(s.get_meta("identity")?, None);
        Ok(())
    }

    pub fn contacts_crud_and_find_by_name(mut f: Fixture) -> Result<()> {
        let s = f.store();
        s.put_contact(&contact(3, Some("carol")))?;
        s.put_contact(&contact(1, Some("alice")))?;
        s.put_contact(&contact(2, None))?;
        assert_eq!(s.get_contact(&id32(1))?, Some(contact(1, Some("alice"))));
        assert_eq!(s.get_contact(&id32(9))?, None);
        let names: Vec<_> = s
            .list_contacts()?
            .into_iter()
            .map(|c| c.identity_key)
            .collect();
        assert_eq!(names, [id32(1), id32(2), id32(3)]);
        assert_eq!(
            s.find_contact_by_name("carol")?.map(|c| c.identity_key),
            Some(id32(3))
        );
        assert_eq!(s.find_contact_by_name("Carol")?, None);
        let mut renamed = contact(3, Some("caroline"));
        renamed.updated_at = 999;
        s.put_contact(&renamed)?;
        assert_eq!(s.find_contact_by_name("carol")?, None);
        f.reopen()?;
        let s = f.store();
        assert_eq!(s.get_contact(&id32(3))?, Some(renamed));
        assert!(s.delete_contact(&id32(3))?);
        assert!(!s.delete_contact(&id32(3))?);
        assert_eq!(s.list_contacts()?.len(), 2);
        Ok(())
    }

    pub fn sessions_crud(mut f: Fixture) -> Result<()> {
        let s = f.store();
        s.put_session(&id32(2), b"two")?;
        s.put_session(&id32(1), b"one")?;
        s.put_session(&id32(2), b"two-v2")?;
        f.reopen()?;
        let s = f.store();
        assert_eq!(s.get_session(&id32(2))?, Some(b"two-v2".to_vec()));
        assert_eq!(
            s.list_sessions()?,
            vec![(id32(1), b"one".to_vec()), (id32(2), b"two-v2".to_vec())]
        );
        assert!(s.delete_session(&id32(1))?);
        assert!(!s.delete_session(&id32(1))?);
        assert_eq!(s.get_session(&id32(1))?, None);
        Ok(())
    }

    pub fn tokens_crud(mut f: Fixture) -> Result<()> {
        let s = f.store();
        let t = |id: &str| TokenRecord {
            id: id.into(),
            name: format!("app {id}"),
            scopes: vec!["read".into(), "send".into()],
            secret_hash: [7; 32],
            created_at: 5,
        };
        s.put_token(&t("b"))?;
        s.put_token(&t("a"))?;
        f.reopen()?;
        let s = f.store();
        assert_eq!(s.get_token("a")?, Some(t("a")));
        assert_eq!(s.get_token("zz")?, None);
        let ids: Vec<_> = s.list_tokens()?.into_iter().map(|t| t.id).collect();
        assert_eq!(ids, ["a", "b"]);
        assert!(s.delete_token("a")?);
        assert!(!s.delete_token("a")?);
        assert_eq!(s.list_tokens()?, vec![t("b")]);
        Ok(())
    }

    pub fn outbox_crud_and_due_order(mut f: Fixture) -> Result<()> {
        let s = f.store();
        s.put_outbox(&outbox(1, 300))?;
        s.put_outbox(&outbox(2, 100))?;
        s.put_outbox(&outbox(3, 200))?;
        let mut retried = outbox(1, 50);
        retried.attempts = 3;
        s.put_outbox(&retried)?;
        f.reopen()?;
        let s = f.store();
        assert_eq!(s.get_outbox(&id16(1))?, Some(retried));
        let order: Vec<_> = s.list_outbox()?.into_iter().map(|o| o.id).collect();
        assert_eq!(order, [id16(1), id16(2), id16(3)]);
        assert!(s.delete_outbox(&id16(2))?);
        assert!(!s.delete_outbox(&id16(2))?);
        assert_eq!(s.list_outbox()?.len(), 2);
        Ok(())
    }

    pub fn message_state_updates(mut f: Fixture) -> Result<()> {
        let s = f.store();
        let m = message(id16(1), id32(7), 1_000, false);
        s.put_message(&m)?;
        assert_eq!(s.get_message(&id16(1))?, Some(m.clone()));
        let up = s
            .set_message_state(&id16(1), MessageState::Stored, Some(2))?
            .expect("message exists");
        assert_eq!((up.state, up.relays), (MessageState::Stored, 2));
        assert!(up.updated_at_ms >= m.updated_at_ms);
        let up2 = s
            .set_message_state(&id16(1), MessageState::Delivered, None)?
            .expect("message exists");
        assert_eq!((up2.state, up2.relays), (MessageState::Delivered, 2));
        assert_eq!(
            s.set_message_state(&id16(99), MessageState::Read, None)?,
            None
        );
        f.reopen()?;
        let got = f.store().get_message(&id16(1))?.expect("persisted");
        assert_eq!(got, up2);
        // The body and the other fields are untouched.
        assert_eq!(got.body, m.body);
        assert_eq!(got.received_at_ms, m.received_at_ms);
        Ok(())
    }

    /// Pages with `limit` from `start` until the cursor runs out.
    fn page_through(
        s: &tokenim_store::Store,
        conv: Option<&[u8; 32]>,
        limit: usize,
        start: Option<Cursor>,
    ) -> Result<Vec<MessageRecord>> {
        let mut out = Vec::new();
        let mut cursor = start;
        let mut pages = 0;
        loop {
            // Go through the text form, as the API does.
            let text = cursor.map(|c| c.to_string());
            let parsed = text.map(|t| t.parse::<Cursor>()).transpose()?;
            let (page, next) = s.list_messages(conv, limit, parsed.as_ref())?;
            assert!(page.len() <= limit);
            let newer = parsed.is_some_and(|c| c.is_newer());
            if newer {
                out.splice(0..0, page);
            } else {
                out.extend(page);
            }
            pages += 1;
            assert!(pages < 1000, "pagination does not terminate");
            match next {
                Some(n) => cursor = Some(n),
                None => return Ok(out),
            }
        }
    }

    pub fn list_messages_per_conversation_both_directions(f: Fixture) -> Result<()> {
        let s = f.store();
        let mut by_conv: Vec<Vec<MessageRecord>> = vec![Vec::new(); 3];
        for n in 0..40u64 {
            let conv = n % 3;
            // Repeated timestamps: ties are ordered by id.
            let m = message(
                id16(1000 - n),
                id32(conv),
                10_000 + (n / 4) * 10,
                n.is_multiple_of(2),
            );
            s.put_message(&m)?;
            by_conv[conv as usize].push(m);
        }
        for (conv, msgs) in by_conv.iter().enumerate() {
            let want = newest_first(msgs.clone());
            let conv = id32(conv as u64);
            let (first, _) = s.list_messages(Some(&conv), 100, None)?;
            assert_eq!(first, want);
            for limit in [1, 3, 5, 14, 100] {
                assert_eq!(
                    page_through(s, Some(&conv), limit, None)?,
                    want,
                    "limit {limit}"
                );
            }
            // Backwards from the oldest message: a newer-than cursor walks up to the newest.
            let oldest = want.last().expect("non-empty");
            let newer = page_through(s, Some(&conv), 4, Some(Cursor::newer_than(oldest)))?;
            assert_eq!(newer, want[..want.len() - 1].to_vec());
            // From the middle, both ways.
            let mid = &want[5];
            assert_eq!(
                page_through(s, Some(&conv), 3, Some(Cursor::older_than(mid)))?,
                want[6..].to_vec()
            );
            assert_eq!(
                page_through(s, Some(&conv), 3, Some(Cursor::newer_than(mid)))?,
                want[..5].to_vec()
            );
            // Newest message: nothing newer.
            let (none, next) =
                s.list_messages(Some(&conv), 3, Some(&Cursor::newer_than(&want[0])))?;
            assert!(none.is_empty() && next.is_none());
        }
        // A conversation with no messages.
        assert!(s.list_messages(Some(&id32(42)), 10, None)?.0.is_empty());
        Ok(())
    }

    pub fn list_messages_all_conversations(f: Fixture) -> Result<()> {
        let s = f.store();
        let mut all = Vec::new();
        for n in 0..25u64 {
            let m = message(
                id16(n),
                id32(n % 4),
                5_000 + (n * 7919) % 101,
                n.is_multiple_of(3),
            );
            s.put_message(&m)?;
            all.push(m);
        }
        let want = newest_first(all);
        assert_eq!(page_through(s, None, 6, None)?, want);
        assert_eq!(page_through(s, None, 100, None)?, want);
        let oldest = want.last().expect("non-empty");
        assert_eq!(
            page_through(s, None, 4, Some(Cursor::newer_than(oldest)))?,
            want[..want.len() - 1].to_vec()
        );
        Ok(())
    }

    pub fn held_messages_stay_out_of_the_timeline_until_released(f: Fixture) -> Result<()> {
        let s = f.store();
        let shown = message(id16(1), id32(1), 10, true);
        let mut held = message(id16(2), id32(2), 20, true);
        held.held = true;
        s.put_message(&shown)?;
        s.put_message(&held)?;
        assert_eq!(s.list_messages(None, 10, None)?.0, vec![shown.clone()]);
        // Its conversation and its id still find it.
        assert_eq!(
            s.list_messages(Some(&id32(2)), 10, None)?.0,
            vec![held.clone()]
        );
        assert_eq!(s.get_message(&id16(2))?, Some(held.clone()));
        held.held = false;
        s.put_message(&held)?;
        assert_eq!(s.list_messages(None, 10, None)?.0, vec![held, shown]);
        Ok(())
    }

    pub fn groups_put_get_list_delete(f: Fixture) -> Result<()> {
        let s = f.store();
        let group = |n: u64| GroupRecord {
            id: id32(n),
            log: vec![n as u8; 8],
            cipher: vec![0xee; 16],
            member_cards: vec![(id32(100 + n), format!("tokenim:card{n}"))],
            created_at: n,
            updated_at: n,
        };
        s.put_group(&group(2))?;
        s.put_group(&group(1))?;
        assert_eq!(s.get_group(&id32(2))?, Some(group(2)));
        assert_eq!(s.list_groups()?, vec![group(1), group(2)]);
        s.txn().delete_group(&id32(1)).commit()?;
        assert_eq!(s.get_group(&id32(1))?, None);
        assert_eq!(s.list_groups()?, vec![group(2)]);
        Ok(())
    }

    pub fn contact_states_round_trip(f: Fixture) -> Result<()> {
        let s = f.store();
        for (n, state) in [
            ContactState::Accepted,
            ContactState::Request,
            ContactState::Blocked,
        ]
        .into_iter()
        .enumerate()
        {
            let c = ContactRecord {
                state,
                ..contact(n as u64, None)
            };
            s.put_contact(&c)?;
            assert_eq!(s.get_contact(&c.identity_key)?, Some(c));
        }
        Ok(())
    }

    pub fn list_messages_limit_zero_and_empty(f: Fixture) -> Result<()> {
        let s = f.store();
        assert_eq!(s.list_messages(None, 10, None)?, (vec![], None));
        let m = message(id16(1), id32(1), 10, false);
        s.put_message(&m)?;
        let c = Cursor::older_than(&m);
        assert_eq!(s.list_messages(None, 0, Some(&c))?, (vec![], Some(c)));
        // Exactly `limit` messages: no further cursor.
        assert_eq!(s.list_messages(None, 1, None)?, (vec![m], None));
        Ok(())
    }

    pub fn message_replace_moves_without_duplicates(f: Fixture) -> Result<()> {
        let s = f.store();
        let a = message(id16(1), id32(1), 100, false);
        let b = message(id16(2), id32(1), 200, false);
        s.put_message(&a)?;
        s.put_message(&b)?;
        let mut a2 = a.clone();
        a2.received_at_ms = 300;
        a2.body = "edited".into();
        s.put_message(&a2)?;
        let (page, _) = s.list_messages(Some(&id32(1)), 10, None)?;
        assert_eq!(page, vec![a2.clone(), b.clone()]);
        let (page, _) = s.list_messages(None, 10, None)?;
        assert_eq!(page, vec![a2.clone(), b]);
        assert_eq!(s.get_message(&id16(1))?, Some(a2));
        Ok(())
    }

    pub fn message_id_conflict_is_refused(f: Fixture) -> Result<()> {
        let s = f.store();
        let a = message(id16(1), id32(1), 100, true);
        s.put_message(&a)?;
        // Same id from another peer: would move the message to another conversation.
        let evil = message(id16(1), id32(2), 100, true);
        assert!(matches!(
            s.put_message(&evil),
            Err(StoreError::MessageIdConflict)
        ));
        assert_eq!(s.get_message(&id16(1))?, Some(a));
        assert!(s.list_messages(Some(&id32(2)), 10, None)?.0.is_empty());
        Ok(())
    }

    pub fn delete_message_removes_indexes(f: Fixture) -> Result<()> {
        let s = f.store();
        let a = message(id16(1), id32(1), 100, false);
        s.put_message(&a)?;
        assert!(s.delete_message(&id16(1))?);
        assert!(!s.delete_message(&id16(1))?);
        assert_eq!(s.get_message(&id16(1))?, None);
        assert!(s.list_messages(None, 10, None)?.0.is_empty());
        assert!(s.list_messages(Some(&id32(1)), 10, None)?.0.is_empty());
        // The id can be reused for another conversation once deleted.
        s.put_message(&message(id16(1), id32(2), 100, false))?;
        Ok(())
    }

    pub fn seen_ids_dedupe_and_expire(mut f: Fixture) -> Result<()> {
        let s = f.store();
        let peer = id32(5);
        // Incoming message: seen until received_at + seen_ttl.
        let m = message(id16(1), peer, 10_000_000, true);
        s.put_message(&m)?;
        assert!(s.is_seen(&peer, &id16(1))?);
        assert!(!s.is_seen(&id32(6), &id16(1))?);
        // Outgoing messages are not "seen".
        s.put_message(&message(id16(2), peer, 10_000_000, false))?;
        assert!(!s.is_seen(&peer, &id16(2))?);
        // Explicit marks (e.g. control frames without a stored message).
        s.mark_seen(&peer, &id16(3), 500)?;
        s.mark_seen(&peer, &id16(4), 900)?;
        s.mark_seen(&peer, &id16(4), 100)?; // an earlier expiry does not shorten it
        f.reopen()?;
        let s = f.store();
        assert!(s.is_seen(&peer, &id16(3))? && s.is_seen(&peer, &id16(4))?);
        let r = s.purge_expired(499)?;
        assert_eq!(r.seen_ids, 0);
        let r = s.purge_expired(500)?;
        assert_eq!(r.seen_ids, 1);
        assert!(!s.is_seen(&peer, &id16(3))?);
        assert!(s.is_seen(&peer, &id16(4))?);
        let ttl = f.opts.seen_ttl_secs;
        let r = s.purge_expired(10_000 + ttl)?;
        assert_eq!(r.seen_ids, 2);
        assert!(!s.is_seen(&peer, &id16(4))?);
        // The incoming message's id expired from the seen set, but the stored message still
        // dedupes it.
        assert!(s.is_seen(&peer, &id16(1))?);
        assert_eq!(s.purge_expired(u64::MAX)?.seen_ids, 0);
        Ok(())
    }

    pub fn txn_is_all_or_nothing(f: Fixture) -> Result<()> {
        let s = f.store();
        s.put_message(&message(id16(1), id32(1), 100, false))?;
        let conflicting = message(id16(1), id32(2), 100, false);
        let res = s
            .txn()
            .put_outbox(&outbox(9, 1))
            .put_session(&id32(9), b"s")
            .put_message(&message(id16(2), id32(1), 200, true))
            .put_message(&conflicting)
            .put_meta("k", b"v")
            .commit();
        assert!(matches!(res, Err(StoreError::MessageIdConflict)));
        assert_eq!(s.get_outbox(&id16(9))?, None);
        assert_eq!(s.get_session(&id32(9))?, None);
        assert_eq!(s.get_message(&id16(2))?, None);
        assert!(!s.is_seen(&id32(1), &id16(2))?);
        assert_eq!(s.get_meta("k")?, None);
        // A reserved meta key also fails the whole txn.
        let res = s
            .txn()
            .put_outbox(&outbox(9, 1))
            .put_meta("store.x", b"")
            .commit();
        assert!(matches!(res, Err(StoreError::InvalidInput(_))));
        assert_eq!(s.get_outbox(&id16(9))?, None);
        // And a good one writes everything.
        s.txn()
            .put_outbox(&outbox(9, 1))
            .put_session(&id32(9), b"s")
            .put_message(&message(id16(2), id32(1), 200, true))
            .put_meta("k", b"v")
            .commit()?;
        assert!(s.get_outbox(&id16(9))?.is_some());
        assert!(s.get_message(&id16(2))?.is_some());
        assert_eq!(s.get_meta("k")?, Some(b"v".to_vec()));
        assert!(s.txn().is_empty());
        s.txn().commit()?;
        Ok(())
    }

    pub fn txn_sees_its_own_writes(f: Fixture) -> Result<()> {
        let s = f.store();
        let m = message(id16(1), id32(1), 100, false);
        let mut moved = m.clone();
        moved.received_at_ms = 150;
        s.txn()
            .put_message(&m)
            .set_message_state(&id16(1), MessageState::Sent, Some(1))
            .put_message(&message(id16(2), id32(1), 120, false))
            .delete_message(&id16(2))
            .mark_seen(&id32(1), &id16(7), 50)
            .mark_seen(&id32(1), &id16(7), 60)
            .commit()?;
        let got = s.get_message(&id16(1))?.expect("written");
        assert_eq!((got.state, got.relays), (MessageState::Sent, 1));
        assert_eq!(s.get_message(&id16(2))?, None);
        assert_eq!(s.list_messages(None, 10, None)?.0.len(), 1);
        // The later expiry (60) won: a purge at 50 keeps it, at 60 removes it, and exactly one
        // expiry entry existed.
        assert_eq!(s.purge_expired(59)?.seen_ids, 0);
        assert_eq!(s.purge_expired(60)?.seen_ids, 1);
        // Moving a message within one txn leaves one copy.
        s.txn()
            .put_message(&moved)
            .set_message_state(&id16(1), MessageState::Read, None)
            .commit()?;
        let (page, _) = s.list_messages(Some(&id32(1)), 10, None)?;
        assert_eq!(page.len(), 1);
        assert_eq!(
            (page[0].received_at_ms, page[0].state),
            (150, MessageState::Read)
        );
        Ok(())
    }

    pub fn mailbox_put_page_dedupe_delete(f: Fixture) -> Result<()> {
        let s = f.store();
        let mb = id32(1);
        s.mailbox_register(&mb, 1000)?;
        s.mailbox_register(&mb, 2000)?; // idempotent
        assert!(s.mailbox_is_registered(&mb)?);
        assert_eq!(s.mailbox_usage(&mb)?.registered_at, 1000);
        for n in 1..=10u64 {
            let out = s.mailbox_put(
                &mb,
                &id32(100 + n),
                &vec![n as u8; n as usize * 10],
                1000 + n,
                3600,
            )?;
            assert_eq!(
                (out.seq, out.duplicate, out.expires_at),
                (n, false, 1000 + n + 3600)
            );
        }
        // Duplicate: same seq, nothing written.
        let dup = s.mailbox_put(&mb, &id32(103), b"other bytes", 5000, 60)?;
        assert_eq!(
            (dup.seq, dup.duplicate, dup.expires_at),
            (3, true, 1003 + 3600)
        );
        assert_eq!(s.mailbox_usage(&mb)?.messages, 10);

        let p1 = s.mailbox_page(&mb, None, 4)?;
        assert_eq!(p1.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3, 4]);
        assert_eq!(p1[2].message_id, id32(103));
        assert_eq!(p1[2].envelope, vec![3u8; 30]);
        assert_eq!((p1[2].stored_at, p1[2].expires_at), (1003, 4603));
        let p2 = s.mailbox_page(&mb, Some(4), 4)?;
        assert_eq!(p2.iter().map(|e| e.seq).collect::<Vec<_>>(), [5, 6, 7, 8]);
        assert!(s.mailbox_page(&mb, Some(10), 4)?.is_empty());
        assert!(s.mailbox_page(&mb, Some(u64::MAX), 4)?.is_empty());
        // Other mailboxes are separate.
        s.mailbox_register(&id32(2), 0)?;
        s.mailbox_put(&id32(2), &id32(103), b"x", 0, 10)?;
        assert_eq!(s.mailbox_page(&id32(2), None, 10)?.len(), 1);

        let n = s.mailbox_delete(&mb, &[id32(102), id32(105), id32(105), id32(999)])?;
        assert_eq!(n, 2);
        assert_eq!(s.mailbox_delete(&mb, &[id32(102)])?, 0);
        let seqs: Vec<_> = page_all(s, &mb)?.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [1, 3, 4, 6, 7, 8, 9, 10]);
        assert_counters_match(s, &mb)?;
        // A deleted id can be stored again (new seq: seqs are never reused).
        let again = s.mailbox_put(&mb, &id32(102), b"again", 6000, 60)?;
        assert_eq!((again.seq, again.duplicate), (11, false));
        let stats = s.mailbox_stats()?;
        assert_eq!(stats.mailboxes, 2);
        assert_eq!(stats.stored_messages, 10);
        assert_eq!(stats.per_mailbox.len(), 2);
        assert_eq!(
            stats.stored_bytes,
            stats.per_mailbox.iter().map(|(_, u)| u.bytes).sum::<u64>()
        );
        Ok(())
    }

    pub fn mailbox_requires_registration(f: Fixture) -> Result<()> {
        let s = f.store();
        let mb = id32(1);
        assert!(!s.mailbox_is_registered(&mb)?);
        assert!(matches!(
            s.mailbox_put(&mb, &id32(1), b"x", 0, 10),
            Err(StoreError::MailboxNotRegistered)
        ));
        assert!(matches!(
            s.mailbox_usage(&mb),
            Err(StoreError::MailboxNotRegistered)
        ));
        assert_eq!(s.mailbox_delete(&mb, &[id32(1)])?, 0);
        assert!(s.mailbox_page(&mb, None, 10)?.is_empty());
        assert!(!s.mailbox_unregister(&mb)?);
        Ok(())
    }

    pub fn mailbox_put_many_is_atomic(mut f: Fixture) -> Result<()> {
        let mut opts = f.opts.clone();
        opts.mailbox_max_messages = 5;
        f.reopen_with(opts)?;
        let s = f.store();
        let mb = id32(1);
        s.mailbox_register(&mb, 0)?;
        s.mailbox_put(&mb, &id32(1), b"a", 0, 60)?;
        let (i1, i2, i3) = (id32(1), id32(2), id32(3));
        let out = s.mailbox_put_many(
            &mb,
            &[(&i2, b"b"), (&i1, b"dup"), (&i3, b"c"), (&i2, b"b2")],
            0,
            60,
        )?;
        let summary: Vec<_> = out.iter().map(|o| (o.seq, o.duplicate)).collect();
        assert_eq!(summary, [(2, false), (1, true), (3, false), (2, true)]);
        // 3 stored + 3 new > 5: nothing of the batch is written.
        let ids: Vec<[u8; 32]> = (10..13).map(id32).collect();
        let items: Vec<(&[u8; 32], &[u8])> = ids.iter().map(|i| (i, &b"z"[..])).collect();
        let err = s.mailbox_put_many(&mb, &items, 0, 60);
        assert!(matches!(
            err,
            Err(StoreError::QuotaExceeded {
                quota: Quota::MailboxMessages,
                used: 3,
                requested: 3,
                limit: 5
            })
        ));
        assert_eq!(s.mailbox_usage(&mb)?.messages, 3);
        assert_eq!(page_all(s, &mb)?.len(), 3);
        // Only duplicates: fine even at the limit.
        assert!(s.mailbox_put_many(&mb, &[(&i1, b"a")], 0, 60)?[0].duplicate);
        Ok(())
    }

    pub fn quota_message_count(mut f: Fixture) -> Result<()> {
        let mut opts = f.opts.clone();
        opts.mailbox_max_messages = 3;
        f.reopen_with(opts)?;
        let s = f.store();
        let mb = id32(1);
        s.mailbox_register(&mb, 0)?;
        for n in 0..3 {
            s.mailbox_put(&mb, &id32(n), b"x", 0, 60)?;
        }
        let err = s
            .mailbox_put(&mb, &id32(3), b"x", 0, 60)
            .expect_err("over count quota");
        assert!(
            matches!(
                err,
                StoreError::QuotaExceeded {
                    quota: Quota::MailboxMessages,
                    limit: 3,
                    used: 3,
                    requested: 1
                }
            ),
            "{err}"
        );
        let text = err.to_string();
        assert!(
            text.contains("mailbox message count quota exceeded") && text.contains("limit 3"),
            "{text}"
        );
        // Another mailbox is unaffected; freeing space lets it in.
        s.mailbox_register(&id32(2), 0)?;
        s.mailbox_put(&id32(2), &id32(3), b"x", 0, 60)?;
        s.mailbox_delete(&mb, &[id32(0)])?;
        s.mailbox_put(&mb, &id32(3), b"x", 0, 60)?;
        assert_counters_match(s, &mb)?;
        Ok(())
    }

    pub fn quota_mailbox_bytes(mut f: Fixture) -> Result<()> {
        let mut opts = f.opts.clone();
        opts.mailbox_max_bytes = 100;
        f.reopen_with(opts)?;
        let s = f.store();
        let mb = id32(1);
        s.mailbox_register(&mb, 0)?;
        s.mailbox_put(&mb, &id32(1), &[0; 60], 0, 60)?;
        s.mailbox_put(&mb, &id32(2), &[0; 40], 0, 60)?; // exactly at the limit
        let err = s
            .mailbox_put(&mb, &id32(3), &[0; 1], 0, 60)
            .expect_err("over byte quota");
        assert!(
            matches!(
                err,
                StoreError::QuotaExceeded {
                    quota: Quota::MailboxBytes,
                    limit: 100,
                    used: 100,
                    requested: 1
                }
            ),
            "{err}"
        );
        assert!(
            err.to_string().contains("mailbox byte quota exceeded"),
            "{err}"
        );
        // A single envelope larger than the quota can never fit.
        s.mailbox_register(&id32(2), 0)?;
        let err = s
            .mailbox_put(&id32(2), &id32(3), &[0; 101], 0, 60)
            .expect_err("too big");
        assert!(matches!(
            err,
            StoreError::QuotaExceeded {
                quota: Quota::MailboxBytes,
                ..
            }
        ));
        assert_eq!(s.mailbox_usage(&mb)?.bytes, 100);
        Ok(())
    }

    pub fn quota_total_bytes(mut f: Fixture) -> Result<()> {
        let mut opts = f.opts.clone();
        opts.mailbox_max_bytes = 100;
        opts.total_max_bytes = 150;
        f.reopen_with(opts)?;
        let s = f.store();
        s.mailbox_register(&id32(1), 0)?;
        s.mailbox_register(&id32(2), 0)?;
        s.mailbox_put(&id32(1), &id32(1), &[0; 100], 0, 60)?;
        s.mailbox_put(&id32(2), &id32(2), &[0; 50], 0, 60)?;
        let err = s
            .mailbox_put(&id32(2), &id32(3), &[0; 10], 0, 60)
            .expect_err("over total");
        assert!(
            matches!(
                err,
                StoreError::QuotaExceeded {
                    quota: Quota::TotalBytes,
                    limit: 150,
                    used: 150,
                    requested: 10
                }
            ),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("relay total storage quota exceeded"),
            "{err}"
        );
        // The budget is tracked across reopen.
        f.reopen()?;
        let s = f.store();
        assert!(matches!(
            s.mailbox_put(&id32(2), &id32(3), &[0; 10], 0, 60),
            Err(StoreError::QuotaExceeded {
                quota: Quota::TotalBytes,
                ..
            })
        ));
        s.mailbox_delete(&id32(1), &[id32(1)])?;
        s.mailbox_put(&id32(2), &id32(3), &[0; 10], 0, 60)?;
        assert_eq!(s.mailbox_stats()?.stored_bytes, 60);
        Ok(())
    }

    pub fn retention_purges_only_expired(mut f: Fixture) -> Result<()> {
        let mut opts = f.opts.clone();
        opts.mailbox_max_ttl_secs = 1000;
        f.reopen_with(opts)?;
        let s = f.store();
        let (a, b) = (id32(1), id32(2));
        s.mailbox_register(&a, 0)?;
        s.mailbox_register(&b, 0)?;
        // a: seqs 1..=20 expire at 100+n (consecutive runs), b: alternate short/long TTLs.
        for n in 1..=20u64 {
            s.mailbox_put(&a, &id32(n), &[1; 10], n, 100)?;
            let ttl = if n.is_multiple_of(2) { 50 } else { 5000 }; // 5000 is clamped to 1000
            s.mailbox_put(&b, &id32(n), &[2; 20], n, ttl)?;
        }
        assert_eq!(s.mailbox_page(&b, None, 1)?[0].expires_at, 1001);
        let r = s.purge_expired(110)?;
        assert_eq!(r.mailbox_messages, 10 + 10); // a: 1..=10; b: all even (<= 70)
        assert_eq!(r.mailbox_bytes, 10 * 10 + 10 * 20);
        let a_left: Vec<_> = page_all(s, &a)?.iter().map(|e| e.seq).collect();
        assert_eq!(a_left, (11..=20).collect::<Vec<_>>());
        let b_left: Vec<_> = page_all(s, &b)?.iter().map(|e| e.seq).collect();
        assert_eq!(b_left, (1..=20).filter(|n| n % 2 == 1).collect::<Vec<_>>());
        assert_counters_match(s, &a)?;
        assert_counters_match(s, &b)?;
        // Purged ids are gone from the dedupe index: they can be stored again.
        assert!(!s.mailbox_put(&a, &id32(1), &[1; 10], 200, 100)?.duplicate);
        // Nothing more at the same time; acked messages are not purged twice.
        s.mailbox_delete(&a, &[id32(11)])?;
        assert_eq!(s.purge_expired(110)?, Default::default());
        let r = s.purge_expired(u64::MAX)?;
        assert_eq!(r.mailbox_messages, 9 + 1 + 10);
        assert_eq!(s.mailbox_stats()?.stored_messages, 0);
        assert_eq!(s.mailbox_stats()?.stored_bytes, 0);
        f.reopen()?;
        assert_eq!(f.store().mailbox_stats()?.stored_messages, 0);
        assert!(
            f.store()
                .backend()
                .scan(Cf::MailboxExpiry, &[], None, 10, false)?
                .is_empty()
        );
        assert!(
            f.store()
                .backend()
                .scan(Cf::MailboxIndex, &[], None, 10, false)?
                .is_empty()
        );
        assert!(
            f.store()
                .backend()
                .scan(Cf::Mailboxes, &[], None, 10, false)?
                .is_empty()
        );
        Ok(())
    }

    pub fn mailbox_counters_survive_reopen(mut f: Fixture) -> Result<()> {
        let s = f.store();
        for m in 1..=3u64 {
            s.mailbox_register(&id32(m), m)?;
            for n in 0..(m * 5) {
                s.mailbox_put(&id32(m), &id32(n), &vec![0; (n + 1) as usize], 0, 100 + n)?;
            }
        }
        s.mailbox_delete(&id32(2), &[id32(0), id32(1)])?;
        s.purge_expired(101)?;
        let before = s.mailbox_stats()?;
        f.reopen()?;
        let s = f.store();
        assert_eq!(s.mailbox_stats()?, before);
        for m in 1..=3u64 {
            assert_counters_match(s, &id32(m))?;
        }
        // Sequence numbers continue where they were.
        let out = s.mailbox_put(&id32(1), &id32(77), b"x", 0, 10)?;
        assert_eq!(out.seq, 6);
        Ok(())
    }

    pub fn mailbox_unregister_removes_everything(f: Fixture) -> Result<()> {
        let s = f.store();
        let (a, b) = (id32(1), id32(2));
        s.mailbox_register(&a, 0)?;
        s.mailbox_register(&b, 0)?;
        for n in 1..=5u64 {
            s.mailbox_put(&a, &id32(n), &[1; 10], 0, 100)?;
            s.mailbox_put(&b, &id32(n), &[1; 10], 0, 100)?;
        }
        assert!(s.mailbox_unregister(&a)?);
        assert!(!s.mailbox_is_registered(&a)?);
        assert!(s.mailbox_page(&a, None, 10)?.is_empty());
        assert_eq!(s.mailbox_stats()?.stored_messages, 5);
        // Re-registered: empty, seqs restart, and the old expiry entries are gone, so a purge
        // does not touch the new envelope with the same seq.
        s.mailbox_register(&a, 10)?;
        let out = s.mailbox_put(&a, &id32(1), &[9; 3], 0, 1000)?;
        assert_eq!((out.seq, out.duplicate), (1, false));
        let r = s.purge_expired(100)?;
        assert_eq!(r.mailbox_messages, 5); // only b's
        assert_eq!(s.mailbox_page(&a, None, 10)?.len(), 1);
        assert_counters_match(s, &a)?;
        Ok(())
    }

    pub fn concurrent_mailbox_puts_are_consistent(f: Fixture) -> Result<()> {
        let s = f.store().clone();
        let mb = id32(1);
        s.mailbox_register(&mb, 0)?;
        const THREADS: u64 = 4;
        const PER: u64 = 300;
        // Thread t puts ids t*PER/2 .. t*PER/2 + PER: each id is put by two threads.
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let s = s.clone();
                std::thread::spawn(move || -> Result<Vec<(u64, bool)>> {
                    (0..PER)
                        .map(|i| {
                            let id = t * PER / 2 + i;
                            let o = s.mailbox_put(&mb, &id32(id), &[t as u8; 16], 0, 60)?;
                            Ok((o.seq, o.duplicate))
                        })
                        .collect()
                })
            })
            .collect();
        let mut fresh = Vec::new();
        for h in handles {
            for (seq, dup) in h.join().expect("thread panicked")? {
                if !dup {
                    fresh.push(seq);
                }
            }
        }
        let distinct = (THREADS - 1) * PER / 2 + PER;
        fresh.sort_unstable();
        assert_eq!(fresh, (1..=distinct).collect::<Vec<_>>());
        assert_eq!(s.mailbox_usage(&mb)?.messages, distinct);
        assert_counters_match(&s, &mb)?;
        Ok(())
    }

    pub fn concurrent_puts_respect_total_budget(mut f: Fixture) -> Result<()> {
        let mut opts = f.opts.clone();
        opts.total_max_bytes = 10_000;
        f.reopen_with(opts)?;
        let s = f.store().clone();
        const THREADS: u64 = 8;
        for t in 0..THREADS {
            s.mailbox_register(&id32(t), 0)?;
        }
        // 8 threads x 40 puts x 100 bytes = 32,000 bytes offered for a 10,000 byte budget.
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let s = s.clone();
                std::thread::spawn(move || -> Result<(u64, u64)> {
                    let (mut ok, mut refused) = (0, 0);
                    for i in 0..40 {
                        match s.mailbox_put(&id32(t), &id32(i), &[0; 100], 0, 60) {
                            Ok(_) => ok += 1,
                            Err(StoreError::QuotaExceeded {
                                quota: Quota::TotalBytes,
                                ..
                            }) => refused += 1,
                            Err(e) => return Err(e),
                        }
                    }
                    Ok((ok, refused))
                })
            })
            .collect();
        let mut accepted = 0;
        for h in handles {
            let (ok, refused) = h.join().expect("thread panicked")?;
            assert_eq!(ok + refused, 40);
            accepted += ok;
        }
        // Exactly the budget: no over-commit, and no spurious refusal below it.
        assert_eq!(accepted, 100);
        let stats = s.mailbox_stats()?;
        assert_eq!((stats.stored_messages, stats.stored_bytes), (100, 10_000));
        for t in 0..THREADS {
            assert_counters_match(&s, &id32(t))?;
        }
        drop(s);
        f.reopen()?;
        assert_eq!(f.store().mailbox_stats()?, stats);
        Ok(())
    }

    pub fn schema_version_is_written_and_checked(mut f: Fixture) -> Result<()> {
        let raw = f
            .store()
            .backend()
            .get(Cf::Meta, SCHEMA_VERSION_KEY.as_bytes())?;
        assert_eq!(raw, Some(SCHEMA_VERSION.to_be_bytes().to_vec()));
        f.reopen()?;
        let mut batch = Batch::new();
        batch.put(
            Cf::Meta,
            SCHEMA_VERSION_KEY,
            (SCHEMA_VERSION + 1).to_be_bytes(),
        );
        f.store().backend().write(batch)?;
        let err = f.reopen().expect_err("newer schema must be refused");
        assert!(
            matches!(err, StoreError::SchemaTooNew { found, supported } if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION),
            "{err}"
        );
        assert!(err.to_string().contains("newer than this build supports"));
        Ok(())
    }

    pub fn corrupt_records_are_errors_and_lists_skip_them(f: Fixture) -> Result<()> {
        let s = f.store();
        s.put_contact(&contact(1, Some("a")))?;
        let mut batch = Batch::new();
        batch.put(Cf::Contacts, id32(2), [0xff, 0xff, 0xff]);
        batch.put(Cf::Tokens, "t", [0x0a, 0x05, 1]);
        batch.put(Cf::MessageIndex, id16(3), [1, 2, 3]);
        batch.put(Cf::Sessions, [1u8, 2], b"short key".to_vec());
        s.backend().write(batch)?;
        let corrupt = |r: Result<_>| matches!(r, Err(StoreError::Corrupt { .. }));
        // Read by its key, a corrupt record is an error.
        assert!(corrupt(s.get_contact(&id32(2)).map(|_| ())));
        assert!(corrupt(s.get_token("t").map(|_| ())));
        assert!(corrupt(s.get_message(&id16(3)).map(|_| ())));
        // Lists skip it and count it: one bad record holds back none of the good ones.
        let contacts = s.list_contacts()?;
        assert_eq!(contacts.len(), 1);
        assert_eq!(contacts[0].identity_key, id32(1));
        assert!(s.find_contact_by_name("a")?.is_some());
        assert!(s.find_contact_by_name("zz")?.is_none());
        assert!(s.list_tokens()?.is_empty());
        assert!(s.list_sessions()?.is_empty());
        assert_eq!(s.skipped_corrupt(), 4);
        Ok(())
    }
}

#[test]
fn options_default_is_documented_values() {
    let o = StoreOptions::default();
    assert!(!o.sync_writes);
    assert!(o.compact_after_purge);
    assert!(
        o.mailbox_max_messages > 0
            && o.mailbox_max_bytes > 0
            && o.total_max_bytes >= o.mailbox_max_bytes
    );
}
