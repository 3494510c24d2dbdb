//! A walk's tree cut into ranges of its root's subdirectories, claimed in
//! turn by the listings side by side and sized from what the listings find.

/// About how many keys a range of a walk holds, once a count of keys a
/// subdirectory is known: each range costs a LIST or so more than one
/// listing would, and the ranges side by side stay within the bound of
/// entries ahead of the walker.
const SEGMENT_KEYS: usize = 10_000;

/// Where one of a walk's flat listings stands.
pub(super) enum WalkProgress {
    /// Every directory whose prefix sorts at or before this key (and does
    /// not contain it) has been kept.
    ListedThrough(String),
    Done,
}

/// A walk's tree, cut into ranges of the root's subdirectories that are
/// listed side by side: a flat listing is one request after another (each
/// page needs the token of the one before), so a single one waits for
/// every round trip in turn, while listings of disjoint ranges do not wait
/// for each other.
///
/// The ranges are claimed one after another, in key order, as listings
/// become free, each sized from the count of keys a subdirectory holds
/// found so far (see `claim`). Cut once into as many ranges as listings, a
/// large tree had every range but the walker's waiting on the bound of
/// entries ahead, and was listed one page at a time again.
///
/// Segment `i` holds the keys after the end of segment `i - 1` (the first:
/// from the root's first key) through its own end (none: the root's last
/// key). An end is a subdirectory's key without its final `/`, so no
/// directory under the root is cut in two: the keys under `d/` all sort
/// after `d` and before any end that is not under `d/`, and no end is.
pub(super) struct Segments {
    /// The root's subdirectories in key order, without their final `/`:
    /// where ranges may end.
    cuts: Vec<String>,
    claimed: Vec<Segment>,
    /// How many of `cuts` the claimed segments cover.
    next_cut: usize,
    /// Listings side by side; one lists the whole root in one range.
    listings: usize,
    density: Density,
    /// Whether any listing has found a key under the root yet.
    found_keys: bool,
}

/// How many keys a subdirectory of a walk's root holds, as its pages tell.
#[derive(Default)]
struct Density {
    keys: usize,
    /// Subdirectories the pages reached, the one a listing is inside of
    /// counted whole.
    subdirectories: usize,
    pages: usize,
    /// Whether a listing went on from a subdirectory into the next: until
    /// then the count is a floor.
    crossed: bool,
}

/// Pages a walk's listings may spend inside their first subdirectories
/// before ranges are sized from the floor: a tree of a few huge
/// subdirectories is still listed side by side.
const PAGES_BEFORE_A_FLOOR_WILL_DO: usize = 3;

/// Ranges per listing a small tree is cut into at least. In four ranges
/// (one per listing) a walk of 10,000 keys ended with the walker going
/// through three quarters of the tree after their listings ended together:
/// `find` took 0.47 to 0.51 s, 0.35 to 0.40 s in sixteen (bench/walk.sh,
/// 5 rounds each, alternating, 2026-12-05), for four LISTs more.
const RANGES_PER_LISTING_AT_LEAST: usize = 4;

/// Keys a range's last page asks for beyond the count's estimate.
const PAGE_KEYS_SPARE: usize = 16;

impl Density {
    /// Keys a subdirectory, once the pages tell.
    fn per_subdirectory(&self) -> Option<usize> {
        if !self.crossed && self.pages < PAGES_BEFORE_A_FLOOR_WILL_DO {
            return None;
        }
        self.keys.checked_div(self.subdirectories)
    }
}

struct Segment {
    /// The first of `cuts` this segment's subdirectories begin at.
    first_cut: usize,
    /// How many of `cuts` sort before the last key its listing saw.
    reached: usize,
    /// The first of `cuts` after its subdirectories, whose key is its end
    /// (`cuts.len()`: none, the root's last key).
    end_cut: usize,
    /// Keys its last page asked for if fewer than a page (else `MAX`), and
    /// whether such a page came back full: then the count is wrong for this range,
    /// which asks for whole pages from then on.
    asked: usize,
    fell_short: bool,
    progress: WalkProgress,
}

impl Segments {
    /// `subdirectories`: keys ending in `/`, in any order.
    pub(super) fn new(mut subdirectories: Vec<String>, listings: usize) -> Segments {
        subdirectories.sort_unstable();
        subdirectories.dedup();
        let cuts = subdirectories
            .into_iter()
            .map(|key| key.strip_suffix('/').map(str::to_owned).unwrap_or(key))
            .collect();
        Segments {
            cuts,
            claimed: Vec::new(),
            next_cut: 0,
            listings: listings.max(1),
            density: Density::default(),
            found_keys: false,
        }
    }

    /// Whether the tree can be cut into ranges at all.
    pub(super) fn can_cut(&self) -> bool {
        self.listings > 1 && self.cuts.len() > 1
    }

    /// Whether every range has been claimed.
    fn all_claimed(&self) -> bool {
        self.claimed
            .last()
            .is_some_and(|segment| segment.end_cut == self.cuts.len())
    }

    /// The segment the next `claim` will make, if any is left.
    pub(super) fn next_to_claim(&self) -> Option<usize> {
        (!self.all_claimed()).then_some(self.claimed.len())
    }

    /// Whether the next claim can be sized: the first range is an even
    /// share of the subdirectories, cut down once its first page tells how
    /// many keys they hold (see `page_seen`), and the rest wait for that
    /// page, or for the first range to end without one.
    pub(super) fn may_claim(&self) -> bool {
        match self.claimed.first() {
            None => true,
            Some(first) => {
                self.density.per_subdirectory().is_some()
                    || matches!(first.progress, WalkProgress::Done)
            }
        }
    }

    /// How many subdirectories a range takes: about `SEGMENT_KEYS` keys'
    /// worth, and at most as many as make `RANGES_PER_LISTING_AT_LEAST`
    /// ranges per listing (so that a small tree is still listed side by
    /// side, in ranges the walker finds done in turn); a share per listing
    /// while nobody knows how many keys they hold.
    fn subdirectories_per_range(&self) -> usize {
        match self.density.per_subdirectory() {
            Some(per_subdirectory) => SEGMENT_KEYS.div_ceil(per_subdirectory.max(1)).clamp(
                1,
                self.cuts
                    .len()
                    .div_ceil(self.listings * RANGES_PER_LISTING_AT_LEAST),
            ),
            None => self.cuts.len().div_ceil(self.listings),
        }
    }

    /// Claims the next range (the whole root if it cannot be cut): its
    /// segment, and whether it is the whole root.
    pub(super) fn claim(&mut self) -> Option<(usize, bool)> {
        let segment = self.next_to_claim()?;
        let remaining = self.cuts.len() - self.next_cut;
        let take = if self.can_cut() {
            let take = self.subdirectories_per_range();
            // No sliver of a last range, worth a page of its own.
            if remaining.saturating_sub(take) * 2 < take {
                remaining
            } else {
                take
            }
        } else {
            remaining
        };
        let first_cut = self.next_cut;
        self.next_cut += take.min(remaining);
        self.claimed.push(Segment {
            first_cut,
            reached: first_cut,
            end_cut: self.next_cut,
            asked: usize::MAX,
            fell_short: false,
            progress: WalkProgress::ListedThrough(String::new()),
        });
        Some((segment, self.all_claimed() && segment == 0))
    }

    /// Where segment `segment` begins and ends: the key its listing starts
    /// after (none: the root's first key) and the last key it may hold.
    pub(super) fn range(&self, segment: usize) -> (Option<&str>, Option<&str>) {
        let start = segment
            .checked_sub(1)
            .and_then(|before| self.claimed.get(before))
            .and_then(|before| self.end_of(before));
        let end = self
            .claimed
            .get(segment)
            .and_then(|segment| self.end_of(segment));
        (start, end)
    }

    /// The last key `segment` may hold: the key of the first subdirectory
    /// after its own (none: the root's last key).
    fn end_of(&self, segment: &Segment) -> Option<&str> {
        self.cuts.get(segment.end_cut).map(String::as_str)
    }

    /// The segment holding the directory `prefix`, a directory strictly
    /// under the root: `claimed.len()` when no claimed segment holds it yet.
    pub(super) fn holding(&self, prefix: &str) -> usize {
        self.claimed
            .partition_point(|segment| self.end_of(segment).is_some_and(|end| end < prefix))
    }

    /// A page of `segment`'s listing came, ending at `last` (before its
    /// keys past the range's end were dropped), for sizing ranges: the
    /// latest range claimed, if larger than that says, ends earlier (never
    /// before this page's subdirectories), leaving the rest to be claimed
    /// by listings side by side. Returns where the segment ends now, `None`
    /// for a segment not claimed.
    pub(super) fn page_seen(
        &mut self,
        segment: usize,
        last: &str,
        keys: usize,
    ) -> Option<Option<String>> {
        let reached = self.cuts.partition_point(|cut| cut.as_str() < last);
        let is_latest = segment + 1 == self.claimed.len();
        let listed = self.claimed.get_mut(segment)?;
        self.density.pages += 1;
        self.density.keys += keys;
        self.density.subdirectories += reached.saturating_sub(listed.reached);
        listed.reached = listed.reached.max(reached);
        listed.fell_short |= keys >= listed.asked;
        self.density.crossed |= listed.reached >= listed.first_cut + 2;
        if is_latest {
            self.fit_latest(reached);
        }
        Some(self.end_of(&self.claimed[segment]).map(str::to_owned))
    }

    /// The whole listing of one of the root's subdirectories showed
    /// `entries` entries: a count of its keys as good as a page's (a floor,
    /// when it has subdirectories of its own).
    pub(super) fn subdirectory_listed(&mut self, entries: usize) {
        self.density.keys += entries;
        self.density.subdirectories += 1;
        self.density.crossed = true;
        let reached = self.claimed.last().map_or(0, |latest| latest.reached);
        self.fit_latest(reached);
    }

    /// Ends the latest range claimed earlier if it is larger than the
    /// count of keys a subdirectory says, but not before `reached`.
    fn fit_latest(&mut self, reached: usize) {
        if !self.can_cut() || self.density.per_subdirectory().is_none() {
            return;
        }
        let take = self.subdirectories_per_range();
        let next_cut = self.next_cut;
        let is_first = self.claimed.len() == 1;
        let Some(latest) = self.claimed.last_mut() else {
            return;
        };
        // A first range claimed whole is kept whole: its listing keeps the
        // root's own entries.
        if latest.end_cut == self.cuts.len() && is_first {
            return;
        }
        let shorter = (latest.first_cut + take).max(reached);
        if shorter + take / 2 < next_cut {
            self.next_cut = shorter;
            latest.end_cut = shorter;
        }
    }

    /// How many keys the next page of `segment` should ask for: `page`,
    /// unless the count of keys a subdirectory says fewer are left in its
    /// range (keys past a range's end are listed for nothing).
    pub(super) fn page_keys(&mut self, segment: usize, page: u32) -> u32 {
        let full = usize::try_from(page).unwrap_or(usize::MAX);
        let per_subdirectory = self.density.per_subdirectory();
        let Some(listed) = self.claimed.get_mut(segment) else {
            return page;
        };
        let asked = match per_subdirectory {
            Some(per_subdirectory) if !listed.fell_short => {
                // The subdirectory a page ended inside of may hold up to a
                // whole count more: half of one is expected; an eighth
                // more for the count's errors, and a few keys for files
                // beside the subdirectories.
                let whole_left = listed.end_cut.saturating_sub(listed.reached);
                let partly_left = usize::from(listed.reached > listed.first_cut);
                let expected = whole_left * per_subdirectory + partly_left * per_subdirectory / 2;
                (expected + expected / 8 + PAGE_KEYS_SPARE).min(full)
            }
            _ => full,
        };
        // A page of fewer keys than asked is the range's last, or ran out
        // of keys: only a short page that came back full says the count
        // was wrong.
        listed.asked = if asked < full { asked } else { usize::MAX };
        u32::try_from(asked).unwrap_or(page)
    }

    pub(super) fn listed_through(&mut self, segment: usize, key: &str) {
        self.found_keys |= !key.is_empty();
        if let Some(segment) = self.claimed.get_mut(segment) {
            segment.progress = WalkProgress::ListedThrough(key.to_owned());
        }
    }

    pub(super) fn finished(&mut self, segment: usize) {
        if let Some(segment) = self.claimed.get_mut(segment) {
            segment.progress = WalkProgress::Done;
        }
    }

    pub(super) fn have_found_keys(&self) -> bool {
        self.found_keys
    }

    pub(super) fn are_done(&self) -> bool {
        self.all_claimed()
            && self
                .claimed
                .iter()
                .all(|segment| matches!(segment.progress, WalkProgress::Done))
    }

    /// The first segment still listing or still to be claimed: the one the
    /// walker will wait for next.
    pub(super) fn earliest_unfinished(&self) -> Option<usize> {
        self.claimed
            .iter()
            .position(|segment| !matches!(segment.progress, WalkProgress::Done))
            .or_else(|| self.next_to_claim())
    }

    pub(super) fn has_passed(&self, prefix: &str) -> bool {
        match self.claimed.get(self.holding(prefix)) {
            None => false,
            Some(Segment {
                progress: WalkProgress::Done,
                ..
            }) => true,
            Some(Segment {
                progress: WalkProgress::ListedThrough(key),
                ..
            }) => key.as_str() > prefix && !key.starts_with(prefix),
        }
    }
}

/// Two ranges over `r/a/` to `r/d/`: a and b, then c and d (claimed before
/// any count, a share per listing each).
#[cfg(test)]
pub(super) fn halves() -> Segments {
    let subdirectories = ["a", "b", "c", "d"].map(|name| format!("r/{name}/"));
    let mut segments = Segments::new(subdirectories.to_vec(), 2);
    segments.claim();
    segments.claim();
    assert_eq!(segments.range(0), (None, Some("r/c")));
    assert_eq!(segments.range(1), (Some("r/c"), None));
    segments
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| format!("r/{name}/")).collect()
    }

    fn numbered(count: usize) -> Vec<String> {
        (0..count).rev().map(|at| format!("r/d{at:03}/")).collect()
    }

    /// Tells `segments` that a subdirectory holds `keys` keys, by a page of
    /// `segment` through its first subdirectory into the second.
    fn seen_per_subdirectory(segments: &mut Segments, segment: usize, keys: usize) {
        let second = &segments.cuts[segments.claimed[segment].first_cut + 1];
        let key = format!("{second}/x");
        segments.page_seen(segment, &key, 2 * keys);
    }

    #[test]
    fn the_first_range_is_an_even_share_cut_down_by_its_first_pages() {
        let mut segments = Segments::new(numbered(200), 4);
        assert_eq!(segments.claim(), Some((0, false)));
        assert_eq!(segments.range(0), (None, Some("r/d050")));
        assert!(!segments.may_claim(), "the rest wait for a page");
        // A page inside the first subdirectory tells only a floor.
        let end = segments.page_seen(0, "r/d000/z", 1000);
        assert_eq!(end.flatten().as_deref(), Some("r/d050"));
        assert!(!segments.may_claim(), "the rest wait for a better count");
        // The next page goes on into the second: 1,000 keys a
        // subdirectory, so ten make a range.
        let end = segments.page_seen(0, "r/d001/z", 1000);
        assert_eq!(end.flatten().as_deref(), Some("r/d010"));
        assert_eq!(segments.range(0), (None, Some("r/d010")));
        assert!(segments.may_claim());
        assert_eq!(segments.claim(), Some((1, false)));
        assert_eq!(segments.range(1), (Some("r/d010"), Some("r/d020")));
        // Only the latest range claimed is cut down.
        let end = segments.page_seen(0, "r/d002/z", 100_000);
        assert_eq!(end.flatten().as_deref(), Some("r/d010"));
    }

    #[test]
    fn the_first_descents_directory_counts_before_any_page() {
        let mut segments = Segments::new(numbered(200), 4);
        segments.claim();
        segments.subdirectory_listed(2000);
        assert!(segments.may_claim());
        assert_eq!(segments.range(0), (None, Some("r/d005")));
    }

    #[test]
    fn a_range_is_never_cut_before_the_subdirectories_its_page_holds() {
        let mut segments = Segments::new(numbered(100), 4);
        segments.claim();
        // 100,000 keys a subdirectory, but the page reached the fourth.
        let end = segments.page_seen(0, "r/d003/z", 400_000);
        assert_eq!(end.flatten().as_deref(), Some("r/d004"));
    }

    #[test]
    fn a_tree_of_huge_subdirectories_is_sized_from_the_floor_after_a_few_pages() {
        let mut segments = Segments::new(numbered(100), 4);
        segments.claim();
        for page in 1..PAGES_BEFORE_A_FLOOR_WILL_DO {
            segments.page_seen(0, &format!("r/d000/f{page}"), 1000);
            assert!(!segments.may_claim());
        }
        let end = segments.page_seen(0, "r/d000/z", 1000);
        assert!(segments.may_claim());
        // 3,000 keys or more a subdirectory: four make a range.
        assert_eq!(end.flatten().as_deref(), Some("r/d004"));
    }

    #[test]
    fn a_small_tree_is_still_cut_into_a_few_ranges_per_listing() {
        let mut segments = Segments::new(numbered(100), 4);
        segments.claim();
        // Ten keys a subdirectory: a range would take 1,000 of them. The
        // first page covered the first range whole.
        let end = segments.page_seen(0, "r/d099/z", 1000);
        assert_eq!(end.flatten().as_deref(), Some("r/d025"));
        assert_eq!(segments.claim(), Some((1, false)));
        assert_eq!(segments.range(1), (Some("r/d025"), Some("r/d032")));
    }

    #[test]
    fn ranges_are_claimed_until_the_root_is_covered_without_a_sliver() {
        let mut segments = Segments::new(numbered(102), 4);
        segments.claim();
        seen_per_subdirectory(&mut segments, 0, SEGMENT_KEYS / 5);
        assert_eq!(segments.range(0), (None, Some("r/d005")));
        let mut claimed = 1;
        while let Some((segment, whole_root)) = segments.claim() {
            assert!(!whole_root);
            claimed = segment + 1;
        }
        // Seven left, a range of five: no range of two after it.
        assert_eq!(claimed, 20);
        assert_eq!(segments.range(19), (Some("r/d095"), None));
        assert_eq!(segments.next_to_claim(), None);
    }

    /// The last page of a range asks for the keys its count says are left,
    /// and an eighth more; whole pages again once such a page came full.
    #[test]
    fn a_ranges_last_page_asks_for_what_is_left() {
        let mut segments = Segments::new(numbered(200), 4);
        segments.claim();
        segments.subdirectory_listed(100);
        // Thirteen subdirectories of 100 keys: a whole page first.
        assert_eq!(segments.range(0), (None, Some("r/d013")));
        assert_eq!(segments.page_keys(0, 1000), 1000);
        segments.page_seen(0, "r/d009/z", 1000);
        // Three whole subdirectories and half of one left: 350 keys.
        let asked = segments.page_keys(0, 1000);
        assert_eq!(asked, 350 + 350 / 8 + 16);
        segments.page_seen(0, "r/d012/z", usize::try_from(asked).unwrap());
        assert_eq!(segments.page_keys(0, 1000), 1000, "the count was wrong");
    }

    #[test]
    fn a_root_that_cannot_be_cut_is_one_range() {
        for (subdirectories, listings) in [(Vec::new(), 4), (keys(&["only"]), 4), (numbered(10), 1)]
        {
            let mut segments = Segments::new(subdirectories, listings);
            assert!(!segments.can_cut());
            assert_eq!(segments.claim(), Some((0, true)));
            assert_eq!(segments.range(0), (None, None));
            assert_eq!(segments.page_seen(0, "r/z", 1), Some(None));
            assert_eq!(segments.claim(), None);
        }
        let mut two = Segments::new(keys(&["a", "b"]), 4);
        assert!(two.can_cut());
        assert_eq!(two.claim(), Some((0, false)));
        assert_eq!(two.range(0), (None, Some("r/b")));
    }

    /// Every key under a subdirectory falls in the range holding that
    /// subdirectory, also beside names that sort between a directory's key
    /// and its keys ("d-x" and "d.x" sort before "d/").
    #[test]
    fn no_range_cuts_a_directory() {
        let names = ["d", "d-x", "d.x", "d0", "e", "e-", "f", "g", "h"];
        let mut segments = Segments::new(keys(&names), 4);
        segments.claim();
        seen_per_subdirectory(&mut segments, 0, SEGMENT_KEYS / 2);
        while segments.claim().is_some() {}
        assert!(segments.claimed.len() >= 3, "{}", segments.claimed.len());
        for name in names {
            let directory = format!("r/{name}/");
            let segment = segments.holding(&directory);
            let (start, end) = segments.range(segment);
            for key in [
                directory.clone(),
                format!("{directory}!"),
                format!("{directory}z/zz"),
            ] {
                assert!(start.is_none_or(|start| key.as_str() > start), "{key}");
                assert!(end.is_none_or(|end| key.as_str() <= end), "{key}");
            }
        }
    }

    #[test]
    fn a_directory_is_passed_when_its_own_range_has_passed_it() {
        let mut segments = halves();
        assert!(!segments.has_passed("r/a/"));
        segments.listed_through(0, "r/b/x");
        assert!(segments.has_passed("r/a/"));
        assert!(!segments.has_passed("r/b/"));
        // The other range's progress says nothing about this one's.
        segments.finished(1);
        assert!(!segments.has_passed("r/b/"));
        assert!(segments.has_passed("r/d/"));
        assert_eq!(segments.earliest_unfinished(), Some(0));
        segments.finished(0);
        assert!(segments.are_done());
    }

    #[test]
    fn a_directory_no_range_was_claimed_for_is_not_passed() {
        let mut segments = Segments::new(numbered(10), 4);
        segments.claim();
        segments.finished(0);
        assert!(segments.has_passed("r/d000/"));
        assert!(!segments.has_passed("r/d005/"));
        assert_eq!(segments.earliest_unfinished(), Some(1));
        assert!(!segments.are_done());
        // A first range that ended without a page lets the rest be claimed.
        assert!(segments.may_claim());
    }
}
