//! A store that wraps any other and makes chosen requests fail, for tests of
//! every layer above the store (core tests, the reference model).
//!
//! Rules are set per [`Verb`]: a [`Fault`] (an error of a given kind, a
//! timeout after a delay, an answer lost after the request took effect, or a
//! GET body cut short) and a [`Trigger`] (the next N calls, the Nth call from
//! now, or each call with a probability drawn from an RNG seeded at
//! construction, so a failing run replays from its seed). Calls are counted
//! per verb; the first rule of a verb whose trigger matches fires, once per
//! call, and is counted per [`FaultKind`], so a test can tell that every kind
//! it asked for was injected at least once.
//!
//! A fault that precedes the request ([`Fault::Fail`], [`Fault::Timeout`])
//! never reaches the inner store: nothing changes, as when S3 never received
//! it. [`Fault::AnswerLost`] forwards the request first, then reports the
//! error: the change happened but the caller cannot know, as when a response
//! is lost on the way back.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{
    FailureKind, ListFrom, ListPage, ObjectHeaders, ObjectMeta, ObjectStore, PendingUploadPage,
    StoreError, Verb,
};

/// What happens to a request a rule selects.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    /// Fails at once with an error of this kind; the inner store sees nothing.
    Fail(FailureKind),
    /// Waits this long, then fails with `StoreError::Timeout`; the inner
    /// store sees nothing.
    Timeout(Duration),
    /// Forwards the request, then fails with this kind whatever the answer.
    AnswerLost(FailureKind),
    /// GET only: returns this fraction (0 to 1 excluded) of the bytes the
    /// inner store returned, at least one byte fewer, as a body cut short.
    TruncatedBody(f64),
    /// Panics inside the request, standing for a bug in the code that sent
    /// it: what is above must confine the damage to that one request.
    Panic,
}

/// What the counts are kept by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultKind {
    Fail(FailureKind),
    Timeout,
    AnswerLost(FailureKind),
    TruncatedBody,
    Panic,
}

impl Fault {
    pub fn kind(&self) -> FaultKind {
        match *self {
            Fault::Fail(kind) => FaultKind::Fail(kind),
            Fault::Timeout(_) => FaultKind::Timeout,
            Fault::AnswerLost(kind) => FaultKind::AnswerLost(kind),
            Fault::TruncatedBody(_) => FaultKind::TruncatedBody,
            Fault::Panic => FaultKind::Panic,
        }
    }
}

/// Which calls of a verb a rule selects, counted from when the rule is added.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Trigger {
    /// The next `n` calls.
    Next(u64),
    /// Only the `n`th call (1 is the next one).
    Nth(u64),
    /// Each call with this probability (0 to 1), drawn from the seeded RNG.
    Probability(f64),
}

/// A rule that cannot do what it says.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RuleError {
    #[error("a truncated body needs a GET, not {verb:?}")]
    TruncationNeedsGet { verb: Verb },
    #[error("a truncated body keeps a fraction in [0, 1), not {fraction}")]
    FractionOutOfRange { fraction: f64 },
    #[error("a probability lies in [0, 1], not {probability}")]
    ProbabilityOutOfRange { probability: f64 },
    #[error("the Nth call counts from 1")]
    ZerothCall,
}

#[derive(Debug)]
struct Rule {
    fault: Fault,
    trigger: Trigger,
    /// Calls of the verb seen since the rule was added.
    calls_seen: u64,
}

impl Rule {
    /// Counts one call; whether the rule selects it.
    fn selects(&mut self, rng: &mut StdRng) -> bool {
        self.calls_seen += 1;
        match self.trigger {
            Trigger::Next(n) => self.calls_seen <= n,
            Trigger::Nth(n) => self.calls_seen == n,
            Trigger::Probability(p) => rng.random_bool(p),
        }
    }

    fn is_spent(&self) -> bool {
        match self.trigger {
            Trigger::Next(n) | Trigger::Nth(n) => self.calls_seen >= n,
            Trigger::Probability(_) => false,
        }
    }
}

#[derive(Debug)]
struct State {
    rng: StdRng,
    rules: HashMap<Verb, Vec<Rule>>,
    calls: BTreeMap<Verb, u64>,
    injected: BTreeMap<FaultKind, u64>,
}

/// Any store, with failures injected by rule.
#[derive(Debug)]
pub struct FaultStore<S> {
    inner: S,
    seed: u64,
    // Never held across an await.
    state: Mutex<State>,
}

impl<S: ObjectStore> FaultStore<S> {
    /// Wraps `inner` with no rules; `seed` drives every probability.
    pub fn new(inner: S, seed: u64) -> FaultStore<S> {
        FaultStore {
            inner,
            seed,
            state: Mutex::new(State {
                rng: StdRng::seed_from_u64(seed),
                rules: HashMap::new(),
                calls: BTreeMap::new(),
                injected: BTreeMap::new(),
            }),
        }
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The seed given at construction, for a test to print on failure.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Adds a rule for `verb`, after the rules it already has.
    pub fn inject(&self, verb: Verb, fault: Fault, trigger: Trigger) -> Result<(), RuleError> {
        if let Fault::TruncatedBody(fraction) = fault {
            if verb != Verb::Get {
                return Err(RuleError::TruncationNeedsGet { verb });
            }
            if !(0.0..1.0).contains(&fraction) {
                return Err(RuleError::FractionOutOfRange { fraction });
            }
        }
        match trigger {
            Trigger::Probability(probability) if !(0.0..=1.0).contains(&probability) => {
                return Err(RuleError::ProbabilityOutOfRange { probability });
            }
            Trigger::Nth(0) => return Err(RuleError::ZerothCall),
            _ => {}
        }
        self.lock().rules.entry(verb).or_default().push(Rule {
            fault,
            trigger,
            calls_seen: 0,
        });
        Ok(())
    }

    /// Drops every rule; counts stay.
    pub fn clear(&self) {
        self.lock().rules.clear();
    }

    /// Calls of `verb` so far, injected ones included.
    pub fn calls(&self, verb: Verb) -> u64 {
        self.lock().calls.get(&verb).copied().unwrap_or(0)
    }

    /// Faults of `kind` injected so far.
    pub fn injected(&self, kind: FaultKind) -> u64 {
        self.lock().injected.get(&kind).copied().unwrap_or(0)
    }

    /// Every kind injected at least once, with its count.
    pub fn injected_counts(&self) -> BTreeMap<FaultKind, u64> {
        self.lock().injected.clone()
    }

    /// Counts the call and picks the fault to apply, if any.
    fn choose(&self, verb: Verb) -> Option<Fault> {
        let mut state = self.lock();
        let state = &mut *state;
        *state.calls.entry(verb).or_default() += 1;
        let rules = state.rules.get_mut(&verb)?;
        // Every rule counts the call, so that "the 3rd call" means the same
        // whatever other rules fire.
        let mut chosen = None;
        for rule in rules.iter_mut() {
            if rule.selects(&mut state.rng) && chosen.is_none() {
                chosen = Some(rule.fault);
            }
        }
        rules.retain(|rule| !rule.is_spent());
        if let Some(fault) = chosen {
            *state.injected.entry(fault.kind()).or_default() += 1;
        }
        chosen
    }

    /// Runs `request` under the fault chosen for `verb`.
    async fn apply<T>(
        &self,
        verb: Verb,
        key: &str,
        request: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        self.apply_chosen(self.choose(verb), verb, key, request)
            .await
    }

    /// A GET under the fault chosen for it; a truncated body keeps a
    /// fraction of the bytes, never all of them.
    async fn apply_get(
        &self,
        key: &str,
        request: impl Future<Output = Result<Vec<Bytes>, StoreError>>,
    ) -> Result<Vec<Bytes>, StoreError> {
        match self.choose(Verb::Get) {
            Some(Fault::TruncatedBody(fraction)) => {
                let pieces = request.await?;
                let total: usize = pieces.iter().map(Bytes::len).sum();
                let kept = ((total as f64 * fraction) as usize).min(total.saturating_sub(1));
                Ok(first_bytes_of(pieces, kept))
            }
            chosen => self.apply_chosen(chosen, Verb::Get, key, request).await,
        }
    }

    async fn apply_chosen<T>(
        &self,
        chosen: Option<Fault>,
        verb: Verb,
        key: &str,
        request: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        match chosen {
            None | Some(Fault::TruncatedBody(_)) => request.await,
            Some(Fault::Fail(kind)) => Err(kind.into_error(key)),
            Some(Fault::Timeout(delay)) => {
                tokio::time::sleep(delay).await;
                Err(StoreError::Timeout)
            }
            Some(Fault::AnswerLost(kind)) => {
                let _ = request.await;
                Err(kind.into_error(key))
            }
            Some(Fault::Panic) => panic!("injected panic in a {verb:?} of {key}"),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every mutation is complete before a panic could leave the lock.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The first `len` bytes of `pieces`, in the same pieces.
fn first_bytes_of(pieces: Vec<Bytes>, mut len: usize) -> Vec<Bytes> {
    let mut kept = Vec::new();
    for piece in pieces {
        if len == 0 {
            break;
        }
        let take = piece.len().min(len);
        len -= take;
        kept.push(piece.slice(..take));
    }
    kept
}

impl<S: ObjectStore> ObjectStore for FaultStore<S> {
    async fn head(&self, key: &str) -> Result<ObjectMeta, StoreError> {
        self.apply(Verb::Head, key, self.inner.head(key)).await
    }

    async fn get_range(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
    ) -> Result<Bytes, StoreError> {
        let request = self.inner.get_range(key, range, if_match);
        let pieces = self
            .apply_get(key, async { request.await.map(|bytes| vec![bytes]) })
            .await?;
        Ok(pieces.into_iter().next().unwrap_or_default())
    }

    async fn get_range_in_pieces(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
        piece_bytes: usize,
    ) -> Result<Vec<Bytes>, StoreError> {
        let request = self
            .inner
            .get_range_in_pieces(key, range, if_match, piece_bytes);
        self.apply_get(key, request).await
    }

    async fn list_page(
        &self,
        prefix: &str,
        delimited: bool,
        from: ListFrom<'_>,
        max_keys: u32,
    ) -> Result<ListPage, StoreError> {
        let request = self.inner.list_page(prefix, delimited, from, max_keys);
        self.apply(Verb::List, prefix, request).await
    }

    async fn put(
        &self,
        key: &str,
        body: Bytes,
        headers: &ObjectHeaders,
    ) -> Result<String, StoreError> {
        let request = self.inner.put(key, body, headers);
        self.apply(Verb::Put, key, request).await
    }

    async fn create_multipart(
        &self,
        key: &str,
        headers: &ObjectHeaders,
    ) -> Result<String, StoreError> {
        let request = self.inner.create_multipart(key, headers);
        self.apply(Verb::CreateMultipart, key, request).await
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        body: Bytes,
    ) -> Result<String, StoreError> {
        let request = self.inner.upload_part(key, upload_id, part_number, body);
        self.apply(Verb::UploadPart, key, request).await
    }

    async fn upload_part_copy(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        source_key: &str,
        source_range: Range<u64>,
        source_etag: Option<&str>,
    ) -> Result<String, StoreError> {
        let request = self.inner.upload_part_copy(
            key,
            upload_id,
            part_number,
            source_key,
            source_range,
            source_etag,
        );
        self.apply(Verb::UploadPartCopy, source_key, request).await
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[(u32, String)],
    ) -> Result<String, StoreError> {
        let request = self.inner.complete_multipart(key, upload_id, parts);
        self.apply(Verb::CompleteMultipart, key, request).await
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), StoreError> {
        let request = self.inner.abort_multipart(key, upload_id);
        self.apply(Verb::AbortMultipart, key, request).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.apply(Verb::Delete, key, self.inner.delete(key)).await
    }

    async fn copy(
        &self,
        source_key: &str,
        destination_key: &str,
        source_etag: Option<&str>,
        headers: Option<&ObjectHeaders>,
    ) -> Result<String, StoreError> {
        let request = self
            .inner
            .copy(source_key, destination_key, source_etag, headers);
        self.apply(Verb::Copy, source_key, request).await
    }

    async fn list_multipart_uploads(
        &self,
        prefix: &str,
        max_uploads: u32,
    ) -> Result<PendingUploadPage, StoreError> {
        let request = self.inner.list_multipart_uploads(prefix, max_uploads);
        self.apply(Verb::ListMultipartUploads, prefix, request)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    fn block_on<F: Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
            .block_on(future)
    }

    fn store_with(keys: &[&str], seed: u64) -> FaultStore<MemoryStore> {
        let memory = MemoryStore::new();
        for key in keys {
            memory.put(key, &b"0123456789"[..]);
        }
        FaultStore::new(memory, seed)
    }

    #[test]
    fn next_n_calls_fail_then_requests_pass_through() {
        let store = store_with(&["k"], 1);
        store
            .inject(
                Verb::Head,
                Fault::Fail(FailureKind::Other),
                Trigger::Next(2),
            )
            .unwrap();
        block_on(async {
            assert!(matches!(
                store.head("k").await,
                Err(StoreError::Other { .. })
            ));
            assert!(matches!(
                store.head("k").await,
                Err(StoreError::Other { .. })
            ));
            assert!(store.head("k").await.is_ok());
            assert!(store.get_range("k", 0..1, None).await.is_ok());
        });
        // Injected failures never reached the inner store.
        assert_eq!(store.inner().head_count(), 1);
        assert_eq!(store.calls(Verb::Head), 3);
        assert_eq!(store.injected(FaultKind::Fail(FailureKind::Other)), 2);
    }

    #[test]
    fn nth_call_fails_alone() {
        let store = store_with(&["k"], 1);
        store
            .inject(
                Verb::Delete,
                Fault::Fail(FailureKind::Unreachable),
                Trigger::Nth(3),
            )
            .unwrap();
        let outcomes: Vec<bool> = block_on(async {
            let mut outcomes = Vec::new();
            for _ in 0..5 {
                outcomes.push(store.delete("other").await.is_ok());
            }
            outcomes
        });
        assert_eq!(outcomes, [true, true, false, true, true]);
        assert_eq!(store.inner().request_count(Verb::Delete), 4);
    }

    #[test]
    fn timeout_waits_then_fails_without_reaching_the_store() {
        let store = store_with(&["k"], 1);
        store
            .inject(
                Verb::Put,
                Fault::Timeout(Duration::from_millis(100)),
                Trigger::Next(1),
            )
            .unwrap();
        block_on(async {
            let started = tokio::time::Instant::now();
            let result = ObjectStore::put(
                &store,
                "k",
                Bytes::from_static(b"new"),
                &ObjectHeaders::default(),
            )
            .await;
            assert!(matches!(result, Err(StoreError::Timeout)));
            assert!(started.elapsed() >= Duration::from_millis(100));
        });
        assert_eq!(store.inner().get("k").unwrap().0, &b"0123456789"[..]);
        assert_eq!(store.injected(FaultKind::Timeout), 1);
    }

    #[test]
    fn lost_answer_changes_the_store_but_reports_failure() {
        let store = store_with(&["k"], 1);
        store
            .inject(
                Verb::Put,
                Fault::AnswerLost(FailureKind::Timeout),
                Trigger::Next(1),
            )
            .unwrap();
        let result = block_on(ObjectStore::put(
            &store,
            "k",
            Bytes::from_static(b"new"),
            &ObjectHeaders::default(),
        ));
        assert!(matches!(result, Err(StoreError::Timeout)));
        assert_eq!(store.inner().get("k").unwrap().0, &b"new"[..]);
    }

    #[test]
    fn truncated_body_returns_fewer_bytes_than_asked() {
        let store = store_with(&["k"], 1);
        store
            .inject(Verb::Get, Fault::TruncatedBody(0.5), Trigger::Next(1))
            .unwrap();
        store
            .inject(Verb::Get, Fault::TruncatedBody(0.0), Trigger::Next(2))
            .unwrap();
        block_on(async {
            assert_eq!(
                store.get_range("k", 0..10, None).await.unwrap(),
                &b"01234"[..]
            );
            // The second rule's count started with the first call.
            assert_eq!(store.get_range("k", 2..4, None).await.unwrap(), &b""[..]);
            assert_eq!(store.get_range("k", 2..4, None).await.unwrap(), &b"23"[..]);
        });
        assert_eq!(store.injected(FaultKind::TruncatedBody), 2);
    }

    #[test]
    fn a_truncated_body_in_pieces_keeps_the_first_pieces_and_part_of_the_next() {
        let store = store_with(&["k"], 1);
        store
            .inject(Verb::Get, Fault::TruncatedBody(0.5), Trigger::Next(1))
            .unwrap();
        let pieces = block_on(store.get_range_in_pieces("k", 0..10, None, 4)).unwrap();
        assert_eq!(pieces, vec![&b"0123"[..], b"4"]);
        assert_eq!(store.injected(FaultKind::TruncatedBody), 1);
    }

    #[test]
    fn impossible_rules_are_typed_errors() {
        let store = store_with(&[], 1);
        assert_eq!(
            store.inject(Verb::Head, Fault::TruncatedBody(0.5), Trigger::Next(1)),
            Err(RuleError::TruncationNeedsGet { verb: Verb::Head })
        );
        assert!(
            store
                .inject(Verb::Get, Fault::TruncatedBody(1.0), Trigger::Next(1))
                .is_err()
        );
        assert!(
            store
                .inject(
                    Verb::Get,
                    Fault::Fail(FailureKind::Other),
                    Trigger::Probability(1.5)
                )
                .is_err()
        );
        assert_eq!(
            store.inject(Verb::Get, Fault::Fail(FailureKind::Other), Trigger::Nth(0)),
            Err(RuleError::ZerothCall)
        );
    }

    /// The failures a seed injects, by call.
    fn pattern(seed: u64) -> Vec<bool> {
        let store = store_with(&["k"], seed);
        store
            .inject(
                Verb::Head,
                Fault::Fail(FailureKind::Timeout),
                Trigger::Probability(0.3),
            )
            .unwrap();
        block_on(async {
            let mut failed = Vec::new();
            for _ in 0..200 {
                failed.push(store.head("k").await.is_err());
            }
            failed
        })
    }

    #[test]
    fn probability_is_reproducible_from_the_seed() {
        let first = pattern(42);
        assert_eq!(first, pattern(42));
        assert_ne!(first, pattern(43));
        let failures = first.iter().filter(|failed| **failed).count();
        // 200 draws at 0.3: 60 expected; 30..90 is over 4 standard deviations.
        assert!((30..90).contains(&failures), "{failures} failures");
    }

    #[test]
    fn every_verb_can_fail() {
        let store = store_with(&["src"], 7);
        for verb in Verb::ALL {
            store
                .inject(
                    verb,
                    Fault::Fail(FailureKind::Unreachable),
                    Trigger::Next(1),
                )
                .unwrap();
        }
        let none = ObjectHeaders::default();
        let body = || Bytes::from_static(b"x");
        let results = block_on(async {
            [
                store.head("src").await.map(drop),
                store.get_range("src", 0..1, None).await.map(drop),
                store
                    .list_page("", true, ListFrom::Start, 10)
                    .await
                    .map(drop),
                ObjectStore::put(&store, "k", body(), &none).await.map(drop),
                store.create_multipart("k", &none).await.map(drop),
                store.upload_part("k", "u", 1, body()).await.map(drop),
                store
                    .upload_part_copy("k", "u", 1, "src", 0..1, None)
                    .await
                    .map(drop),
                store
                    .complete_multipart("k", "u", &[(1, "e".into())])
                    .await
                    .map(drop),
                store.abort_multipart("k", "u").await,
                ObjectStore::delete(&store, "k").await,
                store.copy("src", "k", None, None).await.map(drop),
                store.list_multipart_uploads("", 10).await.map(drop),
            ]
        });
        for (verb, result) in Verb::ALL.iter().zip(results) {
            assert!(
                matches!(result, Err(StoreError::Unreachable { .. })),
                "{verb:?}: {result:?}"
            );
        }
        assert_eq!(
            store.injected(FaultKind::Fail(FailureKind::Unreachable)),
            Verb::ALL.len() as u64
        );
        for verb in Verb::ALL {
            assert_eq!(store.inner().request_count(verb), 0, "{verb:?}");
        }
    }
}
