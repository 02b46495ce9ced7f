//! How a run's events are cut into objects. An object is closed at the first event boundary
//! where it reaches the run's limit, and the next object starts with the next event. The cut
//! depends only on the object's own bytes, so a retry, or a run resumed at its first missing
//! object, cuts where the first attempt did. No I/O here: the encoder thread feeds it, and what
//! it emits goes to the upload.

use bytes::Bytes;
use chrono::{DateTime, NaiveDate, Utc};

use super::encode::{Encoded, ObjectEncoder, PartPool};
use crate::domain::{Format, Timestamp};

/// Parts an S3 multipart upload may have.
const MAX_PARTS: u64 = 10_000;
/// Parts kept free below `MAX_PARTS`: the last event of an object may pass the limit, and
/// parts may be somewhat larger than the part size.
const SPARE_PARTS: u64 = 1_000;

/// The size at which a run's objects are cut: `max_object_bytes` when set, and never so large
/// that an object would need more parts than a multipart upload may have.
pub fn split_limit(max_object_bytes: Option<u64>, part_size: usize) -> u64 {
    let parts_cap = (part_size as u64).saturating_mul(MAX_PARTS - SPARE_PARTS);
    max_object_bytes.map_or(parts_cap, |max| max.min(parts_cap))
}

/// What the reader knows of an event beside its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    /// Its length in the batch.
    pub len: u32,
    pub occurred_at: Timestamp,
    /// Its `(txid, id)`, where a resumed run reads on after it (none for a heartbeat).
    pub position: Option<(i64, i64)>,
}

/// The upload's side of the cutting: an object begins, a part of it, the object is complete.
#[derive(Debug)]
pub enum Piece {
    /// Object `seq` begins; it holds events of this day, when the run is cut by day.
    Begin(u32, Option<NaiveDate>),
    Part(Bytes),
    End(Cut),
}

/// A complete object of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    pub seq: u32,
    pub day: Option<NaiveDate>,
    pub encoded: Encoded,
    pub oldest: Option<DateTime<Utc>>,
    pub newest: Option<DateTime<Utc>>,
    pub last: Option<(i64, i64)>,
}

pub struct Cutter {
    format: Format,
    part_size: usize,
    limit: Option<u64>,
    /// Cut by day: the day of an object without events (a heartbeat's object, whose event
    /// names the window's end, the same day).
    default_day: Option<NaiveDate>,
    next_seq: u32,
    open: Option<Open>,
    /// The part buffers of every object of the run.
    pool: PartPool,
}

struct Open {
    seq: u32,
    day: Option<NaiveDate>,
    encoder: ObjectEncoder,
    /// The oldest and newest `occurred_at` that has a date, as PostgreSQL's microseconds.
    span: Option<(i64, i64)>,
    last: Option<(i64, i64)>,
}

impl Open {
    /// Widens the span to `at`: compared as microseconds, converted (to learn whether it has
    /// a date) only when it lies outside, which is rare once an object has a few events.
    fn widen(&mut self, at: Timestamp) {
        let Timestamp::Micros(micros) = at else {
            return;
        };
        match self.span {
            Some((oldest, newest)) if (oldest..=newest).contains(&micros) => {}
            _ if at.to_datetime().is_none() => {}
            Some((oldest, newest)) => self.span = Some((oldest.min(micros), newest.max(micros))),
            None => self.span = Some((micros, micros)),
        }
    }

    /// The span's ends as times.
    fn ends(&self) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
        let at = |micros| Timestamp::Micros(micros).to_datetime();
        match self.span {
            Some((oldest, newest)) => (at(oldest), at(newest)),
            None => (None, None),
        }
    }
}

impl Cutter {
    /// Cuts objects numbered from `first_seq` at `limit` (`None`: one object, whatever its size),
    /// and by day when `default_day` is given: the day of an event whose time has none, and of an
    /// object without events.
    pub fn new(
        format: Format,
        part_size: usize,
        limit: Option<u64>,
        first_seq: u32,
        default_day: Option<NaiveDate>,
    ) -> Self {
        Self {
            format,
            part_size,
            limit,
            default_day,
            next_seq: first_seq,
            open: None,
            pool: PartPool::default(),
        }
    }

    /// Begins the run's first object at once, before any event is read: a fresh run always
    /// writes one, and its upload can get ready while the window's first rows come. Not when
    /// cut by day: the first object's day is the first event's.
    pub fn begin_first(
        &mut self,
        emit: &mut impl FnMut(Piece) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        if self.open.is_none() && self.next_seq == 1 && self.default_day.is_none() {
            let open = Self::begin(
                (self.format, self.part_size, &self.pool),
                &mut self.next_seq,
                None,
                emit,
            )?;
            self.open = Some(open);
        }
        Ok(())
    }

    /// Adds one event (its bytes as [`ObjectEncoder::write_event`] takes them).
    pub fn push(
        &mut self,
        event: &[u8],
        mark: &Mark,
        emit: &mut impl FnMut(Piece) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let day = self.default_day.map(|default| {
            mark.occurred_at
                .to_datetime()
                .map_or(default, |at| at.date_naive())
        });
        if let Some(open) = self.open.take_if(|open| open.day != day) {
            Self::end(open, emit)?;
        }
        let open = match &mut self.open {
            Some(open) => open,
            None => self.open.insert(Self::begin(
                (self.format, self.part_size, &self.pool),
                &mut self.next_seq,
                day,
                emit,
            )?),
        };
        open.encoder.write_event(event)?;
        open.widen(mark.occurred_at);
        open.last = mark.position.or(open.last);
        if let Some(part) = open.encoder.take_full_part() {
            emit(Piece::Part(part))?;
        }
        // The cheap bound first; only past it is the compressor flushed to learn the size.
        let full = open.encoder.full()
            || match self.limit {
                Some(limit) => {
                    open.encoder.size_bound() >= limit && open.encoder.flushed_size()? >= limit
                }
                None => false,
            };
        if full && let Some(open) = self.open.take() {
            Self::end(open, emit)?;
        }
        Ok(())
    }

    /// Closes the last object. A run that had no event at all still gets one (empty) object,
    /// unless it was resumed after objects already delivered.
    pub fn finish(
        mut self,
        emit: &mut impl FnMut(Piece) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let open = match self.open.take() {
            Some(open) => open,
            // Objects were written, by this cutter or (a resumed run) before it.
            None if self.next_seq > 1 => return Ok(()),
            None => Self::begin(
                (self.format, self.part_size, &self.pool),
                &mut self.next_seq,
                self.default_day,
                emit,
            )?,
        };
        Self::end(open, emit)
    }

    fn begin(
        (format, part_size, pool): (Format, usize, &PartPool),
        next_seq: &mut u32,
        day: Option<NaiveDate>,
        emit: &mut impl FnMut(Piece) -> anyhow::Result<()>,
    ) -> anyhow::Result<Open> {
        let seq = *next_seq;
        *next_seq += 1;
        emit(Piece::Begin(seq, day))?;
        Ok(Open {
            seq,
            day,
            encoder: ObjectEncoder::with_pool(format, part_size, pool.clone())?,
            span: None,
            last: None,
        })
    }

    fn end(open: Open, emit: &mut impl FnMut(Piece) -> anyhow::Result<()>) -> anyhow::Result<()> {
        let (oldest, newest) = open.ends();
        let (last_part, encoded) = open.encoder.finish()?;
        emit(Piece::Part(last_part))?;
        emit(Piece::End(Cut {
            seq: open.seq,
            day: open.day,
            encoded,
            oldest,
            newest,
            last: open.last,
        }))
    }
}

#[cfg(test)]
mod tests;
