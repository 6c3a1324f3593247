//! Recording `tracing` fields as JSON: span fields once, when recorded; event fields per line.

use std::error::Error;
use std::fmt;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};

use tracing::field::{Field, Visit};

use crate::ids::Ids;
use crate::json;
use crate::redact::{REDACTED, Redaction};
use crate::schema::{
    Compiled, Depth, ErrorLayout, FieldLayout, HEAD_PIECE, Piece, Reserved, clashes,
};

/// The span field that carries a correlation id; written under `Key::CorrelationId`.
pub(crate) const CORRELATION_FIELD: &str = "traceline.correlation_id";

/// How many correlation scopes are alive (per traceline layer): while there are none, entering
/// a span costs traceline nothing.
pub(crate) static SCOPES: AtomicUsize = AtomicUsize::new(0);

/// How many spans with a correlation id are alive (in any traceline layer): while there are
/// none, a new span has none to inherit, and its parent is not looked up.
pub(crate) static CORRELATED: AtomicUsize = AtomicUsize::new(0);

/// What traceline keeps for each span, in the span's extensions.
#[derive(Debug, Default)]
pub(crate) struct SpanData {
    /// `"key":value` fragments back to back, each ready to copy into a line.
    pub(crate) buf: Small<u8, 128>,
    pub(crate) entries: Small<Entry, 4>,
    /// The correlation id in effect for this span (its own or inherited), as a JSON string.
    pub(crate) correlation: Option<std::sync::Arc<[u8]>>,
    /// The span id of the local root span (ECS `transaction.id`), worked out on the first line.
    pub(crate) transaction: RootCell,
    /// Ids, cached on first use.
    pub(crate) ids: IdsCell,
    /// The id of the layer this data belongs to.
    pub(crate) layer: u64,
    /// Whether the span is a correlation scope (counted in [`SCOPES`] while it lives).
    pub(crate) scope: bool,
    /// Whether the span is counted in [`CORRELATED`] (it has a correlation id).
    pub(crate) correlated: bool,
    /// The data of the next traceline layer in the same subscriber (each writes its fields
    /// behind keys of its own schema). A span's extensions hold one value per type, so the
    /// layers' data are chained behind the first.
    pub(crate) next: Option<SpanSlot>,
}

/// What traceline keeps in a span's extensions: the span's [`SpanData`], in a box that is
/// reused from span to span on each thread (a few are kept per thread). A span then costs one
/// small allocation for the extension itself, and the data is not built and moved anew.
#[derive(Debug)]
pub(crate) struct SpanSlot(Option<Box<SpanData>>);

/// Boxes kept per thread for new spans.
const POOLED: usize = 64;
/// A box whose fragments grew past this many bytes on the heap is not kept.
const POOLED_HEAP: usize = 4096;

thread_local! {
    // Boxes, not the data itself: a box moves in and out of a span's slot without copying.
    #[allow(clippy::vec_box)]
    static POOL: std::cell::RefCell<Vec<Box<SpanData>>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl SpanSlot {
    /// An empty slot, with a box from this thread's pool when it has one.
    pub(crate) fn new() -> Self {
        let pooled = POOL
            .try_with(|p| p.try_borrow_mut().ok().and_then(|mut p| p.pop()))
            .ok()
            .flatten();
        SpanSlot(Some(pooled.unwrap_or_default()))
    }

    /// The data of the layer `layer`, in this slot or the ones chained behind it.
    #[inline(always)]
    pub(crate) fn of(&self, layer: u64) -> Option<&SpanData> {
        let data: &SpanData = self;
        if data.layer == layer {
            Some(data)
        } else {
            data.next.as_ref()?.of_chained(layer)
        }
    }

    /// [`SpanSlot::of`] past the first layer's data (more than one traceline layer).
    #[cold]
    #[inline(never)]
    fn of_chained(&self, layer: u64) -> Option<&SpanData> {
        self.of(layer)
    }

    /// [`SpanSlot::of`], mutable.
    pub(crate) fn of_mut(&mut self, layer: u64) -> Option<&mut SpanData> {
        if self.layer == layer {
            return Some(self);
        }
        self.next.as_mut()?.of_mut(layer)
    }

    /// Chains `other` (another layer's data for the same span) behind this slot.
    pub(crate) fn chain(&mut self, other: SpanSlot) {
        let mut at = &mut self.next;
        while let Some(next) = at {
            at = &mut next.next;
        }
        *at = Some(other);
    }
}

impl std::ops::Deref for SpanSlot {
    type Target = SpanData;
    #[inline]
    fn deref(&self) -> &SpanData {
        self.0
            .as_deref()
            .expect("a slot holds its data until it is dropped")
    }
}

impl std::ops::DerefMut for SpanSlot {
    #[inline]
    fn deref_mut(&mut self) -> &mut SpanData {
        self.0
            .as_deref_mut()
            .expect("a slot holds its data until it is dropped")
    }
}

impl Drop for SpanSlot {
    fn drop(&mut self) {
        let Some(mut data) = self.0.take() else {
            return;
        };
        if data.scope {
            SCOPES.fetch_sub(1, Ordering::Relaxed);
        }
        if data.correlated {
            CORRELATED.fetch_sub(1, Ordering::Relaxed);
        }
        if data.buf.heap.capacity() > POOLED_HEAP {
            return;
        }
        data.clear();
        // The thread may be exiting (its pool gone) or already using its pool: then the box is
        // simply freed.
        let _ = POOL.try_with(|p| {
            if let Ok(mut p) = p.try_borrow_mut() {
                if p.len() < POOLED {
                    p.push(data);
                }
            }
        });
    }
}

impl SpanData {
    /// Sets the span's correlation id, counting the span in [`CORRELATED`] the first time.
    pub(crate) fn set_correlation(&mut self, id: std::sync::Arc<[u8]>) {
        self.correlation = Some(id);
        if !self.correlated {
            self.correlated = true;
            CORRELATED.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Empties the data for a new span (heap storage is kept).
    fn clear(&mut self) {
        self.buf.clear();
        self.entries.clear();
        self.correlation = None;
        // Only the states: the values behind them are read once a state says they are set.
        self.transaction.reset();
        self.ids.reset();
        self.layer = 0;
        self.scope = false;
        self.correlated = false;
        // Another layer's data goes back to the pool on its own.
        self.next = None;
    }
}

/// A span's local root span id once worked out: `None` until then. Set from any thread
/// holding the span (the same value whoever sets it).
#[derive(Debug, Default)]
pub(crate) struct RootCell {
    /// 0: not worked out; 1: no local root; 2: `span`.
    state: AtomicU8,
    span: AtomicU64,
}

impl RootCell {
    /// Back to "not worked out" (the span id left as it is: read only in state 2).
    #[inline]
    fn reset(&mut self) {
        *self.state.get_mut() = 0;
    }

    pub(crate) fn get(&self) -> Option<Option<[u8; 8]>> {
        match self.state.load(Ordering::Acquire) {
            0 => None,
            1 => Some(None),
            _ => Some(Some(self.span.load(Ordering::Relaxed).to_be_bytes())),
        }
    }

    pub(crate) fn set(&self, root: Option<[u8; 8]>) {
        if let Some(id) = root {
            self.span.store(u64::from_be_bytes(id), Ordering::Relaxed);
        }
        self.state
            .store(if root.is_some() { 2 } else { 1 }, Ordering::Release);
    }
}

/// A span's ids once looked up: `None` until then. Set from any thread holding the span (the
/// same values whoever sets them, so a race only repeats the lookup).
#[derive(Debug, Default)]
pub(crate) struct IdsCell {
    /// 0: not looked up; 1: the span has no ids; 2: ids, not sampled; 3: ids, sampled.
    state: AtomicU8,
    trace_hi: AtomicU64,
    trace_lo: AtomicU64,
    span: AtomicU64,
    /// [`Ids::hex`], 8 bytes a word.
    hex: [AtomicU64; 6],
}

impl IdsCell {
    /// Back to "not looked up" (the ids left as they are: read only in states 2 and 3).
    #[inline]
    fn reset(&mut self) {
        *self.state.get_mut() = 0;
    }

    #[inline]
    pub(crate) fn get(&self) -> Option<Option<Ids>> {
        match self.state.load(Ordering::Acquire) {
            0 => None,
            1 => Some(None),
            state => {
                let mut trace_id = [0; 16];
                trace_id[..8].copy_from_slice(&self.trace_hi.load(Ordering::Relaxed).to_be_bytes());
                trace_id[8..].copy_from_slice(&self.trace_lo.load(Ordering::Relaxed).to_be_bytes());
                let mut hex = [0; 48];
                for (chunk, word) in hex.chunks_exact_mut(8).zip(&self.hex) {
                    chunk.copy_from_slice(&word.load(Ordering::Relaxed).to_ne_bytes());
                }
                Some(Some(Ids {
                    trace_id,
                    span_id: self.span.load(Ordering::Relaxed).to_be_bytes(),
                    sampled: state == 3,
                    hex,
                }))
            }
        }
    }

    pub(crate) fn set(&self, ids: Option<Ids>) {
        let state = match ids {
            None => 1,
            Some(ids) => {
                let half = |b: &[u8]| u64::from_be_bytes(b.try_into().expect("8 bytes"));
                self.trace_hi
                    .store(half(&ids.trace_id[..8]), Ordering::Relaxed);
                self.trace_lo
                    .store(half(&ids.trace_id[8..]), Ordering::Relaxed);
                self.span
                    .store(u64::from_be_bytes(ids.span_id), Ordering::Relaxed);
                for (word, chunk) in self.hex.iter().zip(ids.hex.chunks_exact(8)) {
                    let chunk = chunk.try_into().expect("8 bytes");
                    word.store(u64::from_ne_bytes(chunk), Ordering::Relaxed);
                }
                if ids.sampled { 3 } else { 2 }
            }
        };
        self.state.store(state, Ordering::Release);
    }
}

/// A few values kept inline (in the span's extension, which is allocated anyway), more on the
/// heap: the fields of a typical span cost no allocation of their own.
#[derive(Debug)]
pub(crate) struct Small<T, const N: usize> {
    inline: [T; N],
    len: usize,
    heap: Vec<T>,
}

impl<T: Copy + Default, const N: usize> Default for Small<T, N> {
    fn default() -> Self {
        Small {
            inline: [T::default(); N],
            len: 0,
            heap: Vec::new(),
        }
    }
}

impl<T: Copy + Default, const N: usize> Small<T, N> {
    #[inline]
    pub(crate) fn as_slice(&self) -> &[T] {
        if self.len <= N {
            &self.inline[..self.len]
        } else {
            &self.heap
        }
    }

    fn clear(&mut self) {
        self.len = 0;
        self.heap.clear();
    }

    /// Replaces the contents with `values`.
    pub(crate) fn set(&mut self, values: &[T]) {
        self.len = values.len();
        if values.len() <= N {
            self.inline[..values.len()].copy_from_slice(values);
        } else {
            self.heap.clear();
            self.heap.extend_from_slice(values);
        }
    }
}

/// One recorded span field.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Entry {
    pub(crate) name: &'static str,
    /// The field's index in its callsite: two fields of one span may share a name, and a
    /// value recorded again replaces only its own field's.
    pub(crate) field: u32,
    /// How many times the collision prefix precedes `name` in the written key.
    pub(crate) depth: Depth,
    pub(crate) start: u32,
    pub(crate) end: u32,
    /// The key's [`line_bits`].
    pub(crate) bit: u64,
    /// The key's [`parent_bits`].
    pub(crate) parents: u64,
}

/// One of 64 bits, from the length and the first and last bytes of the key `prefix` ×
/// `depth` + `name`: keys with different bits differ, so most keys are known not to be
/// shadowed without comparing them.
#[inline]
pub(crate) fn key_bit(prefix: &str, depth: Depth, name: &str) -> u64 {
    let len = prefix.len() * depth as usize + name.len();
    let (p, n) = (prefix.as_bytes(), name.as_bytes());
    let first = if depth > 0 { p.first() } else { n.first() };
    let last = n.last().or(if depth > 0 { p.last() } else { None });
    bit_of(len, *first.unwrap_or(&0), *last.unwrap_or(&0))
}

/// The bits a field's key takes on a line: its [`key_bit`], and the bit of its bare name (the
/// same for a key without a prefix). Two fields of one name share a bit whatever prefixes their
/// keys took, so a field of the event or an inner span is always compared with an outer one of
/// its name, which it hides.
#[inline]
pub(crate) fn line_bits(prefix: &str, depth: Depth, name: &str) -> u64 {
    key_bit(prefix, depth, name) | key_bit(prefix, 0, name)
}

/// [`key_bit`] of a key `len` bytes long, from its first and last bytes.
#[inline]
fn bit_of(len: usize, first: u8, last: u8) -> u64 {
    let h = (len as u32)
        .wrapping_mul(0x9E37_79B9)
        .wrapping_add(u32::from(first).wrapping_mul(0x85EB_CA6B))
        .wrapping_add(u32::from(last).wrapping_mul(0xC2B2_AE35));
    1 << (h.wrapping_mul(0x27D4_EB2F) >> 26)
}

/// The [`key_bit`]s of the dotted parents of the key `name` (`user` of `user.id`, `a` and
/// `a.b` of `a.b.c`) outside its prefixes, as [`clashes`] counts them: a key whose bit is not
/// among them is not a dotted parent of this one, with no comparison.
pub(crate) fn parent_bits(prefix: &str, depth: Depth, name: &str) -> u64 {
    let p = prefix.len() * depth as usize;
    let first = if depth > 0 {
        prefix.as_bytes()[0]
    } else {
        match name.as_bytes().first() {
            Some(&b) => b,
            None => return 0,
        }
    };
    let n = name.as_bytes();
    let mut bits = 0;
    for i in 1..n.len() {
        if n[i] == b'.' {
            bits |= bit_of(p + i, first, n[i - 1]);
        }
    }
    bits
}

#[cfg(test)]
mod span_slot_tests {
    use super::*;

    #[test]
    fn a_reused_box_starts_empty() {
        let first = {
            let mut slot = SpanSlot::new();
            slot.buf.set(b",\"a\":1");
            slot.entries.set(&[Entry::default()]);
            slot.correlation = Some(b"\"req-1\"".to_vec().into());
            slot.transaction.set(Some([7; 8]));
            slot.ids.set(None);
            &*slot as *const SpanData as usize
        };
        let slot = SpanSlot::new();
        assert_eq!(
            &*slot as *const SpanData as usize, first,
            "the box is reused"
        );
        assert!(slot.buf.as_slice().is_empty());
        assert!(slot.entries.as_slice().is_empty());
        assert!(slot.correlation.is_none() && slot.transaction.get().is_none());
        assert!(slot.ids.get().is_none(), "ids are looked up again");
    }

    #[test]
    fn a_box_with_large_fragments_is_not_kept() {
        let big = vec![b'x'; POOLED_HEAP * 2];
        {
            let mut slot = SpanSlot::new();
            slot.buf.set(&big);
        }
        // The pool (empty on this test's thread before) did not keep it.
        let slot = SpanSlot::new();
        assert!(slot.buf.heap.capacity() <= POOLED_HEAP);
    }
}

#[cfg(test)]
mod key_bit_tests {
    use super::key_bit;
    use crate::schema::same_key;

    #[test]
    fn the_same_key_spelled_two_ways_has_one_bit() {
        let prefix = "fields.";
        let keys = [
            (0, "x"),
            (1, "x"),
            (0, "fields.x"),
            (2, "x"),
            (1, "fields.x"),
            (0, "fields.fields.x"),
            (0, ""),
            (1, ""),
            (0, "fields."),
            (0, "user_id"),
            (0, "user.id"),
        ];
        for &a in &keys {
            for &b in &keys {
                if same_key(prefix, a, b) {
                    assert_eq!(
                        key_bit(prefix, a.0, a.1),
                        key_bit(prefix, b.0, b.1),
                        "{a:?} {b:?}"
                    );
                }
            }
        }
        // Bits are spread: distinct short names mostly differ.
        let names = [
            "a",
            "b",
            "c",
            "id",
            "job",
            "user_id",
            "http.method",
            "db.table",
        ];
        let bits: std::collections::HashSet<u64> =
            names.iter().map(|n| key_bit(prefix, 0, n)).collect();
        assert!(bits.len() >= names.len() - 1, "{bits:?}");
    }

    /// The fast path's promise: a key that clashes with another (the same, or one the dotted
    /// parent of the other) always shares a bit with it, so no clash is missed for lack of a
    /// comparison.
    #[test]
    fn a_dotted_parent_has_its_bit_among_the_childs_parent_bits() {
        use super::parent_bits;
        use crate::schema::clashes;
        let prefix = "fields.";
        let mut keys = Vec::new();
        for name in [
            "x",
            "x.y",
            "x.y.z",
            "user",
            "user.id",
            "fields",
            "fields.x",
            "fields.x.y",
            "a.",
            "a..b",
            ".a",
            "",
            ".",
            "fields.fields.x",
            "y.x",
        ] {
            for depth in 0..3 {
                keys.push((depth, name));
            }
        }
        let mut kin = 0;
        for &a in &keys {
            for &b in &keys {
                if !clashes(prefix, a, b) {
                    continue;
                }
                let (ka, kb) = (key_bit(prefix, a.0, a.1), key_bit(prefix, b.0, b.1));
                let (pa, pb) = (parent_bits(prefix, a.0, a.1), parent_bits(prefix, b.0, b.1));
                assert!(
                    ka & (kb | pb) != 0 || pa & kb != 0,
                    "{a:?} and {b:?} clash with no bit in common"
                );
                kin += usize::from(!same_key(prefix, a, b));
            }
        }
        assert!(kin > 20, "only {kin} kin pairs looked at");
        // Siblings are not kin, nor is a key within another's prefixes.
        assert!(!clashes(prefix, (0, "http.method"), (0, "http.route")));
        assert!(!clashes(prefix, (0, "user_id"), (0, "user.id")));
        assert!(!clashes(prefix, (0, "fields"), (1, "x")));
        assert!(clashes(prefix, (0, "user"), (0, "user.id")));
        assert!(clashes(prefix, (1, "user"), (0, "fields.user.id")));
    }
}

impl Entry {
    pub(crate) fn fragment<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.start as usize..self.end as usize]
    }
}

/// How many collision prefixes `name` needs so that its key is neither reserved nor `taken`.
fn free_depth(
    reserved: &Reserved,
    prefix: &str,
    name: &str,
    taken: impl Fn((Depth, &str)) -> bool,
) -> Depth {
    free_depth_from(0, reserved, prefix, name, taken)
}

/// [`free_depth`], trying `depth` prefixes first.
fn free_depth_from(
    mut depth: Depth,
    reserved: &Reserved,
    prefix: &str,
    name: &str,
    taken: impl Fn((Depth, &str)) -> bool,
) -> Depth {
    while reserved.contains(prefix, depth, name) || taken((depth, name)) {
        depth += 1;
    }
    depth
}

/// Writes the span field `e` (its fragment in `fragments`) under its key with the collision
/// prefix once more, or as many more times as it takes for the key to be neither reserved nor
/// one already on the line (`seen`): the key it has was taken by a field of another name in
/// another scope (renamed into it). Returns the depth it was written at.
#[cold]
pub(crate) fn write_moved(
    out: &mut Vec<u8>,
    reserved: &Reserved,
    prefix: &str,
    e: &Entry,
    fragments: &[u8],
    seen: &[(Depth, &'static str)],
) -> Depth {
    let depth = free_depth_from(e.depth + 1, reserved, prefix, e.name, |key| {
        seen.iter().any(|&k| clashes(prefix, k, key))
    });
    // The fragment is `,"key":value`: its key, as written, is measured by writing it.
    let mark = out.len();
    write_prefixed_key(out, prefix, e.depth, e.name);
    let key_len = out.len() - mark;
    out.truncate(mark);
    write_prefixed_key(out, prefix, depth, e.name);
    out.extend_from_slice(&e.fragment(fragments)[key_len..]);
    depth
}

/// Writes the key for a field, adding the collision prefix while the key is reserved.
fn write_prefixed_key(out: &mut Vec<u8>, prefix: &str, depth: Depth, name: &str) {
    out.extend_from_slice(b",\"");
    for _ in 0..depth {
        json::escape_into(out, prefix);
    }
    json::escape_into(out, name);
    out.extend_from_slice(b"\":");
}

/// The prefix of the span fields that `tracing-opentelemetry` reads as instructions.
const OTEL_PREFIX: &str = "otel.";

/// Records span fields' values, with no lock held (a value's `Debug` may log, or use the
/// span): the values back to back in `values`, each one's name and place in `raw`. [`merge`]
/// then turns them into keyed fragments.
pub(crate) struct SpanVisitor<'a> {
    pub(crate) values: &'a mut Vec<u8>,
    pub(crate) raw: &'a mut Vec<Entry>,
    pub(crate) correlation: &'a mut Option<std::sync::Arc<[u8]>>,
    pub(crate) redaction: &'a Redaction,
    /// The field length limit, in bytes of text.
    pub(crate) max: usize,
    /// For a new span whose callsite's keys need no collision prefix: each value is written
    /// behind its key, so `values` and `raw` are the span's fragments as they are.
    pub(crate) keys: Option<&'a SpanKeys>,
    /// The cached fields already recorded: a value set that gives a field twice keeps its
    /// first value, not two fragments with one key.
    pub(crate) done: u64,
}

impl SpanVisitor<'_> {
    fn field(&mut self, field: &Field, write: impl FnOnce(&mut Vec<u8>)) {
        let name = field.name();
        // `otel.name`, `otel.kind`, `otel.status_code`…: instructions to tracing-opentelemetry
        // about the span, not data for its lines.
        if name.starts_with(OTEL_PREFIX) {
            return;
        }
        if name == CORRELATION_FIELD {
            let mut v = Vec::new();
            write(&mut v);
            *self.correlation = Some(v.into());
            return;
        }
        // A value set that gives a field twice: its first value is kept.
        let i = field.index();
        let again = if i < CACHED_FIELDS {
            let again = self.done & (1 << i) != 0;
            self.done |= 1 << i;
            again
        } else {
            self.raw.iter().any(|e| e.field as usize == i)
        };
        if again {
            return;
        }
        let start = self.values.len() as u32;
        let denied = match self.keys {
            Some(keys) => {
                self.values.extend_from_slice(keys.key(field.index()));
                keys.is_denied(field.index(), name, self.redaction)
            }
            None => self.redaction.is_denied(name),
        };
        if denied {
            json::write_str(self.values, REDACTED);
        } else {
            write(self.values);
        }
        let (bit, parents) = self.keys.map_or((0, 0), |k| k.bits(field.index()));
        self.raw.push(Entry {
            name,
            field: u32::try_from(field.index()).unwrap_or(u32::MAX),
            depth: 0,
            start,
            end: self.values.len() as u32,
            bit,
            parents,
        });
    }
}

/// The keys of a span callsite's fields, for recording a new span's fields straight into
/// keyed fragments. Only built for callsites where no field needs the collision prefix: then
/// every field's key is `,"name":` whichever of them are recorded, the same as [`merge`] gives.
#[derive(Debug)]
pub(crate) struct SpanKeys {
    pub(crate) addr: usize,
    pub(crate) layer: u64,
    /// `,"key":` of each field, back to back; `None` when some key needs a prefix.
    keys: Option<(Vec<u8>, Vec<u32>)>,
    /// Bit `i` set when field `i` is redacted.
    denied: u64,
    /// Each field's [`key_bit`] and [`parent_bits`].
    bits: Vec<(u64, u64)>,
}

impl SpanKeys {
    pub(crate) fn build(
        meta: &'static tracing_core::Metadata<'static>,
        layer: u64,
        c: &Compiled,
        redaction: &Redaction,
    ) -> Self {
        let prefix = &*c.prefix;
        let mut keys = Vec::new();
        let mut ends = Vec::new();
        let mut seen: Vec<(Depth, &str)> = Vec::new();
        let mut plain = true;
        let mut denied = 0u64;
        let mut bits = Vec::new();
        for (i, field) in meta.fields().iter().enumerate() {
            let name = field.name();
            if i < CACHED_FIELDS && redaction.is_denied(name) {
                denied |= 1 << i;
            }
            if name != CORRELATION_FIELD {
                let depth = free_depth(&c.span_reserved, prefix, name, |k| {
                    seen.iter().any(|&s| clashes(prefix, s, k))
                });
                plain &= depth == 0;
                seen.push((depth, name));
            }
            write_prefixed_key(&mut keys, prefix, 0, name);
            ends.push(keys.len() as u32);
            bits.push((key_bit(prefix, 0, name), parent_bits(prefix, 0, name)));
        }
        SpanKeys {
            addr: meta as *const _ as usize,
            layer,
            keys: plain.then_some((keys, ends)),
            denied,
            bits,
        }
    }

    #[inline]
    fn bits(&self, i: usize) -> (u64, u64) {
        self.bits[i]
    }

    /// Whether field `i`, named `name`, is redacted (decided once per callsite).
    #[inline]
    fn is_denied(&self, i: usize, name: &str, redaction: &Redaction) -> bool {
        if i < CACHED_FIELDS {
            self.denied & (1 << i) != 0
        } else {
            redaction.is_denied(name)
        }
    }

    /// Whether new spans of this callsite can be recorded with these keys.
    #[inline]
    pub(crate) fn usable(&self) -> bool {
        self.keys.is_some()
    }

    #[inline]
    fn key(&self, i: usize) -> &[u8] {
        let Some((keys, ends)) = &self.keys else {
            return &[];
        };
        let start = if i == 0 { 0 } else { ends[i - 1] as usize };
        &keys[start..ends[i] as usize]
    }
}

/// Adds the values a [`SpanVisitor`] recorded to a span's fragments (`buf`, `entries`): a
/// field recorded again replaces its earlier value, and each key gets the collision prefix as
/// often as it needs.
pub(crate) fn merge(
    buf: &mut Vec<u8>,
    entries: &mut Vec<Entry>,
    values: &[u8],
    raw: &[Entry],
    c: &Compiled,
) {
    let prefix = &*c.prefix;
    for r in raw {
        let name = r.name;
        if let Some(i) = entries.iter().position(|e| e.field == r.field) {
            let old = entries.remove(i);
            let len = old.end - old.start;
            buf.drain(old.start as usize..old.end as usize);
            for e in &mut entries[i..] {
                e.start -= len;
                e.end -= len;
            }
        }
        let taken = &*entries;
        let depth = free_depth(&c.span_reserved, prefix, name, |k| {
            taken.iter().any(|e| clashes(prefix, (e.depth, e.name), k))
        });
        let start = buf.len() as u32;
        write_prefixed_key(buf, prefix, depth, name);
        buf.extend_from_slice(r.fragment(values));
        entries.push(Entry {
            name,
            field: r.field,
            depth,
            start,
            end: buf.len() as u32,
            bit: line_bits(prefix, depth, name),
            parents: parent_bits(prefix, depth, name),
        });
    }
}

impl Visit for SpanVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.field(field, |b| json::write_f64(b, value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.field(field, |b| json::write_i64(b, value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.field(field, |b| json::write_u64(b, value));
    }
    fn record_i128(&mut self, field: &Field, value: i128) {
        self.field(field, |b| json::write_i128(b, value));
    }
    fn record_u128(&mut self, field: &Field, value: u128) {
        self.field(field, |b| json::write_u128(b, value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.field(field, |b| write_bool(b, value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        // A correlation id is never cut: `correlation::current()` reads it back, and the HTTP
        // client sends it on. Valid ids are at most `correlation::MAX_LEN` bytes.
        let max = if field.name() == CORRELATION_FIELD {
            self.max.max(crate::correlation::MAX_LEN)
        } else {
            self.max
        };
        self.field(field, |b| json::write_str_max(b, value, max));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn Error + 'static)) {
        let max = self.max;
        self.field(field, |b| write_error_object(b, value, None, max));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let max = self.max;
        self.field(field, |b| json::write_debug(b, value, max));
    }
}

#[inline]
fn write_bool(out: &mut Vec<u8>, v: bool) {
    // Five bytes either way (no call for a copy of varying length), cut back for `true`.
    json::put_block(out, if v { b"true " } else { b"false" }, 5 - usize::from(v));
}

/// `{"message":"…","chain":["cause",…]}`
/// Writes `err` as an object: its message, its chain of causes, and `ty` (the type
/// [`crate::record_error`] gave).
pub(crate) fn write_error_object(
    out: &mut Vec<u8>,
    err: &(dyn Error + 'static),
    ty: Option<&'static str>,
    max: usize,
) {
    out.extend_from_slice(b"{\"message\":");
    json::write_display(out, &err, max);
    out.extend_from_slice(b",\"chain\":[");
    for (i, cause) in crate::error::causes(err).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        json::write_display(out, &cause, max);
    }
    out.push(b']');
    if let Some(ty) = ty {
        out.extend_from_slice(b",\"type\":");
        json::write_str(out, ty);
    }
    out.push(b'}');
}

/// Finds the event's `message` field and writes it as a JSON string body.
pub(crate) struct MessageVisitor<'a> {
    pub(crate) buf: &'a mut Vec<u8>,
    pub(crate) found: bool,
    /// The length limit, in bytes of text.
    pub(crate) max: usize,
}

impl MessageVisitor<'_> {
    /// Writes `value` as the message (the caller knows the field is the message, not found
    /// yet).
    #[inline]
    fn str_message(&mut self, value: &str) {
        self.found = true;
        json::escape_max(self.buf, value, self.max);
    }

    /// Writes `value`'s `Debug` text as the message (the caller knows the field is the message,
    /// not found yet).
    #[inline]
    fn debug_message(&mut self, value: &dyn fmt::Debug) {
        self.found = true;
        json::write_fmt_body(
            self.buf,
            format_args!("{value:?}"),
            self.max,
            b"<Debug failed>",
            b"<Debug panicked>",
        );
    }
}

impl Visit for MessageVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" && !self.found {
            self.str_message(value);
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" && !self.found {
            self.debug_message(value);
        }
    }
}

/// The keys of one callsite's fields, written once and copied into every line after.
///
/// Which key a field gets (its name, or its name behind the collision prefix) depends only on
/// the callsite and the layer's schema, so it is worked out on the first event of a callsite.
#[derive(Debug)]
pub(crate) struct CallsiteKeys {
    pub(crate) addr: usize,
    pub(crate) layer: u64,
    /// `,"key":` of each field, and its collision depth.
    places: Vec<KeyPlace>,
    /// Bit `i` set when field `i` is redacted.
    pub(crate) denied: u64,
    /// Bit `i` set when field `i` is named `message`.
    messages: u64,
    /// Bit `i` set when field `i` is a `log.*` field of an event bridged from the `log` crate
    /// (skipped: it repeats the metadata).
    log_fields: u64,
    /// `,"target":"<the callsite's target>"`, escaped: empty when the schema writes no target,
    /// or when the event comes from the `log` crate (its target is in its fields, not in the
    /// callsite).
    target: Piece<HEAD_PIECE>,
    /// Whether this is a callsite of events bridged from the `log` crate.
    pub(crate) from_log: bool,
    /// The [`line_bits`] of every key the callsite's fields may take (of the cached fields).
    pub(crate) key_bits: u64,
    /// The [`parent_bits`] of the same keys.
    pub(crate) parent_bits: u64,
    /// Whether values given out of the declared order can make a cached key unusable (see
    /// [`EventVisitor::taken_already`]): a callsite with two fields named `message`, or more
    /// fields than are cached.
    pub(crate) reorderable: bool,
    /// Whether the callsite has more fields than are cached.
    wide: bool,
    /// For a [`reorderable`](Self::reorderable) callsite, the keys of the cached fields (but
    /// the first `message`), which a cached field keyed on the line avoids.
    cached_keys: Vec<(Depth, &'static str)>,
}

/// One field's key in [`CallsiteKeys`].
#[derive(Debug)]
struct KeyPlace {
    /// `,"key":`.
    key: Piece<SHORT_KEY>,
    depth: Depth,
}

/// Keys up to this long are copied as a block of this size (a fixed length, no call).
const SHORT_KEY: usize = 16;

/// Fields past this index are handled without the cache.
pub(crate) const CACHED_FIELDS: usize = 64;

impl CallsiteKeys {
    pub(crate) fn build(
        meta: &'static tracing_core::Metadata<'static>,
        layer: u64,
        c: &Compiled,
        redaction: &Redaction,
        from_log: bool,
    ) -> Self {
        let prefix = &*c.prefix;
        let mut key = Vec::new();
        let mut places = Vec::new();
        let mut seen: Vec<(Depth, &'static str)> = Vec::new();
        let mut denied = 0u64;
        let mut messages = 0u64;
        let mut log_fields = 0u64;
        let mut key_bits = 0u64;
        let mut parent_key_bits = 0u64;
        let mut message_seen = false;
        for (i, field) in meta.fields().iter().enumerate().take(CACHED_FIELDS) {
            let name = field.name();
            if name == "message" {
                messages |= 1 << i;
            }
            let log_field = from_log && name.starts_with("log.");
            if log_field {
                log_fields |= 1 << i;
            }
            // The same decisions as `EventVisitor::key`, in the same order.
            let written = if name == "message" && !message_seen {
                message_seen = true;
                false
            } else {
                !log_field
            };
            let mut depth: Depth = 0;
            if written {
                depth = free_depth(&c.event_reserved, prefix, name, |k| {
                    seen.iter().any(|&s| clashes(prefix, s, k))
                });
                seen.push((depth, name));
                key_bits |= line_bits(prefix, depth, name);
                parent_key_bits |= parent_bits(prefix, depth, name);
            }
            key.clear();
            write_prefixed_key(&mut key, prefix, depth, name);
            places.push(KeyPlace {
                key: Piece::new(&key),
                depth,
            });
            if redaction.is_denied(name) {
                denied |= 1 << i;
            }
        }
        let wide = meta.fields().len() > CACHED_FIELDS;
        let reorderable = messages.count_ones() > 1 || wide;
        let mut target = Vec::new();
        if let (Some(k), false) = (&c.target, from_log) {
            target.extend_from_slice(k);
            json::write_str(&mut target, meta.target());
        }
        CallsiteKeys {
            addr: meta as *const _ as usize,
            layer,
            places,
            denied,
            messages,
            log_fields,
            target: Piece::new(&target),
            from_log,
            key_bits,
            parent_bits: parent_key_bits,
            reorderable,
            wide,
            cached_keys: if reorderable { seen } else { Vec::new() },
        }
    }

    /// Appends `,"target":"…"` for events of this callsite (nothing for those from the `log`
    /// crate).
    #[inline(always)]
    pub(crate) fn put_target(&self, out: &mut Vec<u8>) {
        self.target.put(out);
    }

    #[cfg(test)]
    fn key(&self, i: usize) -> (&[u8], Depth) {
        let p = &self.places[i];
        (p.key.bytes(), p.depth)
    }

    /// The bits of the fields (of the cached ones) that are written with their cached key and
    /// nothing else to decide: not a message, not redacted, and not a `log.*` field skipped
    /// when `skip_log_fields`.
    #[inline]
    pub(crate) fn plain(&self, skip_log_fields: bool) -> u64 {
        if self.wide {
            // Past the cached fields a key is worked out on the line, which a cached key
            // given later must then be checked against.
            return 0;
        }
        let skipped = if skip_log_fields { self.log_fields } else { 0 };
        !(self.messages | self.denied | skipped)
    }

    /// Appends field `i`'s key (`i < CACHED_FIELDS`) and returns its depth.
    #[inline]
    fn write_key(&self, i: usize, out: &mut Vec<u8>) -> Depth {
        let p = &self.places[i];
        p.key.put(out);
        p.depth
    }
}

/// Writes an event's fields (all but `message`), renaming keys that collide, and hands the
/// `message` field to a [`MessageVisitor`] (when the schema writes messages): one pass over the
/// event's values.
pub(crate) struct EventVisitor<'a> {
    pub(crate) buf: &'a mut Vec<u8>,
    pub(crate) seen: &'a mut Vec<(Depth, &'static str)>,
    /// Whether the keys written go into `seen` (needed when span fields may be shadowed).
    pub(crate) track: bool,
    /// [`CallsiteKeys::plain`]: the fields whose key is copied (and tracked, with `track`) and
    /// whose value follows, with no other check.
    pub(crate) plain: u64,
    pub(crate) c: &'a Compiled,
    /// Fields of events bridged from the `log` crate that repeat the metadata.
    pub(crate) skip_log_fields: bool,
    pub(crate) flat_error_used: bool,
    pub(crate) message: Option<MessageVisitor<'a>>,
    /// With no message on the line (`Key::Message` off): the message was met, and left out.
    pub(crate) message_left_out: bool,
    /// The callsite's keys (fields past 63 are keyed here, field by field).
    pub(crate) keys: &'a CallsiteKeys,
    pub(crate) redaction: &'a Redaction,
    /// The field length limit, in bytes of text.
    pub(crate) max: usize,
    /// The cached fields already written (or taken as the message): a value set that gives a
    /// field twice has its first value on the line, not two keys.
    pub(crate) done: u64,
    /// The same for the fields past the cached ones (callsites that have them are rare).
    pub(crate) done_wide: &'a mut Vec<usize>,
}

impl EventVisitor<'_> {
    /// Whether the field at index `i` was written (or taken as the message) already.
    #[inline(always)]
    fn met(&self, i: usize) -> bool {
        if i < CACHED_FIELDS {
            self.done & (1 << i) != 0
        } else {
            self.done_wide.contains(&i)
        }
    }

    /// Notes the field at index `i` as written (or taken as the message).
    #[inline(always)]
    fn meet(&mut self, i: usize) {
        if i < CACHED_FIELDS {
            self.done |= 1 << i;
        } else {
            self.done_wide.push(i);
        }
    }

    /// Writes `field`'s key and returns `true` when it is one of the [`plain`](Self::plain)
    /// fields, whose value then follows.
    #[inline(always)]
    fn plain_key(&mut self, field: &Field) -> bool {
        let i = field.index();
        // A field met already (a value set that gives it twice) is not plain: `key` skips it.
        if i < CACHED_FIELDS && self.plain & !self.done & (1 << i) != 0 {
            self.done |= 1 << i;
            let depth = self.keys.write_key(i, self.buf);
            if self.track {
                self.seen.push((depth, field.name()));
            }
            return true;
        }
        false
    }

    /// Whether `field` is the line's message; if so it has been handed to the message visitor.
    /// A second field named `message` is a user field (written under the collision prefix).
    #[inline(always)]
    fn message(&mut self, field: &Field, record: impl FnOnce(&mut MessageVisitor<'_>)) -> bool {
        let i = field.index();
        let named_message = if i < CACHED_FIELDS {
            self.keys.messages & (1 << i) != 0
        } else {
            field.name() == "message"
        };
        if !named_message {
            return false;
        }
        if self.met(i) {
            // The message given twice: the first is on the line, and `key` skips this.
            return false;
        }
        let taken = match &mut self.message {
            Some(m) if m.found => false,
            Some(m) => {
                record(m);
                true
            }
            // The first is the message, left out; a second is a user field.
            None => !std::mem::replace(&mut self.message_left_out, true),
        };
        if taken {
            self.meet(i);
        }
        taken
    }

    #[inline(always)]
    fn key(&mut self, field: &Field) -> bool {
        let i = field.index();
        if i < CACHED_FIELDS {
            if self.met(i) {
                // Given twice: its first value is on the line.
                return false;
            }
            self.meet(i);
            let keys = self.keys;
            if self.skip_log_fields && keys.log_fields & (1 << i) != 0 {
                return false;
            }
            if keys.reorderable && self.taken_already(field) {
                return self.uncached_key(field);
            }
            let depth = keys.write_key(i, self.buf);
            if self.track {
                self.seen.push((depth, field.name()));
            }
            if keys.denied & (1 << i) != 0 {
                json::write_str(self.buf, REDACTED);
                return false;
            }
            return true;
        }
        self.uncached_key(field)
    }

    /// Whether the cached key of `field` cannot be used on this line: the callsite's keys are
    /// worked out for values given in the order the fields are declared, as the `tracing`
    /// macros give them. A value set may give them in another order: the first field named
    /// `message` can then come after another one that became the line's message (its cached
    /// key is the bare name), and past the cached fields a field keyed on the line may have
    /// taken the key of a cached one that comes later.
    #[cold]
    #[inline(never)]
    fn taken_already(&self, field: &Field) -> bool {
        let i = field.index();
        let keys = self.keys;
        if keys.messages.trailing_zeros() as usize == i {
            return true;
        }
        let place = (keys.places[i].depth, field.name());
        let prefix = &*self.c.prefix;
        self.seen.iter().any(|&s| clashes(prefix, s, place))
    }

    /// [`key`](Self::key) for fields past the cached ones: worked out field by field.
    #[cold]
    #[inline(never)]
    fn uncached_key(&mut self, field: &Field) -> bool {
        let i = field.index();
        if i >= CACHED_FIELDS {
            if self.met(i) {
                // Given twice: its first value is on the line.
                return false;
            }
            self.meet(i);
        }
        let name = field.name();
        if self.skip_log_fields && name.starts_with("log.") {
            return false;
        }
        let prefix = &*self.c.prefix;
        let seen = &*self.seen;
        // A cached field keyed here (given out of order) avoids every cached key too.
        let cached: &[(Depth, &str)] = if i < CACHED_FIELDS {
            &self.keys.cached_keys
        } else {
            &[]
        };
        let depth = free_depth(&self.c.event_reserved, prefix, name, |k| {
            seen.iter().chain(cached).any(|&s| clashes(prefix, s, k))
        });
        self.seen.push((depth, name));
        write_prefixed_key(self.buf, prefix, depth, name);
        if self.is_denied(field) {
            json::write_str(self.buf, REDACTED);
            return false;
        }
        true
    }

    #[inline]
    fn is_denied(&self, field: &Field) -> bool {
        let i = field.index();
        if i < CACHED_FIELDS {
            self.keys.denied & (1 << i) != 0
        } else {
            self.redaction.is_denied(field.name())
        }
    }
}

impl Visit for EventVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        if self.plain_key(field)
            || !self.message(field, |m| m.debug_message(&value)) && self.key(field)
        {
            json::write_f64(self.buf, value);
        }
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        if self.plain_key(field)
            || !self.message(field, |m| m.debug_message(&value)) && self.key(field)
        {
            json::write_i64(self.buf, value);
        }
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        if self.plain_key(field)
            || !self.message(field, |m| m.debug_message(&value)) && self.key(field)
        {
            json::write_u64(self.buf, value);
        }
    }
    fn record_i128(&mut self, field: &Field, value: i128) {
        if self.plain_key(field)
            || !self.message(field, |m| m.debug_message(&value)) && self.key(field)
        {
            json::write_i128(self.buf, value);
        }
    }
    fn record_u128(&mut self, field: &Field, value: u128) {
        if self.plain_key(field)
            || !self.message(field, |m| m.debug_message(&value)) && self.key(field)
        {
            json::write_u128(self.buf, value);
        }
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        if self.plain_key(field)
            || !self.message(field, |m| m.debug_message(&value)) && self.key(field)
        {
            write_bool(self.buf, value);
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if self.plain_key(field)
            || !self.message(field, |m| m.str_message(value)) && self.key(field)
        {
            json::write_str_max(self.buf, value, self.max);
        }
    }
    fn record_error(&mut self, field: &Field, value: &(dyn Error + 'static)) {
        if self.message(field, |m| m.record_error(field, value)) {
            return;
        }
        // The type `record_error` gave this very error (not another one an event logged while
        // it formats carries).
        let ty = crate::error::recorded_type(value);
        self.record_error_typed(field, value, ty);
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.plain_key(field)
            || !self.message(field, |m| m.debug_message(value)) && self.key(field)
        {
            json::write_debug(self.buf, value, self.max);
        }
    }
}

impl EventVisitor<'_> {
    /// [`Visit::record_error`] with the error's type, if `record_error` gave one.
    fn record_error_typed(
        &mut self,
        field: &Field,
        value: &(dyn Error + 'static),
        ty: Option<&'static str>,
    ) {
        let i = field.index();
        if self.met(i) {
            // Given twice: its first value is on the line.
            return;
        }
        // Flat error keys are top-level keys: with nested fields, errors stay objects inside
        // `fields`.
        let c = self.c;
        // At least one part that this error has switched on: an error with no type of its own
        // (not given through `record_error`) and only the type key on would leave nothing.
        let writable = c.error_message.is_some()
            || c.error_stack_trace.is_some()
            || (c.error_type.is_some() && ty.is_some());
        if c.errors == ErrorLayout::Flat
            && c.layout == FieldLayout::Flatten
            && !self.flat_error_used
            && writable
            && !self.is_denied(field)
        {
            self.flat_error_used = true;
            self.meet(i);
            if self.track {
                // The field's own key is not written, but it still shadows span fields of
                // its name: the event's value wins.
                let depth = self.keys.places.get(i).map_or(0, |p| p.depth);
                self.seen.push((depth, field.name()));
            }
            // The parts switched off in the schema are left out.
            if let Some(k) = &c.error_message {
                self.buf.extend_from_slice(k);
                json::write_display(self.buf, &value, self.max);
            }
            if let (Some(k), Some(ty)) = (&c.error_type, ty) {
                self.buf.extend_from_slice(k);
                json::write_str(self.buf, ty);
            }
            if let Some(k) = &c.error_stack_trace {
                self.buf.extend_from_slice(k);
                json::write_display(self.buf, &crate::error::ChainText(value), self.max);
            }
            return;
        }
        if self.key(field) {
            write_error_object(self.buf, value, ty, self.max);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_core::callsite::{Callsite, Identifier};
    use tracing_core::field::FieldSet;
    use tracing_core::metadata::{Kind, Level, Metadata};
    use tracing_core::subscriber::Interest;

    #[test]
    fn booleans_are_written_exactly_after_what_is_there() {
        for (v, text) in [(true, "true"), (false, "false")] {
            let mut out = b"[1,".to_vec();
            write_bool(&mut out, v);
            out.push(b']');
            assert_eq!(out, format!("[1,{text}]").as_bytes());
        }
    }

    struct Site;
    static SITE: Site = Site;
    static META: Metadata<'static> = Metadata::new(
        "event",
        "orders",
        Level::INFO,
        None,
        None,
        None,
        FieldSet::new(
            &[
                "message",
                "log.target",
                "level",
                "message",
                "a",
                "log.line",
                "b",
            ],
            Identifier(&SITE),
        ),
        Kind::EVENT,
    );
    impl Callsite for Site {
        fn set_interest(&self, _: Interest) {}
        fn metadata(&self) -> &Metadata<'_> {
            &META
        }
    }

    #[test]
    fn callsite_keys_mark_message_and_log_fields_and_place_every_key() {
        let c = crate::schema::Schema::default().compile();
        for from_log in [false, true] {
            let keys = CallsiteKeys::build(&META, 1, &c, &Redaction::default(), from_log);
            assert_eq!(keys.messages, 0b000_1001);
            assert_eq!(keys.log_fields, if from_log { 0b010_0010 } else { 0 });
            let written: Vec<(String, Depth)> = (0..7)
                .map(|i| {
                    let (k, d) = keys.key(i);
                    let mut out = b"[".to_vec();
                    assert_eq!(keys.write_key(i, &mut out), d);
                    assert_eq!(out[1..], *k);
                    (String::from_utf8(k.to_vec()).unwrap(), d)
                })
                .collect();
            // The first `message` is the line's message and `level` is a schema key: both
            // would collide, so the second `message` and `level` get the prefix.
            let want = [
                (r#","message":"#, 0),
                (r#","log.target":"#, 0),
                (r#","fields.level":"#, 1),
                (r#","fields.message":"#, 1),
                (r#","a":"#, 0),
                (r#","log.line":"#, 0),
                (r#","b":"#, 0),
            ];
            for (got, (key, depth)) in written.iter().zip(want) {
                assert_eq!(
                    (got.0.as_str(), got.1),
                    (key, depth),
                    "from_log: {from_log}"
                );
            }
            let target: &[u8] = if from_log {
                b""
            } else {
                br#","target":"orders""#
            };
            let mut written = Vec::new();
            keys.put_target(&mut written);
            assert_eq!(written, target);
        }
    }
}
