//! What a subscriber checks of every delivery: the room's offsets, in order,
//! with no gap and no duplicate, within one epoch (docs/protocol.md,
//! "History and resume" and "Delivery semantics").
//!
//! This runs once per delivery on the generator's hot path, so the hub's
//! `message` frames are read by position ([`scan_message`]) and [`Track`]
//! compares two integers and, for the epoch, a few bytes it already holds:
//! nothing is allocated per delivery.

/// Digits of the publish time at the start of each published message.
pub(super) const STAMP_LEN: usize = 16;

/// What [`scan_message`] reads of a hub `message`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Scanned<'a> {
    /// `seq`, the offset's earlier name.
    pub(super) seq: u64,
    /// The publish time at the start of the message, if it is one of ours.
    pub(super) stamp: Option<u64>,
    /// `epoch` and `offset`, the last two fields; `None` from a server that
    /// does not send them (`bench/node/broadcast.mjs`).
    pub(super) place: Option<Place<'a>>,
}

/// Where a message is in its room's log: `(epoch, offset)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Place<'a> {
    /// The epoch's bytes, between its quotes (the hub's need no escaping).
    pub(super) epoch: &'a [u8],
    pub(super) offset: u64,
}

/// Reads `seq`, the publish stamp, `epoch` and `offset` of a hub `message`
/// laid out as the hub writes it,
/// `{"type":"message","room":"…","from":"…","seq":N,"ts":N,"message":…,"from_id":N,"epoch":"…","offset":N}`,
/// without a JSON parser: this is the hot path of a fan-out run, and serde
/// took half the generator's time. `seq` and the stamp are found from the
/// front, `epoch` and `offset` from the back, so the published message is
/// never scanned. `None` for any other layout, which then goes through
/// serde. The room is ours and the publisher never names itself, so neither
/// string can hold the `","seq":` searched for.
pub(super) fn scan_message(text: &[u8]) -> Option<Scanned<'_>> {
    let rest = text.strip_prefix(br#"{"type":"message","room":""#)?;
    const SEQ: &[u8] = br#"","seq":"#;
    let at = rest.windows(SEQ.len()).position(|w| w == SEQ)?;
    let (seq, rest) = number(&rest[at + SEQ.len()..])?;
    let rest = rest.strip_prefix(br#","ts":"#)?;
    let (_, rest) = number(rest)?;
    let rest = rest.strip_prefix(br#","message":"#)?;
    Some(Scanned {
        seq,
        stamp: rest.strip_prefix(b"\"").and_then(stamp),
        place: scan_place(text),
    })
}

/// `epoch` and `offset` at the end of a hub `message`: `…,"epoch":"E","offset":N}`.
fn scan_place(text: &[u8]) -> Option<Place<'_>> {
    let body = text.strip_suffix(b"}")?;
    let digits = body.iter().rev().take_while(|b| b.is_ascii_digit()).count();
    let (head, digits) = body.split_at(body.len() - digits);
    let (offset, _) = number(digits)?;
    let head = head.strip_suffix(br#"","offset":"#)?;
    // An epoch is at most 64 bytes (docs/protocol.md) and has no quote.
    let start = head.iter().rposition(|&b| b == b'"')? + 1;
    head[..start].ends_with(br#","epoch":""#).then(|| Place {
        epoch: &head[start..],
        offset,
    })
}

/// A decimal number at the start of `bytes`, and what follows it.
pub(super) fn number(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let len = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    let n = std::str::from_utf8(&bytes[..len]).ok()?.parse().ok()?;
    Some((n, &bytes[len..]))
}

/// The publish time at the start of a published message: 16 hex digits.
pub(super) fn stamp(message: &[u8]) -> Option<u64> {
    let hex = std::str::from_utf8(message.get(..STAMP_LEN)?).ok()?;
    u64::from_str_radix(hex, 16).ok()
}

/// One subscriber's place in the room's log, and what went wrong with it.
///
/// Offsets are compared only within one epoch (docs/protocol.md): a
/// delivery under another epoch restarts the count, and is counted itself.
#[derive(Debug, Default)]
pub(super) struct Track {
    /// This connection has had its `joined` answer.
    pub(super) joined: bool,
    /// The offset of the last message received, or of the `joined` answer
    /// if none came after it.
    pub(super) last: u64,
    /// The epoch `last` counts in; empty until the server names one. Its
    /// buffer is reused: it grows only when the epoch does.
    epoch: Vec<u8>,
    /// Messages skipped over: each offset more than one above the last adds
    /// the ones in between.
    pub(super) lost: u64,
    /// Deliveries whose offset was not above the last.
    pub(super) duplicated: u64,
    /// Deliveries (or `joined` answers) under a new epoch.
    pub(super) epoch_changes: u64,
    /// Deliveries without `epoch` and `offset`, checked by `seq` alone.
    pub(super) unverified: u64,
    /// This connection's `join` carried `since`: its `joined` answer says
    /// whether the hub has what was missed.
    pub(super) resuming: bool,
    /// Offsets up to this one come as the replay of a resume, the ones
    /// after it live (the `joined` answer's offset: docs/protocol.md).
    pub(super) replay_until: u64,
    /// After a resume, until its first live message: when the connection
    /// was dropped, in nanoseconds on the run's clock.
    pub(super) dropped_at: Option<u64>,
}

/// What the hub made of a `join` with `since`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Resumed {
    /// `recovered: true`: the messages after the last one received follow,
    /// `missed` of them, then the live ones.
    Recovered { missed: u64 },
    /// `recovered: false` (or no answer to `since` at all): nothing is
    /// replayed, live messages start after the `joined` answer's offset.
    /// `skipped`: the messages in between, when the epoch is the same.
    NotRecovered { skipped: Option<u64> },
}

impl Track {
    /// The `joined` answer to a `join` without `since`: live messages start
    /// after `offset`.
    pub(super) fn on_joined(&mut self, offset: u64, epoch: Option<&[u8]>) {
        self.joined = true;
        self.last = offset;
        if let Some(epoch) = epoch {
            self.epoch.clear();
            self.epoch.extend_from_slice(epoch);
        }
    }

    /// Where to resume from: the `since` of the next `join`, `None` while no
    /// epoch is known (a server without them cannot resume).
    pub(super) fn since(&self) -> Option<(&str, u64)> {
        let epoch = std::str::from_utf8(&self.epoch).ok()?;
        (!epoch.is_empty()).then_some((epoch, self.last))
    }

    /// Gets ready for the `joined` answer to a `join` with `since`, on a new
    /// connection; the old one was dropped at `dropped_at` (nanoseconds on
    /// the run's clock).
    pub(super) fn resume(&mut self, dropped_at: u64) {
        self.joined = false;
        self.resuming = true;
        self.dropped_at = Some(dropped_at);
    }

    /// The `joined` answer to a `join` with `since`: `offset` and `epoch` are
    /// the room's, `recovered` the hub's answer. Recovered, the replay
    /// follows and is checked as any delivery; not recovered, the offsets
    /// jump to `offset` without counting as lost (the report counts them
    /// apart).
    pub(super) fn on_resumed(
        &mut self,
        offset: u64,
        epoch: Option<&[u8]>,
        recovered: bool,
    ) -> Resumed {
        self.joined = true;
        self.resuming = false;
        self.replay_until = offset;
        let same_epoch = epoch.is_none_or(|e| e == self.epoch.as_slice());
        if recovered && same_epoch {
            return Resumed::Recovered {
                missed: offset.saturating_sub(self.last),
            };
        }
        let skipped = same_epoch.then(|| offset.saturating_sub(self.last));
        if !same_epoch {
            self.epoch_changes += 1;
        }
        self.on_joined(offset, epoch);
        Resumed::NotRecovered { skipped }
    }

    /// One delivery of the message at `offset` (its `seq` from a server
    /// without offsets), under `epoch` if the message named one. Returns
    /// whether it is live: not part of a resume's replay.
    #[inline]
    pub(super) fn delivered(&mut self, offset: u64, epoch: Option<&[u8]>) -> bool {
        match epoch {
            Some(epoch) if epoch != self.epoch.as_slice() => {
                if !self.epoch.is_empty() {
                    // A new life of the room: its offsets start again at 1,
                    // and the ones before this were not received.
                    self.epoch_changes += 1;
                    self.last = 0;
                }
                self.epoch.clear();
                self.epoch.extend_from_slice(epoch);
            }
            Some(_) => {}
            None => self.unverified += 1,
        }
        if offset == self.last + 1 {
            self.last = offset;
        } else if offset > self.last {
            self.lost += offset - self.last - 1;
            self.last = offset;
        } else {
            self.duplicated += 1;
        }
        offset > self.replay_until
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EPOCH: &[u8] = b"5f3a9c2e9d41b7a0-1";

    #[test]
    fn the_hub_layout_is_scanned_without_a_parser_and_others_fall_back() {
        let hub = br#"{"type":"message","room":"bench-1","from":"anon-3","seq":7,"ts":1763791200000,"message":"00000000000000ff....","from_id":3,"epoch":"5f3a9c2e9d41b7a0-1","offset":7}"#;
        assert_eq!(
            scan_message(hub),
            Some(Scanned {
                seq: 7,
                stamp: Some(255),
                place: Some(Place {
                    epoch: EPOCH,
                    offset: 7
                })
            })
        );
        // broadcast.mjs: no epoch, no offset.
        let node =
            br#"{"type":"message","room":"lobby","from":"alice","seq":8,"ts":1,"message":{"a":1}}"#;
        assert_eq!(
            scan_message(node),
            Some(Scanned {
                seq: 8,
                stamp: None,
                place: None
            })
        );
        let reordered = br#"{"seq":7,"type":"message","room":"r","from":"a","ts":1,"message":"x"}"#;
        assert_eq!(scan_message(reordered), None);
        assert_eq!(
            scan_message(br#"{"type":"joined","room":"r","seq":1}"#),
            None
        );
    }

    #[test]
    fn the_place_is_read_from_the_end_and_only_in_the_hub_layout() {
        let place = |text: &[u8]| scan_place(text).map(|p| (p.epoch.to_vec(), p.offset));
        assert_eq!(
            place(br#"{"message":"x","epoch":"e-1","offset":12}"#),
            Some((b"e-1".to_vec(), 12))
        );
        assert_eq!(
            place(br#"{"message":"x","epoch":"","offset":1}"#),
            Some((Vec::new(), 1))
        );
        assert_eq!(place(br#"{"message":"x","offset":12}"#), None);
        assert_eq!(place(br#"{"message":"x","epoch":"e-1","offset":}"#), None);
        assert_eq!(place(br#"{"epoch":"e-1","offset":12,"x":1}"#), None);
        assert_eq!(
            place(br#"{"message":"x","epochs":"e-1","offset":12}"#),
            None
        );
    }

    fn delivered(track: &mut Track, offsets: &[u64]) {
        delivered_in(track, EPOCH, offsets);
    }

    fn delivered_in(track: &mut Track, epoch: &[u8], offsets: &[u64]) {
        for &offset in offsets {
            track.delivered(offset, Some(epoch));
        }
    }

    #[test]
    fn offsets_one_after_another_are_neither_lost_nor_duplicated() {
        let mut track = Track::default();
        track.on_joined(4, Some(EPOCH));
        delivered(&mut track, &[5, 6, 7, 8]);
        assert_eq!(
            (track.last, track.lost, track.duplicated, track.unverified),
            (8, 0, 0, 0)
        );
    }

    #[test]
    fn a_jump_counts_the_offsets_skipped_as_lost() {
        let mut track = Track::default();
        track.on_joined(4, Some(EPOCH));
        delivered(&mut track, &[5, 9, 10]);
        assert_eq!((track.last, track.lost, track.duplicated), (10, 3, 0));
        // The first message after `joined` is checked too.
        let mut track = Track::default();
        track.on_joined(0, Some(EPOCH));
        delivered(&mut track, &[2]);
        assert_eq!(track.lost, 1);
    }

    #[test]
    fn an_offset_not_above_the_last_is_a_duplicate_and_keeps_the_last() {
        let mut track = Track::default();
        track.on_joined(4, Some(EPOCH));
        delivered(&mut track, &[5, 6, 6, 3, 7]);
        assert_eq!((track.last, track.lost, track.duplicated), (7, 0, 2));
    }

    #[test]
    fn a_new_epoch_restarts_the_offsets_and_counts_the_ones_before_it() {
        let mut track = Track::default();
        track.on_joined(4, Some(EPOCH));
        delivered(&mut track, &[5]);
        // The room started again: offset 1 of the new epoch is the next one.
        track.delivered(1, Some(b"5f3a9c2e9d41b7a0-2"));
        assert_eq!(
            (
                track.last,
                track.lost,
                track.duplicated,
                track.epoch_changes
            ),
            (1, 0, 0, 1)
        );
        // Offsets 1 and 2 of the next epoch never came.
        track.delivered(3, Some(b"5f3a9c2e9d41b7a0-3"));
        assert_eq!((track.last, track.lost, track.epoch_changes), (3, 2, 2));
        // Back under the same epoch, offsets count as before.
        track.delivered(4, Some(b"5f3a9c2e9d41b7a0-3"));
        assert_eq!((track.last, track.lost, track.epoch_changes), (4, 2, 2));
    }

    #[test]
    fn a_recovered_resume_checks_the_replay_and_tells_it_from_live_messages() {
        let mut track = Track::default();
        track.on_joined(4, Some(EPOCH));
        delivered(&mut track, &[5, 6]);
        assert_eq!(track.since(), Some(("5f3a9c2e9d41b7a0-1", 6)));
        track.resume(1_000);
        assert!(!track.joined && track.resuming);
        // Offsets 7 to 9 were published while away.
        assert_eq!(
            track.on_resumed(9, Some(EPOCH), true),
            Resumed::Recovered { missed: 3 }
        );
        assert!(track.joined && !track.resuming);
        let live: Vec<bool> = [7, 8, 9, 10, 11]
            .iter()
            .map(|&offset| track.delivered(offset, Some(EPOCH)))
            .collect();
        assert_eq!(live, [false, false, false, true, true]);
        assert_eq!((track.last, track.lost, track.duplicated), (11, 0, 0));
    }

    #[test]
    fn a_replay_with_a_hole_or_a_repeat_is_caught_like_any_delivery() {
        let mut track = Track::default();
        track.on_joined(6, Some(EPOCH));
        track.resume(0);
        track.on_resumed(9, Some(EPOCH), true);
        // 7 is never replayed, 8 comes twice.
        delivered(&mut track, &[8, 8, 9, 10]);
        assert_eq!((track.last, track.lost, track.duplicated), (10, 1, 1));
    }

    #[test]
    fn a_resume_not_recovered_jumps_to_the_joined_offset_without_a_loss() {
        let mut track = Track::default();
        track.on_joined(4, Some(EPOCH));
        delivered(&mut track, &[5, 6]);
        track.resume(0);
        assert_eq!(
            track.on_resumed(20, Some(EPOCH), false),
            Resumed::NotRecovered { skipped: Some(14) }
        );
        assert!(track.delivered(21, Some(EPOCH)), "live");
        assert_eq!(
            (
                track.last,
                track.lost,
                track.duplicated,
                track.epoch_changes
            ),
            (21, 0, 0, 0)
        );
        // Another epoch: the room started again (say the hub restarted).
        track.resume(0);
        assert_eq!(
            track.on_resumed(3, Some(b"another-1"), false),
            Resumed::NotRecovered { skipped: None }
        );
        delivered_in(&mut track, b"another-1", &[4]);
        assert_eq!((track.last, track.lost, track.epoch_changes), (4, 0, 1));
        // `recovered: true` under another epoch cannot be: it counts as not.
        track.resume(0);
        assert_eq!(
            track.on_resumed(7, Some(EPOCH), true),
            Resumed::NotRecovered { skipped: None }
        );
        assert_eq!((track.last, track.epoch_changes), (7, 2));
    }

    #[test]
    fn no_epoch_no_resume() {
        let mut track = Track::default();
        track.on_joined(3, None);
        assert_eq!(track.since(), None);
    }

    #[test]
    fn without_an_epoch_offsets_are_checked_alone_and_counted_unverified() {
        let mut track = Track::default();
        track.on_joined(0, None);
        for seq in [1, 2, 4, 4] {
            track.delivered(seq, None);
        }
        assert_eq!(
            (
                track.last,
                track.lost,
                track.duplicated,
                track.unverified,
                track.epoch_changes
            ),
            (4, 1, 1, 4, 0)
        );
        // The first epoch named is taken, not counted as a change.
        track.delivered(5, Some(EPOCH));
        assert_eq!((track.last, track.epoch_changes), (5, 0));
    }
}
