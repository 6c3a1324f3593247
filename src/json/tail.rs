//! Writing into a line's free capacity through a cursor held in a register, the line's length
//! set once at the end: a byte loop that pushes keeps reloading and storing the length, one
//! dependency chain through memory per byte.
#![allow(unsafe_code)]

use std::mem::MaybeUninit;

/// The free capacity of a line, written front to back. Everything before [`Tail::written`]
/// has been written: each method advances it only over bytes it wrote.
pub(crate) struct Tail<'a> {
    room: &'a mut [MaybeUninit<u8>],
    written: usize,
}

impl Tail<'_> {
    /// Bytes free past what was written.
    #[inline(always)]
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(crate) fn free(&self) -> usize {
        self.room.len() - self.written
    }

    /// Appends one byte.
    #[inline(always)]
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(crate) fn push(&mut self, b: u8) {
        self.room[self.written].write(b);
        self.written += 1;
    }

    /// Appends `bytes`.
    #[inline(always)]
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(crate) fn put(&mut self, bytes: &[u8]) {
        write(
            &mut self.room[self.written..self.written + bytes.len()],
            bytes,
        );
        self.written += bytes.len();
    }

    /// Takes back the last `n` bytes written.
    #[inline(always)]
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(crate) fn cut(&mut self, n: usize) {
        // Checked even in release builds: `written` must never wrap (the length set from it).
        assert!(n <= self.written, "cut past the start of the written bytes");
        self.written -= n;
    }

    /// Appends the first `len` bytes of `block`, with one copy of constant size (the rest is
    /// written too, and written over next). `N` bytes must be free.
    #[inline(always)]
    pub(crate) fn put_block<const N: usize>(&mut self, block: &[u8; N], len: usize) {
        debug_assert!(len <= N);
        write(&mut self.room[self.written..self.written + N], block);
        self.written += len.min(N);
    }
}

/// Copies `bytes` into `to`, as long.
#[inline(always)]
fn write(to: &mut [MaybeUninit<u8>], bytes: &[u8]) {
    for (to, &b) in to.iter_mut().zip(bytes) {
        to.write(b);
    }
}

/// Reserves `room` bytes past the end of `line`, lets `f` write into them through a [`Tail`],
/// and adds what it wrote to the line. Callers mark `f` `#[inline(always)]`: the compiler
/// otherwise keeps a closure of some size a call of its own (−49 instructions per event in the
/// layer bench).
#[inline(always)]
pub(crate) fn append<R>(line: &mut Vec<u8>, room: usize, f: impl FnOnce(&mut Tail<'_>) -> R) -> R {
    line.reserve(room);
    let len = line.len();
    let mut tail = Tail {
        room: line.spare_capacity_mut(),
        written: 0,
    };
    let r = f(&mut tail);
    let written = tail.written;
    // SAFETY: `Tail` advances `written` only over bytes of the spare capacity it wrote, so the
    // first `written` bytes past the line's length are initialized, and within the capacity.
    unsafe { line.set_len(len + written) };
    r
}
