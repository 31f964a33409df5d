//! Conversation listing with cursor pagination.

use std::fmt;
use std::str::FromStr;

use crate::backend::Cf;
use crate::keys::{self, concat, message_key, prefix_end, successor};
use crate::records::{MessageRecord, Record};
use crate::store::Store;
use crate::{Result, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Towards {
    Older,
    Newer,
}

/// A position in a message listing plus a direction. Opaque to clients: its text form
/// (`Display` / `FromStr`) is URL-safe and is what the local API hands out.
///
/// Positions are `(received_at_ms, id)`, the order of every listing, so a cursor works for
/// a single conversation and for the all-conversations listing alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cursor {
    towards: Towards,
    received_at_ms: u64,
    id: [u8; 16],
}

impl Cursor {
    /// Continue with messages older than `m` (scrolling back through history).
    pub fn older_than(m: &MessageRecord) -> Cursor {
        Cursor {
            towards: Towards::Older,
            received_at_ms: m.received_at_ms,
            id: m.id,
        }
    }

    /// Continue with messages newer than `m` (catching up, e.g. polling for new messages).
    pub fn newer_than(m: &MessageRecord) -> Cursor {
        Cursor {
            towards: Towards::Newer,
            received_at_ms: m.received_at_ms,
            id: m.id,
        }
    }

    /// Whether this cursor pages towards newer messages.
    pub fn is_newer(&self) -> bool {
        self.towards == Towards::Newer
    }

    fn at(towards: Towards, key_tail: &[u8]) -> Result<Cursor> {
        Ok(Cursor {
            towards,
            received_at_ms: keys::u64_at("message key", key_tail, 0)?,
            id: keys::array::<16>("message key", key_tail, 8)?,
        })
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tag = match self.towards {
            Towards::Older => 'o',
            Towards::Newer => 'n',
        };
        write!(f, "{tag}{:016x}", self.received_at_ms)?;
        for b in self.id {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl FromStr for Cursor {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Cursor> {
        let bad = || StoreError::InvalidInput("malformed cursor".into());
        if s.len() != 1 + 16 + 32 || !s.is_ascii() {
            return Err(bad());
        }
        let towards = match &s[..1] {
            "o" => Towards::Older,
            "n" => Towards::Newer,
            _ => return Err(bad()),
        };
        let received_at_ms = u64::from_str_radix(&s[1..17], 16).map_err(|_| bad())?;
        let mut id = [0u8; 16];
        for (i, b) in id.iter_mut().enumerate() {
            let at = 17 + 2 * i;
            *b = u8::from_str_radix(&s[at..at + 2], 16).map_err(|_| bad())?;
        }
        // Reject signs and other forms from_str_radix accepts, so the text form is canonical.
        if !s[1..]
            .bytes()
            .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(bad());
        }
        Ok(Cursor {
            towards,
            received_at_ms,
            id,
        })
    }
}

impl Store {
    /// One page of messages, newest first, of one conversation or (`None`) of all of them
    /// except the held ones (message requests).
    ///
    /// Without a cursor the page is the newest `limit` messages. With an
    /// [`older_than`](Cursor::older_than) cursor it is the `limit` messages just older than
    /// the cursor; with a [`newer_than`](Cursor::newer_than) cursor, the `limit` messages just
    /// newer. The returned cursor continues in the same direction and is `None` when no more
    /// messages exist that way (right now: new messages may arrive later). `limit == 0`
    /// returns no messages and the given cursor.
    pub fn list_messages(
        &self,
        conversation: Option<&[u8; 32]>,
        limit: usize,
        cursor: Option<&Cursor>,
    ) -> Result<(Vec<MessageRecord>, Option<Cursor>)> {
        if limit == 0 {
            return Ok((Vec::new(), cursor.copied()));
        }
        let (cf, prefix): (Cf, &[u8]) = match conversation {
            Some(c) => (Cf::Messages, &c[..]),
            None => (Cf::MessageTime, &[]),
        };
        let end = prefix_end(prefix).filter(|_| !prefix.is_empty());
        let towards = cursor.map_or(Towards::Older, |c| c.towards);
        let pos = cursor.map(|c| concat(&[prefix, &c.received_at_ms.to_be_bytes(), &c.id]));
        let fetch = limit.saturating_add(1);
        let mut rows = match (towards, &pos) {
            (Towards::Newer, Some(pos)) => {
                self.be()
                    .scan(cf, &successor(pos), end.as_deref(), fetch, false)?
            }
            (_, pos) => {
                let upper = pos.as_deref().or(end.as_deref());
                self.be().scan(cf, prefix, upper, fetch, true)?
            }
        };
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next = match rows.last() {
            Some((k, _)) if more => Some(Cursor::at(
                towards,
                k.get(prefix.len()..).unwrap_or_default(),
            )?),
            _ => None,
        };

        let mut messages = match conversation {
            Some(_) => rows
                .iter()
                .map(|(_, v)| MessageRecord::from_bytes(v))
                .collect::<Result<Vec<_>>>()?,
            None => {
                let keys = rows
                    .iter()
                    .map(|(k, v)| {
                        let conv = keys::array::<32>("message time value", v, 0)?;
                        let c = Cursor::at(towards, k)?;
                        Ok(message_key(&conv, c.received_at_ms, &c.id))
                    })
                    .collect::<Result<Vec<_>>>()?;
                // A message deleted between the two reads is simply skipped.
                self.be()
                    .multi_get(Cf::Messages, &keys)?
                    .into_iter()
                    .flatten()
                    .map(|v| MessageRecord::from_bytes(&v))
                    .collect::<Result<Vec<_>>>()?
            }
        };
        if towards == Towards::Newer {
            messages.reverse();
        }
        Ok((messages, next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_text_round_trip() -> Result<()> {
        let c = Cursor {
            towards: Towards::Newer,
            received_at_ms: 0x0123_4567_89ab_cdef,
            id: [0xa5; 16],
        };
        let s = c.to_string();
        assert!(s.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_eq!(s.parse::<Cursor>()?, c);
        Ok(())
    }

    #[test]
    fn malformed_cursors_are_rejected() {
        let good = "o0000000000000001".to_string() + &"00".repeat(16);
        assert!(good.parse::<Cursor>().is_ok());
        for bad in [
            String::new(),
            "x".to_string() + &good[1..],
            good[..good.len() - 1].to_string(),
            good.clone() + "0",
            good.replace("o000", "o+00"),
            good.replace("o000", "o00G"),
            good.to_uppercase(),
            "o".to_string() + &"é".repeat(24),
        ] {
            assert!(
                matches!(bad.parse::<Cursor>(), Err(StoreError::InvalidInput(_))),
                "{bad:?}"
            );
        }
    }
}
