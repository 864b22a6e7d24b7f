//! The seat listing's body kept once rendered: a listing of 10 000 seats is about 600 KB of
//! JSON, and every buyer of a schedule reads the same one until a seat is held or freed. So
//! the last rendering of each schedule and view (the listing, the seat map) is kept with a
//! tag of its content (the schedule's details, its seats, the AVAILABLE ones and for the map
//! the held ones) and its gzip form, made on first demand; a
//! request whose content has the same tag is served the kept bytes, and a client that has
//! them already (its `If-None-Match` names the tag) needs none.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;

use super::SeatListing;
use crate::model::{ListedSeat, SeatView};

/// A listing's body, rendered once for its content.
pub struct RenderedListing {
    /// The whole body.
    pub json: Bytes,
    /// Names the content: equal tags, equal bodies (the ETag's value).
    pub tag: u64,
    gzip: OnceLock<Bytes>,
}

impl RenderedListing {
    /// The body gzip-compressed, made on first demand and kept.
    pub fn gzip(&self) -> &Bytes {
        self.gzip.get_or_init(|| {
            // Fast compression: the body changes with every hold, and a listing of 10 000
            // seats still shrinks about tenfold.
            let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
            encoder
                .write_all(&self.json)
                .and_then(|()| encoder.finish())
                .map(Bytes::from)
                .expect("compressing into memory cannot fail")
        })
    }
}

/// What the last rendering of a schedule was made from.
struct Kept {
    seats: Arc<Vec<ListedSeat>>,
    seats_digest: u64,
    available: Arc<Vec<u64>>,
    available_digest: u64,
    held: Arc<Vec<u64>>,
    held_digest: u64,
    rendered: Arc<RenderedListing>,
}

/// The last rendering of each schedule's listing and seat map (two per schedule, so bounded
/// by the catalogue).
#[derive(Default)]
pub struct ListingCache {
    kept: Mutex<HashMap<(u64, SeatView), Kept>>,
}

impl ListingCache {
    /// The body of `listing`: the kept one if its content is the same, else `render`'s,
    /// kept for the next request.
    pub fn body(
        &self,
        listing: &SeatListing,
        render: impl FnOnce() -> Vec<u8>,
    ) -> Arc<RenderedListing> {
        let schedule_id = listing.schedule.schedule_id;
        let key = (schedule_id, listing.view);
        let (seats_digest, available_digest, held_digest) = {
            let kept = self.kept.lock().expect("listing cache lock");
            let kept = kept.get(&key);
            let seats = match kept {
                Some(k) if Arc::ptr_eq(&k.seats, &listing.seats) => Some(k.seats_digest),
                _ => None,
            };
            let available = match kept {
                Some(k) if Arc::ptr_eq(&k.available, &listing.available) => {
                    Some(k.available_digest)
                }
                _ => None,
            };
            let held = match kept {
                Some(k) if Arc::ptr_eq(&k.held, &listing.held) => Some(k.held_digest),
                _ => None,
            };
            (seats, available, held)
        };
        let seats_digest = seats_digest.unwrap_or_else(|| {
            digest(
                listing
                    .seats
                    .iter()
                    .map(|s| (s.seat_id, s.seat_number, s.price)),
            )
        });
        let available_digest = available_digest.unwrap_or_else(|| digest(listing.available.iter()));
        let held_digest = held_digest.unwrap_or_else(|| digest(listing.held.iter()));
        let schedule = &listing.schedule;
        let tag = digest([
            schedule_id,
            seats_digest,
            available_digest,
            held_digest,
            listing.view as u64,
            digest([
                &schedule.concert_title,
                &schedule.performance_date,
                &schedule.performance_time,
                &schedule.venue_name,
            ]),
        ]);
        let digests = (seats_digest, available_digest, held_digest);
        let mut kept = self.kept.lock().expect("listing cache lock");
        if let Some(k) = kept.get_mut(&key)
            && k.rendered.tag == tag
        {
            // The same content from another read (the seats read again for a seat map, the
            // catalogue's seats reloaded): kept from now on, so that the next request with
            // them is told by pointer, not by digesting thousands of seats again.
            let rendered = k.rendered.clone();
            *k = Kept::of(listing, digests, rendered.clone());
            return rendered;
        }
        drop(kept);
        let rendered = Arc::new(RenderedListing {
            json: Bytes::from(render()),
            tag,
            gzip: OnceLock::new(),
        });
        kept = self.kept.lock().expect("listing cache lock");
        kept.insert(key, Kept::of(listing, digests, rendered.clone()));
        rendered
    }
}

impl Kept {
    /// `listing`'s parts with their digests (seats, AVAILABLE, held), and its rendering.
    fn of(
        listing: &SeatListing,
        (seats_digest, available_digest, held_digest): (u64, u64, u64),
        rendered: Arc<RenderedListing>,
    ) -> Self {
        Self {
            seats: listing.seats.clone(),
            seats_digest,
            available: listing.available.clone(),
            available_digest,
            held: listing.held.clone(),
            held_digest,
            rendered,
        }
    }
}

/// A 64-bit digest of `items` (the same in every instance running the same build).
fn digest<T: Hash>(items: impl IntoIterator<Item = T>) -> u64 {
    let mut hasher = DefaultHasher::new();
    for item in items {
        item.hash(&mut hasher);
    }
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Schedule;

    fn listing(available: Vec<u64>) -> SeatListing {
        map(available, Vec::new(), SeatView::Available)
    }

    fn map(available: Vec<u64>, held: Vec<u64>, view: SeatView) -> SeatListing {
        SeatListing {
            schedule: Schedule {
                schedule_id: 7,
                concert_title: "A".into(),
                ..Schedule::default()
            },
            seats: Arc::new(vec![ListedSeat::new(1, 1, 10), ListedSeat::new(2, 2, 10)]),
            available: Arc::new(available),
            held: Arc::new(held),
            view,
            stale: false,
        }
    }

    #[test]
    fn the_map_is_kept_beside_the_listing_and_follows_the_held_seats() {
        let cache = ListingCache::default();
        let list = cache.body(&listing(vec![2]), || b"list".to_vec());
        let held = cache.body(&map(vec![2], vec![1], SeatView::Map), || b"held".to_vec());
        // The map does not replace the listing: the listing's bytes are still kept.
        let again = cache.body(&listing(vec![2]), || b"rendered again".to_vec());
        assert_eq!(&again.json[..], b"list");
        assert_ne!(held.tag, list.tag);
        // Seat 1 sold: the same AVAILABLE seats, another map.
        let sold = cache.body(&map(vec![2], vec![], SeatView::Map), || b"sold".to_vec());
        assert_ne!(sold.tag, held.tag);
        assert_eq!(&sold.json[..], b"sold");
    }

    #[test]
    fn the_same_content_is_rendered_once_and_its_tag_follows_the_availability() {
        let cache = ListingCache::default();
        let mut renders = 0;
        let first = cache.body(&listing(vec![1, 2]), || {
            renders += 1;
            b"both".to_vec()
        });
        // Another read of the same availability (a new batch, equal content): kept bytes.
        let again = cache.body(&listing(vec![1, 2]), || {
            renders += 1;
            b"both".to_vec()
        });
        assert_eq!((renders, again.tag), (1, first.tag));
        let one_held = cache.body(&listing(vec![2]), || {
            renders += 1;
            b"one".to_vec()
        });
        assert_eq!(renders, 2);
        assert_ne!(one_held.tag, first.tag);
        assert_eq!(&one_held.json[..], b"one");
    }

    #[test]
    fn equal_content_read_again_is_kept_so_the_next_request_is_not_digested() {
        let cache = ListingCache::default();
        cache.body(&listing(vec![1, 2]), || b"both".to_vec());
        let again = listing(vec![1, 2]); // new Arcs, the same content
        cache.body(&again, || {
            unreachable!("the same content is not rendered again")
        });
        let kept = cache.kept.lock().unwrap();
        let k = &kept[&(7, SeatView::Available)];
        assert!(Arc::ptr_eq(&k.available, &again.available));
        assert!(Arc::ptr_eq(&k.seats, &again.seats));
    }

    #[test]
    fn the_gzip_form_inflates_to_the_body() {
        use std::io::Read;
        let cache = ListingCache::default();
        let body = vec![b'x'; 10_000];
        let rendered = cache.body(&listing(vec![1]), || body.clone());
        let mut inflated = Vec::new();
        flate2::read::GzDecoder::new(&rendered.gzip()[..])
            .read_to_end(&mut inflated)
            .unwrap();
        assert_eq!(inflated, body);
        assert!(rendered.gzip().len() < 200);
    }
}
