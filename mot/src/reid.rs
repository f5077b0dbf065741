//! Cross-camera re-identification: global person ids (pure, no I/O).
//!
//! A [`Gallery`] hands out global person ids. When tracks are confirmed the
//! caller passes them as one batch to [`Gallery::assign`]; each is compared
//! (cosine similarity of L2-normalised appearances) with
//! - people whose track **ended** recently on some camera (the gallery), and
//! - people **active** now on other cameras (passed in by the caller),
//!
//! where only candidates that the camera [`Topology`] allows are scored, and
//! the batch is matched optimally ([`crate::assignment::solve`]: as many
//! tracks as possible re-use an id, then the highest total similarity), so
//! two new tracks never get the same id. Unmatched tracks get fresh ids from
//! an [`IdAllocator`].
//!
//! When a track ends the caller reports it with [`Gallery::track_ended`]: it
//! joins the gallery, and if its whole-life mean appearance is very similar
//! (`merge_threshold`) to a topology-consistent entry of another id, the two
//! ids are reported as one person ([`Merge`]) and the gallery relabels.
//!
//! # Rules
//! - Time is stream time (µs). A candidate last seen on camera `C` at `t`
//!   may be the new track on camera `B` starting at `t'` only if
//!   [`Topology::gap_allowed`]`(C, B, t' − t)`.
//! - An id active on `B` itself is never re-used on `B`. An id active on a
//!   camera from which the gap rule does not allow reaching `B` is blocked
//!   altogether (the person is visibly elsewhere). An active sighting that
//!   passes the gap rule is a candidate: with overlapping views (or no
//!   topology) at any time; through a non-overlapping link only once that
//!   track has gone unseen for at least the minimum transit (it is coasting).
//! - Matching re-uses an id: its gallery entries are consumed (the person is
//!   live again and will be re-entered when the new track ends).
//! - Merges are reported with `from` = the newer id (larger; the allocator
//!   is monotone) and `into` = the older one. Two ids are never merged when
//!   they were seen at the same time on one camera or on cameras whose
//!   views do not overlap, nor when their joined timeline has a transit the
//!   topology forbids (each id keeps a small record of where and when it was
//!   seen, at most [`MAX_INTERVALS`] intervals).
//!
//! # Bounded memory and cost
//! Entries and per-id records expire `ttl_s` after their last sighting and
//! are capped at `max_entries` each (oldest last sighting evicted first).
//! Entries are indexed by camera and time, so a new track only scores the
//! entries of cameras linked to its own, within the link's transit window.
//!
//! # Checkpoints
//! [`Gallery::state`] borrows the whole state ([`GalleryState`]: entries,
//! per-id records, allocator, counters), which is `Serialize`;
//! [`Gallery::restore`] rebuilds a gallery from a deserialized state and the
//! current parameters, never re-minting an id handed out before.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;

use crate::topology::{Link, Topology, secs_to_us, validate_links};
use crate::{assignment, vector};

/// Most intervals kept in one id's record (the most recent ones).
pub const MAX_INTERVALS: usize = 16;

/// Re-identification parameters (the `[reid]` config section).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReidParams {
    /// Minimum cosine similarity to re-use a person id. Default 0.8:
    /// MobileNetV2 128×64 crops measured 0.80–0.92 for the same person and
    /// 0.64–0.78 for different people in vtest.avi.
    pub threshold: f32,
    /// Minimum cosine similarity between a finished track's whole-life mean
    /// appearance and another id's gallery entry to merge the two ids.
    /// Default 0.9: well above the different-people range (≤ 0.78) since a
    /// wrong merge joins two people for good. Above 1.0 disables merges.
    pub merge_threshold: f32,
    /// Seconds (stream time) an ended track stays matchable and an id's
    /// record is kept. Default 120: longer than any transit in a building.
    pub ttl_s: f64,
    /// Most gallery entries (and most per-id records) held; the oldest are
    /// evicted first. Default 10 000: about 20 MB with 512-d embeddings.
    pub max_entries: usize,
    /// First person id minted. Default 1 (0 means "no person" downstream).
    pub id_offset: u64,
    /// Step between minted ids: instance `i` of `n` trackers uses
    /// `id_offset = i + 1`, `id_stride = n` so their ids never collide.
    /// Default 1.
    pub id_stride: u64,
    /// Camera topology (`[[reid.links]]`). Default empty: permissive, every
    /// pair of cameras adjacent and overlapping.
    pub links: Vec<Link>,
}

impl Default for ReidParams {
    fn default() -> Self {
        ReidParams {
            threshold: 0.8,
            merge_threshold: 0.9,
            ttl_s: 120.0,
            max_entries: 10_000,
            id_offset: 1,
            id_stride: 1,
            links: Vec::new(),
        }
    }
}

impl ReidParams {
    /// Every problem with these parameters, one message each (empty when
    /// fine).
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let t = self.threshold;
        if !(t > 0.0 && t <= 1.0) {
            problems.push(format!("threshold must be in (0, 1], got {t}"));
        }
        let m = self.merge_threshold;
        if !m.is_finite() || (t.is_finite() && m < t) {
            problems.push(format!(
                "merge_threshold must be a finite number ≥ threshold ({t}), got {m}; \
                 use a value above 1 to disable merges"
            ));
        }
        if !(self.ttl_s.is_finite() && self.ttl_s > 0.0) {
            problems.push(format!(
                "ttl_s must be a finite number > 0, got {}",
                self.ttl_s
            ));
        }
        if self.max_entries == 0 {
            problems.push("max_entries must be at least 1".to_owned());
        }
        if self.id_offset == 0 {
            problems.push("id_offset must be at least 1: id 0 means \"no person\"".to_owned());
        }
        if self.id_stride == 0 {
            problems.push("id_stride must be at least 1".to_owned());
        }
        problems.extend(validate_links(&self.links));
        problems
    }
}

/// A person seen on one camera over a span of time.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Sighting {
    /// Global person id.
    pub person_id: u64,
    /// Camera where the person was seen.
    pub camera_id: String,
    /// Appearance embedding (normalised here; need not be unit length).
    /// For [`Gallery::track_ended`], the mean over the track's whole life.
    pub appearance: Vec<f32>,
    /// Stream time of the first detection, µs.
    pub first_ts_us: i64,
    /// Stream time of the last detection, µs.
    pub last_ts_us: i64,
}

/// A newly confirmed track that needs a person id.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTrack {
    /// Camera of the track.
    pub camera_id: String,
    /// Appearance embedding (normalised here; need not be unit length).
    pub appearance: Vec<f32>,
    /// Stream time of the track's first detection, µs.
    pub first_ts_us: i64,
}

/// The person id given to a [`NewTrack`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Assigned {
    /// Global person id.
    pub person_id: u64,
    /// True when an existing id was re-used, false when freshly minted.
    pub matched: bool,
    /// Similarity to the re-used identity; for a fresh id, the best
    /// similarity among admissible candidates (0 when there were none).
    pub similarity: f32,
}

/// Two ids found to be one person: `from` is folded into `into`. The gallery
/// has relabelled its entries; the caller relabels live tracks and emits an
/// id-merge event downstream.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Merge {
    /// The newer id, retired.
    pub from: u64,
    /// The older id, kept.
    pub into: u64,
    /// Stream time of the evidence (the ended track's last detection), µs.
    pub ts_us: i64,
    /// Similarity that triggered the merge.
    pub similarity: f32,
}

/// Counters for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GalleryStats {
    /// Gallery entries held now.
    pub entries: usize,
    /// Per-id records held now.
    pub people: usize,
    /// Fresh ids minted.
    pub ids_minted: u64,
    /// New tracks that re-used an id.
    pub matches: u64,
    /// Id merges reported.
    pub merges: u64,
    /// Entries dropped after `ttl_s`.
    pub expired: u64,
    /// Entries dropped to stay within `max_entries`.
    pub evicted: u64,
    /// Similarities computed (the cost of matching).
    pub comparisons: u64,
}

/// The id space is used up: no id `offset + k·stride` fits in a `u64` any
/// more. Nothing was assigned; configure a fresh `id_offset`/`id_stride`
/// partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdSpaceExhausted {
    /// The allocator's offset.
    pub offset: u64,
    /// The allocator's stride.
    pub stride: u64,
}

impl fmt::Display for IdSpaceExhausted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "person id space exhausted (id_offset {}, id_stride {}): \
             configure an unused id_offset/id_stride partition",
            self.offset, self.stride
        )
    }
}

impl std::error::Error for IdSpaceExhausted {}

/// Mints ids `offset + k·stride` for k = 0, 1, 2, … with checked
/// arithmetic. When the next id would not fit in a `u64` the allocator is
/// exhausted for good: [`IdAllocator::mint`] returns `None`, never wraps.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IdAllocator {
    offset: u64,
    stride: u64,
    /// The next id to hand out; `None` once exhausted.
    next: Option<u64>,
    /// The highest id handed out (ids only grow).
    last: Option<u64>,
}

impl IdAllocator {
    /// A fresh allocator; a `stride` of 0 (rejected by validation) is
    /// taken as 1.
    pub fn new(offset: u64, stride: u64) -> Self {
        IdAllocator {
            offset,
            stride: stride.max(1),
            next: Some(offset),
            last: None,
        }
    }

    /// An allocator for `offset`/`stride` whose ids are all greater than
    /// `after` (the highest id handed out before, e.g. from a checkpoint).
    pub fn resume(offset: u64, stride: u64, after: Option<u64>) -> Self {
        let mut allocator = IdAllocator::new(offset, stride);
        if let Some(last) = after {
            if last >= offset {
                let k = (last - offset) / allocator.stride + 1;
                allocator.next = k
                    .checked_mul(allocator.stride)
                    .and_then(|step| offset.checked_add(step));
            }
            allocator.last = Some(last);
        }
        allocator
    }

    /// The next id, or `None` once exhausted.
    pub fn mint(&mut self) -> Option<u64> {
        let id = self.next?;
        self.next = id.checked_add(self.stride);
        self.last = Some(id);
        Some(id)
    }

    /// Whether `n` more ids can be minted.
    pub fn can_mint(&self, n: usize) -> bool {
        let Some(n) = n.checked_sub(1) else {
            return true;
        };
        self.next.is_some_and(|next| {
            u64::try_from(n)
                .ok()
                .and_then(|n| n.checked_mul(self.stride))
                .and_then(|span| next.checked_add(span))
                .is_some()
        })
    }

    /// The highest id handed out so far.
    pub fn last(&self) -> Option<u64> {
        self.last
    }

    /// The error for this allocator's exhaustion.
    fn exhausted(&self) -> IdSpaceExhausted {
        IdSpaceExhausted {
            offset: self.offset,
            stride: self.stride,
        }
    }
}

/// Where and when an id was seen.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Interval {
    camera_id: String,
    first_ts_us: i64,
    last_ts_us: i64,
}

/// The small per-id history used to refuse impossible merges.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
struct PersonRecord {
    /// Ended tracks, oldest first, at most [`MAX_INTERVALS`].
    intervals: Vec<Interval>,
    /// Latest stream time the id was seen (ended or active), µs.
    last_seen_us: i64,
}

/// Running counters (checkpointed with the state).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
struct Counters {
    ids_minted: u64,
    matches: u64,
    merges: u64,
    expired: u64,
    evicted: u64,
    comparisons: u64,
}

/// Everything a [`Gallery`] must keep across a restart (its indices are
/// rebuilt by [`Gallery::restore`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GalleryState {
    /// Ended sightings with unit appearances, keyed by insertion sequence.
    entries: BTreeMap<u64, Sighting>,
    /// Sequence number of the next entry.
    next_seq: u64,
    /// Per-id records.
    people: BTreeMap<u64, PersonRecord>,
    /// Person id allocator.
    allocator: IdAllocator,
    /// Counters for [`GalleryStats`].
    counters: Counters,
}

/// The gallery of recently seen people and the id allocator.
#[derive(Debug)]
pub struct Gallery {
    params: ReidParams,
    topology: Topology,
    ttl_us: i64,
    state: GalleryState,
    /// Entries by (last seen, sequence): expiry and eviction order.
    by_time: BTreeSet<(i64, u64)>,
    /// Entries by camera, each by (last seen, sequence): candidate lookup.
    by_camera: HashMap<String, BTreeSet<(i64, u64)>>,
    /// Entry sequences by person id: consumption and relabelling.
    by_person: HashMap<u64, BTreeSet<u64>>,
    /// Records by (last seen, person id): expiry and eviction order.
    people_by_time: BTreeSet<(i64, u64)>,
}

impl Gallery {
    /// An empty gallery; the first id minted is `params.id_offset`.
    pub fn new(params: ReidParams) -> Self {
        let state = GalleryState {
            entries: BTreeMap::new(),
            next_seq: 0,
            people: BTreeMap::new(),
            allocator: IdAllocator::new(params.id_offset, params.id_stride),
            counters: Counters::default(),
        };
        Gallery::restore(params, state)
    }

    /// A gallery from a checkpointed state and the current parameters. Ids
    /// continue after the highest id the checkpoint had handed out (in the
    /// residue class of the current `id_offset`/`id_stride`), so no id is
    /// minted twice; a smaller `max_entries` evicts on restore.
    pub fn restore(params: ReidParams, mut state: GalleryState) -> Self {
        state.allocator =
            IdAllocator::resume(params.id_offset, params.id_stride, state.allocator.last);
        // Never hand out a sequence number an entry already has (a checkpoint
        // edited or written by another version could disagree).
        if let Some((&last, _)) = state.entries.last_key_value() {
            state.next_seq = state.next_seq.max(last.saturating_add(1));
        }
        let mut gallery = Gallery {
            topology: Topology::new(&params.links),
            ttl_us: secs_to_us(params.ttl_s).max(0),
            params,
            state,
            by_time: BTreeSet::new(),
            by_camera: HashMap::new(),
            by_person: HashMap::new(),
            people_by_time: BTreeSet::new(),
        };
        for (&seq, entry) in &gallery.state.entries {
            let key = (entry.last_ts_us, seq);
            gallery.by_time.insert(key);
            gallery
                .by_camera
                .entry(entry.camera_id.clone())
                .or_default()
                .insert(key);
            gallery
                .by_person
                .entry(entry.person_id)
                .or_default()
                .insert(seq);
        }
        for (&id, record) in &gallery.state.people {
            gallery.people_by_time.insert((record.last_seen_us, id));
        }
        gallery.enforce_capacity();
        gallery
    }

    /// The whole state, for checkpointing (`Serialize`).
    pub fn state(&self) -> &GalleryState {
        &self.state
    }

    /// The parameters in force.
    pub fn params(&self) -> &ReidParams {
        &self.params
    }

    /// Gallery entries (ended sightings) held now.
    pub fn len(&self) -> usize {
        self.state.entries.len()
    }

    /// True when no ended sighting is held.
    pub fn is_empty(&self) -> bool {
        self.state.entries.is_empty()
    }

    /// Counters for metrics.
    pub fn stats(&self) -> GalleryStats {
        let c = &self.state.counters;
        GalleryStats {
            entries: self.state.entries.len(),
            people: self.state.people.len(),
            ids_minted: c.ids_minted,
            matches: c.matches,
            merges: c.merges,
            expired: c.expired,
            evicted: c.evicted,
            comparisons: c.comparisons,
        }
    }

    /// Person ids for a batch of newly confirmed tracks (possibly on several
    /// cameras), in the same order. `now_us` is the current stream time;
    /// `active` are the confirmed tracks alive now on every camera (with
    /// their person ids and mean appearances).
    ///
    /// # Errors
    /// [`IdSpaceExhausted`] when fresh ids are needed and the allocator
    /// cannot mint them all; then nothing is assigned or consumed.
    pub fn assign(
        &mut self,
        now_us: i64,
        new_tracks: &[NewTrack],
        active: &[Sighting],
    ) -> Result<Vec<Assigned>, IdSpaceExhausted> {
        self.refresh_people(active);
        self.expire(now_us);
        let active_units: Vec<Option<Vec<f32>>> =
            active.iter().map(|s| unit(&s.appearance)).collect();

        // Best similarity per (row, candidate id), over admissible sightings.
        let mut best: Vec<HashMap<u64, f32>> = vec![HashMap::new(); new_tracks.len()];
        let mut comparisons = 0u64;
        for (track, row_best) in new_tracks.iter().zip(&mut best) {
            let Some(appearance) = unit(&track.appearance) else {
                continue;
            };
            let mut blocked = HashSet::new();
            let mut offer = |id: u64, candidate: &[f32]| {
                comparisons += 1;
                if let Some(sim) = cosine(&appearance, candidate) {
                    let slot = row_best.entry(id).or_insert(sim);
                    *slot = slot.max(sim);
                }
            };
            for (sighting, candidate) in active.iter().zip(&active_units) {
                let gap = track.first_ts_us.saturating_sub(sighting.last_ts_us);
                let reachable = sighting.camera_id != track.camera_id
                    && self
                        .topology
                        .gap_allowed(&sighting.camera_id, &track.camera_id, gap);
                if !reachable {
                    blocked.insert(sighting.person_id);
                } else if let Some(candidate) = candidate {
                    offer(sighting.person_id, candidate);
                }
            }
            for seq in self.candidate_entries(&track.camera_id, track.first_ts_us) {
                let entry = &self.state.entries[&seq];
                offer(entry.person_id, &entry.appearance);
            }
            row_best.retain(|id, _| !blocked.contains(id));
        }
        self.state.counters.comparisons =
            self.state.counters.comparisons.saturating_add(comparisons);

        // Columns: ids above the threshold for some row, in id order.
        let threshold = self.params.threshold;
        let columns: Vec<u64> = best
            .iter()
            .flat_map(|row| {
                row.iter()
                    .filter(|(_, s)| **s >= threshold)
                    .map(|(id, _)| *id)
            })
            .collect::<BTreeSet<u64>>()
            .into_iter()
            .collect();
        let mut cost = Vec::with_capacity(best.len() * columns.len());
        for row in &best {
            for id in &columns {
                cost.push(match row.get(id) {
                    Some(&sim) if sim >= threshold => 1.0 - f64::from(sim),
                    _ => f64::NAN,
                });
            }
        }
        let pairs = assignment::solve(&cost, best.len(), columns.len());

        let fresh = pairs.iter().filter(|p| p.is_none()).count();
        if !self.state.allocator.can_mint(fresh) {
            return Err(self.state.allocator.exhausted());
        }
        let mut out = Vec::with_capacity(new_tracks.len());
        for (row, pair) in best.iter().zip(pairs) {
            let assigned = match pair {
                Some(col) => {
                    let person_id = columns[col];
                    self.consume(person_id);
                    self.state.counters.matches = self.state.counters.matches.saturating_add(1);
                    Assigned {
                        person_id,
                        matched: true,
                        similarity: row.get(&person_id).copied().unwrap_or(0.0),
                    }
                }
                None => {
                    // Never `None`: `can_mint` vouched for every fresh id above.
                    let allocator = &mut self.state.allocator;
                    let person_id = allocator.mint().ok_or_else(|| allocator.exhausted())?;
                    self.state.counters.ids_minted =
                        self.state.counters.ids_minted.saturating_add(1);
                    Assigned {
                        person_id,
                        matched: false,
                        similarity: row.values().copied().max_by(f32::total_cmp).unwrap_or(0.0),
                    }
                }
            };
            out.push(assigned);
        }
        Ok(out)
    }

    /// Records a finished track: it joins the gallery (unless its
    /// appearance is unusable) and its id's record. Returns a merge when its
    /// mean appearance shows it is the same person as another id (see the
    /// module docs for when merges are refused). `active` are the confirmed
    /// tracks alive now, as for [`Gallery::assign`].
    pub fn track_ended(&mut self, sighting: Sighting, active: &[Sighting]) -> Option<Merge> {
        self.refresh_people(active);
        self.expire(sighting.last_ts_us);
        self.record(
            sighting.person_id,
            Interval {
                camera_id: sighting.camera_id.clone(),
                first_ts_us: sighting.first_ts_us,
                last_ts_us: sighting.last_ts_us,
            },
        );
        let appearance = unit(&sighting.appearance)?;
        let merge = self.find_merge(&sighting, &appearance, active);
        self.insert(Sighting {
            appearance,
            ..sighting
        });
        if let Some(merge) = merge {
            self.relabel(merge.from, merge.into);
            self.state.counters.merges = self.state.counters.merges.saturating_add(1);
        }
        merge
    }

    /// Gallery entries that may be the track starting on `camera` at
    /// `first_ts_us`, by the topology's gap rule.
    fn candidate_entries(&self, camera: &str, first_ts_us: i64) -> Vec<u64> {
        let mut out = Vec::new();
        let mut scan = |from: &str, lo_gap: i64, hi_gap: i64| {
            let Some(set) = self.by_camera.get(from) else {
                return;
            };
            // gap = first − last ∈ [lo, hi]  ⇔  last ∈ [first − hi, first − lo].
            let lo = first_ts_us.saturating_sub(hi_gap);
            let hi = first_ts_us.saturating_sub(lo_gap);
            if lo > hi {
                return;
            }
            for &(last, seq) in set.range((lo, 0)..=(hi, u64::MAX)) {
                let gap = first_ts_us.saturating_sub(last);
                if self.topology.gap_allowed(from, camera, gap) {
                    out.push(seq);
                }
            }
        };
        scan(camera, 1, i64::MAX);
        if self.topology.is_permissive() {
            for other in self.by_camera.keys().filter(|c| *c != camera) {
                scan(other, i64::MIN, i64::MAX);
            }
        } else {
            for transit in self.topology.transits_into(camera) {
                scan(&transit.from, transit.window.lo, transit.window.hi);
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The best merge for an ended track, if any.
    fn find_merge(
        &self,
        ended: &Sighting,
        appearance: &[f32],
        active: &[Sighting],
    ) -> Option<Merge> {
        let min_sim = self.params.merge_threshold;
        if min_sim.is_nan() || min_sim > 1.0 {
            return None;
        }
        let camera = ended.camera_id.as_str();
        let cameras: Vec<&str> = if self.topology.is_permissive() {
            self.by_camera.keys().map(String::as_str).collect()
        } else {
            std::iter::once(camera)
                .chain(self.topology.neighbours(camera))
                .collect()
        };
        let mut candidates: Vec<(f32, u64)> = Vec::new();
        for cam in cameras {
            for &(_, seq) in self.by_camera.get(cam).into_iter().flatten() {
                let entry = &self.state.entries[&seq];
                if entry.person_id == ended.person_id {
                    continue;
                }
                let Some(sim) = cosine(appearance, &entry.appearance) else {
                    continue;
                };
                if sim >= min_sim && self.pair_consistent(entry, ended) {
                    candidates.push((sim, seq));
                }
            }
        }
        candidates.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut refused = HashSet::new();
        for (sim, seq) in candidates {
            let other = self.state.entries[&seq].person_id;
            if refused.contains(&other) {
                continue;
            }
            let entry = &self.state.entries[&seq];
            let mut timeline = self.intervals_of(ended.person_id, active);
            let mut theirs = self.intervals_of(other, active);
            add_interval(
                &mut theirs,
                &entry.camera_id,
                entry.first_ts_us,
                entry.last_ts_us,
            );
            timeline.extend(theirs);
            if self.timeline_consistent(timeline) {
                return Some(Merge {
                    from: other.max(ended.person_id),
                    into: other.min(ended.person_id),
                    ts_us: ended.last_ts_us,
                    similarity: sim,
                });
            }
            refused.insert(other);
        }
        None
    }

    /// Whether two sightings can be one person: one follows the other by
    /// the gap rule (overlapping views allow simultaneous presence).
    fn pair_consistent(&self, a: &Sighting, b: &Sighting) -> bool {
        let follows = |x: &Sighting, y: &Sighting| {
            let gap = y.first_ts_us.saturating_sub(x.last_ts_us);
            self.topology.gap_allowed(&x.camera_id, &y.camera_id, gap)
        };
        follows(a, b) || follows(b, a)
    }

    /// An id's recorded intervals plus its active tracks.
    fn intervals_of(&self, id: u64, active: &[Sighting]) -> Vec<Interval> {
        let mut intervals = self
            .state
            .people
            .get(&id)
            .map(|r| r.intervals.clone())
            .unwrap_or_default();
        for s in active.iter().filter(|s| s.person_id == id) {
            add_interval(&mut intervals, &s.camera_id, s.first_ts_us, s.last_ts_us);
        }
        intervals
    }

    /// Whether one person could have produced all these intervals: any two
    /// that overlap in time are on distinct overlapping cameras, and each
    /// interval (in start order) can follow the one before it.
    fn timeline_consistent(&self, mut intervals: Vec<Interval>) -> bool {
        intervals.sort_by_key(|i| (i.first_ts_us, i.last_ts_us));
        for (k, a) in intervals.iter().enumerate() {
            for b in intervals[k + 1..]
                .iter()
                .take_while(|b| b.first_ts_us <= a.last_ts_us)
            {
                if !self.topology.overlap(&a.camera_id, &b.camera_id) {
                    return false;
                }
            }
        }
        intervals.windows(2).all(|pair| {
            let (a, b) = (&pair[0], &pair[1]);
            b.first_ts_us <= a.last_ts_us // overlapping: checked above
                || self.topology.gap_allowed(
                    &a.camera_id,
                    &b.camera_id,
                    b.first_ts_us.saturating_sub(a.last_ts_us),
                )
        })
    }

    /// Adds an entry (unit appearance) and evicts beyond capacity.
    fn insert(&mut self, entry: Sighting) {
        let seq = self.state.next_seq;
        self.state.next_seq = seq.wrapping_add(1);
        let key = (entry.last_ts_us, seq);
        self.by_time.insert(key);
        self.by_camera
            .entry(entry.camera_id.clone())
            .or_default()
            .insert(key);
        self.by_person
            .entry(entry.person_id)
            .or_default()
            .insert(seq);
        self.state.entries.insert(seq, entry);
        self.enforce_capacity();
    }

    /// Removes one entry from the state and every index.
    fn remove(&mut self, seq: u64) {
        let Some(entry) = self.state.entries.remove(&seq) else {
            return;
        };
        let key = (entry.last_ts_us, seq);
        self.by_time.remove(&key);
        if let Some(set) = self.by_camera.get_mut(&entry.camera_id) {
            set.remove(&key);
            if set.is_empty() {
                self.by_camera.remove(&entry.camera_id);
            }
        }
        if let Some(set) = self.by_person.get_mut(&entry.person_id) {
            set.remove(&seq);
            if set.is_empty() {
                self.by_person.remove(&entry.person_id);
            }
        }
    }

    /// Drops every entry of a re-used id.
    fn consume(&mut self, person_id: u64) {
        for seq in self.by_person.remove(&person_id).unwrap_or_default() {
            self.remove(seq);
        }
    }

    /// Drops entries and records last seen more than `ttl_s` before `now_us`.
    fn expire(&mut self, now_us: i64) {
        let cutoff = now_us.saturating_sub(self.ttl_us);
        while let Some(&(last, seq)) = self.by_time.first()
            && last < cutoff
        {
            self.remove(seq);
            self.state.counters.expired = self.state.counters.expired.saturating_add(1);
        }
        while let Some(&(last, id)) = self.people_by_time.first()
            && last < cutoff
        {
            self.people_by_time.remove(&(last, id));
            self.state.people.remove(&id);
        }
    }

    /// Evicts the oldest entries and records beyond `max_entries`.
    fn enforce_capacity(&mut self) {
        let cap = self.params.max_entries;
        while self.state.entries.len() > cap {
            let Some(&(_, seq)) = self.by_time.first() else {
                break;
            };
            self.remove(seq);
            self.state.counters.evicted = self.state.counters.evicted.saturating_add(1);
        }
        while self.state.people.len() > cap {
            let Some((_, id)) = self.people_by_time.pop_first() else {
                break;
            };
            self.state.people.remove(&id);
        }
    }

    /// Keeps the records of live ids from expiring.
    fn refresh_people(&mut self, active: &[Sighting]) {
        for s in active {
            if let Some(record) = self.state.people.get_mut(&s.person_id)
                && s.last_ts_us > record.last_seen_us
            {
                self.people_by_time
                    .remove(&(record.last_seen_us, s.person_id));
                record.last_seen_us = s.last_ts_us;
                self.people_by_time
                    .insert((record.last_seen_us, s.person_id));
            }
        }
    }

    /// Adds an ended interval to an id's record.
    fn record(&mut self, person_id: u64, interval: Interval) {
        let record = self
            .state
            .people
            .entry(person_id)
            .or_insert_with(|| PersonRecord {
                intervals: Vec::new(),
                last_seen_us: interval.last_ts_us,
            });
        self.people_by_time
            .remove(&(record.last_seen_us, person_id));
        record.last_seen_us = record.last_seen_us.max(interval.last_ts_us);
        record.intervals.push(interval);
        trim(&mut record.intervals);
        self.people_by_time.insert((record.last_seen_us, person_id));
        self.enforce_capacity();
    }

    /// Folds id `from` into `into`: entries and records.
    fn relabel(&mut self, from: u64, into: u64) {
        for seq in self.by_person.remove(&from).unwrap_or_default() {
            if let Some(entry) = self.state.entries.get_mut(&seq) {
                entry.person_id = into;
                self.by_person.entry(into).or_default().insert(seq);
            }
        }
        let Some(old) = self.state.people.remove(&from) else {
            return;
        };
        self.people_by_time.remove(&(old.last_seen_us, from));
        let record = self.state.people.entry(into).or_default();
        self.people_by_time.remove(&(record.last_seen_us, into));
        record.last_seen_us = record.last_seen_us.max(old.last_seen_us);
        record.intervals.extend(old.intervals);
        trim(&mut record.intervals);
        self.people_by_time.insert((record.last_seen_us, into));
    }
}

/// Adds an interval unless one of the same track (camera and start) is
/// there already.
fn add_interval(intervals: &mut Vec<Interval>, camera_id: &str, first_ts_us: i64, last_ts_us: i64) {
    let known = intervals
        .iter()
        .any(|i| i.camera_id == camera_id && i.first_ts_us == first_ts_us);
    if !known {
        intervals.push(Interval {
            camera_id: camera_id.to_owned(),
            first_ts_us,
            last_ts_us,
        });
    }
}

/// Sorts intervals oldest first and keeps the last [`MAX_INTERVALS`].
fn trim(intervals: &mut Vec<Interval>) {
    intervals.sort_by_key(|i| (i.last_ts_us, i.first_ts_us));
    let excess = intervals.len().saturating_sub(MAX_INTERVALS);
    intervals.drain(..excess);
}

/// The L2-normalised vector, or `None` when empty, non-finite or zero.
fn unit(v: &[f32]) -> Option<Vec<f32>> {
    let u = vector::normalised(v);
    (!u.is_empty()).then_some(u)
}

/// Cosine similarity of two unit vectors; `None` on length mismatch or a
/// non-finite result.
fn cosine(a: &[f32], b: &[f32]) -> Option<f32> {
    if a.len() != b.len() || a.is_empty() {
        return None;
    }
    let dot = vector::dot(a, b);
    dot.is_finite().then_some(dot)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    const S: i64 = 1_000_000;

    /// Seeded noise for the scenarios.
    struct Rng(crate::rng::SplitMix64);

    impl Rng {
        fn next_u64(&mut self) -> u64 {
            self.0.next_u64()
        }

        /// Uniform in [-1, 1).
        fn symmetric(&mut self) -> f32 {
            (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        }

        fn unit(&mut self, dim: usize) -> Vec<f32> {
            let v: Vec<f32> = (0..dim).map(|_| self.symmetric()).collect();
            unit(&v).unwrap()
        }

        /// `proto` plus uniform noise of amplitude `amp` per component.
        fn noisy(&mut self, proto: &[f32], amp: f32) -> Vec<f32> {
            proto.iter().map(|x| x + amp * self.symmetric()).collect()
        }
    }

    fn at_angle(degrees: f64) -> Vec<f32> {
        let r = degrees.to_radians();
        vec![r.cos() as f32, r.sin() as f32]
    }

    fn new_track(camera: &str, appearance: Vec<f32>, first_ts_us: i64) -> NewTrack {
        NewTrack {
            camera_id: camera.into(),
            appearance,
            first_ts_us,
        }
    }

    fn sighting(id: u64, camera: &str, appearance: Vec<f32>, first: i64, last: i64) -> Sighting {
        Sighting {
            person_id: id,
            camera_id: camera.into(),
            appearance,
            first_ts_us: first,
            last_ts_us: last,
        }
    }

    fn link(from: &str, to: &str, min: f64, max: f64) -> Link {
        Link {
            from: from.into(),
            to: to.into(),
            min_transit_s: min,
            max_transit_s: Some(max),
            bidirectional: true,
        }
    }

    fn with_links(links: Vec<Link>) -> ReidParams {
        ReidParams {
            links,
            ..ReidParams::default()
        }
    }

    /// One id for one new track.
    fn assign_one(g: &mut Gallery, now: i64, track: NewTrack, active: &[Sighting]) -> Assigned {
        g.assign(now, &[track], active).unwrap()[0]
    }

    /// A person (truth index) on a camera over [start, end], seconds.
    struct Visit {
        person: usize,
        prototype: usize,
        camera: &'static str,
        start: f64,
        end: f64,
    }

    #[test]
    fn corridor_walk_keeps_true_identities_and_refuses_impossible_transits() {
        // A — B — C corridor; A→B takes 2–60 s, B→C 5–90 s; A and C are not
        // adjacent. Five people walk it, 25 s apart. Two more people look
        // exactly like person 0 and person 2 (same prototype): one appears on
        // C 3 s after person 0 left A (not adjacent), one on B 0.5 s after
        // person 2 left A (too fast); both stay long enough to be on camera
        // when their look-alike passes by.
        let mut rng = Rng(crate::rng::SplitMix64::new(7));
        let prototypes: Vec<Vec<f32>> = (0..5).map(|_| rng.unit(64)).collect();
        let mut visits = Vec::new();
        for person in 0..5 {
            let s = 25.0 * person as f64;
            for (camera, start, end) in [("A", 0.0, 8.0), ("B", 18.0, 26.0), ("C", 41.0, 49.0)] {
                visits.push(Visit {
                    person,
                    prototype: person,
                    camera,
                    start: s + start,
                    end: s + end,
                });
            }
        }
        visits.push(Visit {
            person: 5,
            prototype: 0,
            camera: "C",
            start: 11.0,
            end: 60.0,
        });
        visits.push(Visit {
            person: 6,
            prototype: 2,
            camera: "B",
            start: 58.5,
            end: 95.0,
        });
        let true_people = 7;
        let us = |secs: f64| (secs * 1e6).round() as i64;

        // The caller: tracks are confirmed 0.3 s after they start.
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
        enum Step {
            End(usize),
            Confirm(usize),
        }
        let mut events: Vec<(i64, Step)> = Vec::new();
        for (v, visit) in visits.iter().enumerate() {
            events.push((us(visit.start + 0.3), Step::Confirm(v)));
            events.push((us(visit.end), Step::End(v)));
        }
        events.sort();
        let mut gallery = Gallery::new(with_links(vec![
            link("A", "B", 2.0, 60.0),
            link("B", "C", 5.0, 90.0),
        ]));
        let mut ids: Vec<Option<u64>> = vec![None; visits.len()];
        let mut live: BTreeSet<usize> = BTreeSet::new();
        let mut merges = Vec::new();
        for (now, step) in events {
            let (Step::Confirm(v) | Step::End(v)) = step;
            live.remove(&v);
            let active: Vec<Sighting> = live
                .iter()
                .map(|&w| {
                    let other = &visits[w];
                    sighting(
                        ids[w].unwrap(),
                        other.camera,
                        rng.noisy(&prototypes[other.prototype], 0.05),
                        us(other.start),
                        now.min(us(other.end)),
                    )
                })
                .collect();
            let visit = &visits[v];
            let proto = &prototypes[visit.prototype];
            match step {
                Step::Confirm(_) => {
                    let track = new_track(visit.camera, rng.noisy(proto, 0.05), us(visit.start));
                    ids[v] = Some(assign_one(&mut gallery, now, track, &active).person_id);
                    live.insert(v);
                }
                Step::End(_) => {
                    let ended = sighting(
                        ids[v].unwrap(),
                        visit.camera,
                        rng.noisy(proto, 0.025),
                        us(visit.start),
                        us(visit.end),
                    );
                    merges.extend(gallery.track_ended(ended, &active));
                }
            }
        }

        assert!(merges.is_empty(), "{merges:?}");
        assert_eq!(gallery.stats().ids_minted, true_people);
        let mut id_of: BTreeMap<usize, BTreeSet<u64>> = BTreeMap::new();
        for (visit, id) in visits.iter().zip(&ids) {
            id_of.entry(visit.person).or_default().insert(id.unwrap());
        }
        let distinct: BTreeSet<u64> = id_of.values().flatten().copied().collect();
        assert_eq!(distinct.len(), true_people as usize, "{id_of:?}");
        assert!(id_of.values().all(|set| set.len() == 1), "{id_of:?}");

        let mut path: BTreeMap<u64, Vec<(f64, &str)>> = BTreeMap::new();
        for (visit, id) in visits.iter().zip(&ids) {
            path.entry(id.unwrap())
                .or_default()
                .push((visit.start, visit.camera));
        }
        let mut transitions = BTreeSet::new();
        for (id, mut steps) in path {
            steps.sort_by(|a, b| a.0.total_cmp(&b.0));
            for pair in steps.windows(2) {
                transitions.insert((id, pair[0].1, pair[1].1));
            }
        }
        let truth: BTreeSet<(u64, &str, &str)> = (0..5)
            .flat_map(|p| {
                let id = *id_of[&p].first().unwrap();
                [(id, "A", "B"), (id, "B", "C")]
            })
            .collect();
        assert_eq!(transitions, truth);
    }

    #[test]
    fn batch_assignment_is_optimal_where_greedy_is_not() {
        // Known ids X and Y. Track 0 is most like X (0.95) but also like Y
        // (0.90); track 1 is like X only (0.88; 0.30 to Y). Greedy gives X to
        // track 0 and a fresh id to track 1; the optimum re-uses both.
        let theta_x = 0.95f64.acos().to_degrees();
        let theta_y = -0.90f64.acos().to_degrees();
        let theta_r1 = theta_x + 0.88f64.acos().to_degrees();
        let mut g = Gallery::new(ReidParams::default());
        let known = g
            .assign(
                0,
                &[
                    new_track("a", at_angle(theta_x), 0),
                    new_track("a", at_angle(theta_y), 0),
                ],
                &[],
            )
            .unwrap();
        let (x, y) = (known[0].person_id, known[1].person_id);
        assert_ne!(x, y);
        assert!(
            g.track_ended(sighting(x, "a", at_angle(theta_x), 0, S), &[])
                .is_none()
        );
        assert!(
            g.track_ended(sighting(y, "a", at_angle(theta_y), 0, S), &[])
                .is_none()
        );

        let batch = [
            new_track("b", at_angle(0.0), 5 * S),
            new_track("b", at_angle(theta_r1), 5 * S),
        ];
        let got = g.assign(5 * S, &batch, &[]).unwrap();
        assert_eq!((got[0].person_id, got[1].person_id), (y, x));
        assert!(got.iter().all(|a| a.matched));
        assert!((got[0].similarity - 0.90).abs() < 1e-4);
        assert!((got[1].similarity - 0.88).abs() < 1e-4);
        assert!(g.is_empty(), "both identities are live again");
        assert_eq!(g.stats().ids_minted, 2);
    }

    #[test]
    fn active_people_gate_by_camera_and_topology() {
        // a and b overlap; b — c is a 5–60 s walk; a and c are not adjacent.
        let mut g = Gallery::new(with_links(vec![
            link("a", "b", 0.0, 10.0),
            link("b", "c", 5.0, 60.0),
        ]));
        let p = vec![1.0, 0.0];
        let on_a = [sighting(7, "a", p.clone(), 0, 100 * S)];
        let same = assign_one(&mut g, 100 * S, new_track("a", p.clone(), 99 * S), &on_a);
        assert!(
            !same.matched && same.person_id != 7,
            "never twice on one camera"
        );
        let overlap = assign_one(&mut g, 100 * S, new_track("b", p.clone(), 99 * S), &on_a);
        assert_eq!(overlap.person_id, 7, "overlapping views: the same person");

        // Seen on b 20 s ago, but on a now: a and c are not adjacent.
        g.track_ended(sighting(8, "b", p.clone(), 70 * S, 80 * S), &[]);
        let on_a = [sighting(8, "a", p.clone(), 95 * S, 100 * S)];
        let far = assign_one(&mut g, 100 * S, new_track("c", p.clone(), 100 * S), &on_a);
        assert!(!far.matched, "visibly elsewhere");
        // A track on b unseen for 10 s (coasting) may have walked to c.
        let mut g = Gallery::new(g.params().clone());
        let coasting = [sighting(9, "b", p.clone(), 80 * S, 90 * S)];
        let walked = assign_one(
            &mut g,
            100 * S,
            new_track("c", p.clone(), 100 * S),
            &coasting,
        );
        assert_eq!(walked.person_id, 9);
    }

    #[test]
    fn returning_to_the_same_camera_matches_within_the_ttl() {
        let mut g = Gallery::new(with_links(vec![link("a", "b", 2.0, 60.0)]));
        g.track_ended(sighting(3, "a", vec![0.0, 1.0], 0, 10 * S), &[]);
        let overlapping = assign_one(&mut g, 11 * S, new_track("a", vec![0.0, 1.0], 9 * S), &[]);
        assert!(
            !overlapping.matched,
            "overlapping tracks of one camera are two people"
        );
        let back = assign_one(
            &mut g,
            101 * S,
            new_track("a", vec![0.0, 1.0], 100 * S),
            &[],
        );
        assert_eq!(back.person_id, 3);
    }

    #[test]
    fn entries_expire_after_the_ttl() {
        let params = ReidParams {
            ttl_s: 10.0,
            ..ReidParams::default()
        };
        let mut fresh = Gallery::new(params.clone());
        fresh.track_ended(sighting(5, "a", vec![1.0, 0.0], 0, 0), &[]);
        assert_eq!(
            assign_one(
                &mut fresh,
                10 * S,
                new_track("b", vec![1.0, 0.0], 10 * S),
                &[]
            )
            .person_id,
            5
        );

        let mut stale = Gallery::new(params);
        stale.track_ended(sighting(5, "a", vec![1.0, 0.0], 0, 0), &[]);
        let late = assign_one(
            &mut stale,
            10 * S + 1,
            new_track("b", vec![1.0, 0.0], 10 * S + 1),
            &[],
        );
        assert!(!late.matched && late.person_id != 5);
        assert!(stale.is_empty());
        assert_eq!(stale.stats().expired, 1);
        assert_eq!(stale.stats().people, 0, "the record expired too");
    }

    #[test]
    fn gallery_size_is_capped_oldest_first() {
        let mut g = Gallery::new(ReidParams {
            max_entries: 3,
            id_offset: 100,
            ..ReidParams::default()
        });
        let basis =
            |i: usize| -> Vec<f32> { (0..5).map(|j| if i == j { 1.0 } else { 0.0 }).collect() };
        for i in 0..5 {
            g.track_ended(sighting(i as u64 + 1, "a", basis(i), 0, i as i64 * S), &[]);
        }
        assert_eq!(g.len(), 3);
        assert_eq!(g.stats().evicted, 2);
        assert!(g.stats().people <= 3);
        let evicted = assign_one(&mut g, 10 * S, new_track("b", basis(0), 10 * S), &[]);
        assert_eq!((evicted.matched, evicted.person_id), (false, 100));
        let kept = assign_one(&mut g, 10 * S, new_track("b", basis(4), 10 * S), &[]);
        assert_eq!(kept.person_id, 5);
    }

    #[test]
    fn only_linked_cameras_entries_are_scored() {
        // 100 cameras in a chain, 100 entries each: a new track scores its
        // own camera's and its two neighbours' entries, not all 10 000.
        let links: Vec<Link> = (0..99)
            .map(|i| link(&format!("c{i}"), &format!("c{}", i + 1), 1.0, 30.0))
            .collect();
        let mut g = Gallery::new(with_links(links));
        let mut rng = Rng(crate::rng::SplitMix64::new(3));
        for i in 0..10_000u64 {
            let camera = format!("c{}", i % 100);
            g.track_ended(
                sighting(i + 1, &camera, rng.unit(16), 0, (i % 10) as i64 * S),
                &[],
            );
        }
        assert_eq!(g.len(), 10_000);
        let before = g.stats().comparisons;
        assign_one(&mut g, 20 * S, new_track("c50", rng.unit(16), 20 * S), &[]);
        let scored = g.stats().comparisons - before;
        assert_eq!(scored, 300);

        let mut permissive = Gallery::new(ReidParams::default());
        for i in 0..1_000u64 {
            permissive.track_ended(
                sighting(i + 1, &format!("c{}", i % 10), rng.unit(16), 0, S),
                &[],
            );
        }
        permissive
            .assign(2 * S, &[new_track("c0", rng.unit(16), 2 * S)], &[])
            .unwrap();
        assert_eq!(permissive.stats().comparisons, 1_000);
    }

    #[test]
    fn allocator_uses_offset_and_stride_and_stops_at_the_end() {
        let mut a = IdAllocator::new(3, 10);
        assert_eq!(
            [a.mint(), a.mint(), a.mint()],
            [Some(3), Some(13), Some(23)]
        );
        assert_eq!(a.last(), Some(23));

        let mut end = IdAllocator::new(u64::MAX - 5, 4);
        assert!(end.can_mint(2) && !end.can_mint(3));
        assert_eq!(end.mint(), Some(u64::MAX - 5));
        assert_eq!(end.mint(), Some(u64::MAX - 1));
        assert!(end.can_mint(0) && !end.can_mint(1));
        assert_eq!(end.mint(), None);
        assert_eq!(end.mint(), None, "stays exhausted, never wraps");

        assert_eq!(IdAllocator::resume(1, 1, Some(41)).mint(), Some(42));
        assert_eq!(IdAllocator::resume(5, 10, Some(41)).mint(), Some(45));
        assert_eq!(IdAllocator::resume(50, 10, Some(41)).mint(), Some(50));
        assert_eq!(IdAllocator::resume(1, 2, Some(u64::MAX)).mint(), None);
        assert_eq!(
            IdAllocator::new(7, 0).mint(),
            Some(7),
            "stride 0 taken as 1"
        );
    }

    #[test]
    fn exhausted_id_space_is_an_error_and_assigns_nothing() {
        let mut g = Gallery::new(ReidParams {
            id_offset: u64::MAX - 1,
            ..ReidParams::default()
        });
        let track = |x: f32| new_track("a", vec![x, 1.0], 0);
        let two = g.assign(0, &[track(0.0), track(5.0)], &[]).unwrap();
        assert_eq!(
            [two[0].person_id, two[1].person_id],
            [u64::MAX - 1, u64::MAX]
        );
        let err = g.assign(0, &[track(-5.0)], &[]).unwrap_err();
        assert_eq!(err.offset, u64::MAX - 1);
        assert!(err.to_string().contains("exhausted"));

        let mut g = Gallery::new(ReidParams {
            id_offset: u64::MAX,
            ..ReidParams::default()
        });
        g.track_ended(sighting(9, "a", vec![1.0, 0.0], 0, 0), &[]);
        let batch = [track(0.0), track(5.0), new_track("b", vec![1.0, 0.0], S)];
        assert!(
            g.assign(S, &batch, &[]).is_err(),
            "two fresh ids needed, one left"
        );
        assert_eq!(g.len(), 1, "nothing consumed");
        let one = g.assign(S, &[track(0.0)], &[]).unwrap();
        assert_eq!(
            one[0].person_id,
            u64::MAX,
            "nothing minted by the failed batch"
        );
    }

    #[test]
    fn strided_galleries_never_collide() {
        let ids = |offset: u64| -> Vec<u64> {
            let mut g = Gallery::new(ReidParams {
                id_offset: offset,
                id_stride: 3,
                ..ReidParams::default()
            });
            let batch: Vec<NewTrack> = (0..4)
                .map(|i| new_track("a", at_angle(90.0 * i as f64), 0))
                .collect();
            g.assign(0, &batch, &[])
                .unwrap()
                .iter()
                .map(|a| a.person_id)
                .collect()
        };
        assert_eq!(ids(1), [1, 4, 7, 10]);
        assert_eq!(ids(2), [2, 5, 8, 11]);
    }

    #[test]
    fn merge_folds_the_newer_id_into_the_older() {
        let mut g = Gallery::new(with_links(vec![link("A", "B", 2.0, 60.0)]));
        let p = at_angle(0.0);
        let first = assign_one(&mut g, 0, new_track("A", p.clone(), 0), &[]).person_id;
        assert!(
            g.track_ended(sighting(first, "A", p.clone(), 0, 10 * S), &[])
                .is_none()
        );
        // Occluded at confirmation: the track on B looked like someone else.
        let second = assign_one(&mut g, 16 * S, new_track("B", at_angle(60.0), 15 * S), &[]);
        assert!(!second.matched);
        // Its whole-life mean shows who it was.
        let merge = g.track_ended(
            sighting(second.person_id, "B", at_angle(5.0), 15 * S, 30 * S),
            &[],
        );
        assert_eq!(
            merge.map(|m| (m.from, m.into, m.ts_us)),
            Some((second.person_id, first, 30 * S))
        );
        assert_eq!(g.stats().merges, 1);
        assert_eq!(g.len(), 2);
        assert!(
            g.state().entries.values().all(|e| e.person_id == first),
            "relabelled"
        );
        let back = assign_one(&mut g, 41 * S, new_track("A", p, 40 * S), &[]);
        assert_eq!(back.person_id, first);
    }

    #[test]
    fn merges_are_refused_when_the_ids_could_not_be_one_person() {
        let p = at_angle(0.0);
        // Below merge_threshold (0.9) though above the match threshold.
        let mut g = Gallery::new(ReidParams::default());
        g.track_ended(sighting(1, "A", p.clone(), 0, 10 * S), &[]);
        assert!(
            g.track_ended(sighting(2, "B", at_angle(30.0), 15 * S, 30 * S), &[])
                .is_none()
        );

        // Simultaneously on one camera (the twin got a fresh id because the
        // first was active there).
        let mut g = Gallery::new(ReidParams::default());
        g.track_ended(sighting(1, "A", p.clone(), 0, 10 * S), &[]);
        assert!(
            g.track_ended(sighting(2, "A", p.clone(), 5 * S, 15 * S), &[])
                .is_none()
        );

        // Simultaneously on cameras whose views do not overlap…
        let mut g = Gallery::new(with_links(vec![link("A", "B", 2.0, 60.0)]));
        g.track_ended(sighting(1, "A", p.clone(), 0, 10 * S), &[]);
        assert!(
            g.track_ended(sighting(2, "B", p.clone(), 5 * S, 12 * S), &[])
                .is_none()
        );
        // …but on overlapping views that is one person seen twice.
        let mut g = Gallery::new(with_links(vec![link("A", "B", 0.0, 60.0)]));
        g.track_ended(sighting(1, "A", p.clone(), 0, 10 * S), &[]);
        let merge = g.track_ended(sighting(2, "B", p.clone(), 5 * S, 12 * S), &[]);
        assert_eq!(merge.map(|m| (m.from, m.into)), Some((2, 1)));

        // The gallery entry alone is consistent (A and B overlap), but the
        // record shows both ids on A at the same time.
        let mut g = Gallery::new(with_links(vec![link("A", "B", 0.0, 60.0)]));
        let id1 = assign_one(&mut g, 0, new_track("A", p.clone(), 0), &[]).person_id;
        let on_a = [sighting(id1, "A", p.clone(), 0, 5 * S)];
        let id2 = assign_one(&mut g, 5 * S, new_track("A", at_angle(20.0), 5 * S), &on_a).person_id;
        assert_ne!(id1, id2);
        let id2_on_a = [sighting(id2, "A", at_angle(20.0), 5 * S, 10 * S)];
        g.track_ended(sighting(id1, "A", p.clone(), 0, 10 * S), &id2_on_a);
        let id2_on_a = [sighting(id2, "A", at_angle(20.0), 5 * S, 20 * S)];
        let again = assign_one(
            &mut g,
            20 * S,
            new_track("B", at_angle(-5.0), 20 * S),
            &id2_on_a,
        );
        assert_eq!(again.person_id, id1, "closer to id1 than to id2");
        let id2_on_a = [sighting(id2, "A", at_angle(20.0), 5 * S, 30 * S)];
        assert!(
            g.track_ended(sighting(id1, "B", p.clone(), 20 * S, 30 * S), &id2_on_a)
                .is_none()
        );
        assert!(
            g.track_ended(sighting(id2, "A", at_angle(10.0), 5 * S, 40 * S), &[])
                .is_none()
        );
        assert_eq!(g.stats().merges, 0);

        // Teleporting: on A, then on B 1 s later where the walk takes ≥ 2 s.
        let mut g = Gallery::new(with_links(vec![link("A", "B", 2.0, 60.0)]));
        g.track_ended(sighting(1, "A", p.clone(), 0, 10 * S), &[]);
        assert!(
            g.track_ended(sighting(2, "B", p.clone(), 11 * S, 20 * S), &[])
                .is_none()
        );

        // merge_threshold above 1 disables merging.
        let mut g = Gallery::new(ReidParams {
            merge_threshold: 1.5,
            ..ReidParams::default()
        });
        g.track_ended(sighting(1, "A", p.clone(), 0, 10 * S), &[]);
        assert!(
            g.track_ended(sighting(2, "B", p, 15 * S, 20 * S), &[])
                .is_none()
        );
    }

    #[test]
    fn checkpoint_round_trips_and_restore_never_remints() {
        let params = with_links(vec![link("A", "B", 2.0, 60.0)]);
        let mut g = Gallery::new(params.clone());
        let mut rng = Rng(crate::rng::SplitMix64::new(11));
        let people: Vec<Vec<f32>> = (0..4).map(|_| rng.unit(32)).collect();
        let batch: Vec<NewTrack> = people
            .iter()
            .map(|p| new_track("A", p.clone(), 0))
            .collect();
        let ids: Vec<u64> = g
            .assign(0, &batch, &[])
            .unwrap()
            .iter()
            .map(|a| a.person_id)
            .collect();
        for (id, p) in ids.iter().zip(&people).take(3) {
            g.track_ended(sighting(*id, "A", p.clone(), 0, 5 * S), &[]);
        }
        let json = serde_json::to_string(g.state()).unwrap();
        let state: GalleryState = serde_json::from_str(&json).unwrap();
        assert_eq!(&state, g.state());
        let mut restored = Gallery::restore(params.clone(), state);
        assert_eq!(restored.stats(), g.stats());

        let next = [
            new_track("B", people[1].clone(), 10 * S),
            new_track("B", rng.unit(32), 10 * S),
        ];
        let original = g.assign(10 * S, &next, &[]).unwrap();
        let after_restore = restored.assign(10 * S, &next, &[]).unwrap();
        assert_eq!(original, after_restore);
        assert_eq!(after_restore[0].person_id, ids[1]);
        assert_eq!(after_restore[1].person_id, 5);
        assert_eq!(restored.state(), g.state());

        // A new partition continues above every id handed out before.
        let moved = ReidParams {
            id_offset: 2,
            id_stride: 4,
            ..params
        };
        let state: GalleryState =
            serde_json::from_str(&serde_json::to_string(g.state()).unwrap()).unwrap();
        let mut repartitioned = Gallery::restore(moved, state);
        let fresh = repartitioned
            .assign(20 * S, &[new_track("B", rng.unit(32), 20 * S)], &[])
            .unwrap();
        assert_eq!(fresh[0].person_id, 6);
    }

    #[test]
    fn bad_embeddings_never_match_and_never_panic() {
        let mut g = Gallery::new(ReidParams::default());
        g.track_ended(sighting(1, "a", vec![1.0, 0.0], 0, S), &[]);
        g.track_ended(sighting(2, "a", vec![f32::NAN, 1.0], 0, S), &[]);
        g.track_ended(sighting(3, "a", vec![], 0, S), &[]);
        g.track_ended(sighting(4, "a", vec![0.0, 0.0], 0, S), &[]);
        assert_eq!(g.len(), 1, "unusable appearances are not kept");
        let active = [sighting(5, "b", vec![f32::INFINITY, 0.0], 0, 2 * S)];
        let batch = [
            new_track("c", vec![], 2 * S),
            new_track("c", vec![f32::NAN, 0.0], 2 * S),
            new_track("c", vec![1.0, 0.0, 0.0], 2 * S),
            new_track("c", vec![f32::MAX, f32::MAX], 2 * S),
        ];
        let got = g.assign(2 * S, &batch, &active).unwrap();
        assert!(got.iter().all(|a| !a.matched), "{got:?}");
        let distinct: BTreeSet<u64> = got.iter().map(|a| a.person_id).collect();
        assert_eq!(distinct.len(), 4);
        assert!(g.assign(2 * S, &[], &active).unwrap().is_empty());
    }

    #[test]
    fn params_validate_and_deserialize() {
        assert!(ReidParams::default().validate().is_empty());
        let bad = ReidParams {
            threshold: 1.5,
            merge_threshold: f32::NAN,
            ttl_s: -1.0,
            max_entries: 0,
            id_offset: 0,
            id_stride: 0,
            links: vec![link("a", "a", 0.0, 1.0)],
        };
        let problems = bad.validate();
        assert_eq!(problems.len(), 7, "{problems:#?}");
        let low_merge = ReidParams {
            merge_threshold: 0.7,
            ..ReidParams::default()
        };
        assert_eq!(low_merge.validate().len(), 1);

        let parsed: ReidParams = serde_json::from_str(
            r#"{"threshold": 0.85, "links": [{"from": "a", "to": "b", "min_transit_s": 2.0, "max_transit_s": 60.0}]}"#,
        )
        .unwrap();
        assert_eq!(parsed.threshold, 0.85);
        assert_eq!(parsed.ttl_s, 120.0);
        assert_eq!(parsed.links, [link("a", "b", 2.0, 60.0)]);
        assert!(serde_json::from_str::<ReidParams>(r#"{"treshold": 0.9}"#).is_err());
    }
}
