//! The global allocator of the broker and CLI binaries: the system allocator, except that
//! very large blocks are reserved lazily.
//!
//! Why: the Kafka codec (`kafka-protocol`) reserves `Vec::with_capacity(n)` for whatever
//! element count `n` a request declares, before reading the elements. A 32-byte request
//! declaring 2^31 array elements asks for ~150 GB; the system allocator refuses, and an
//! allocation failure aborts the whole process — every client's broker, for one bad frame.
//! Blocks of [`LAZY_FROM`] bytes or more are instead mapped with `MAP_NORESERVE`: the
//! kernel hands out address space without committing memory, only pages that are written
//! become resident, and the decoder then fails cleanly on the short input (the connection
//! is closed with a logged reason) and the mapping is released. Memory actually touched is
//! bounded by what the frame (itself capped by `socket.request.max.bytes`) can fill.

#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr;

/// Blocks this large or larger are mapped lazily.
pub const LAZY_FROM: usize = 1 << 30;
const PAGE: usize = 4096;

/// The allocator; install with `#[global_allocator]`.
#[derive(Debug, Default)]
pub struct LazyHugeAlloc;

fn lazy(size: usize, align: usize) -> bool {
    size >= LAZY_FROM && align <= PAGE
}

unsafe fn map(size: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping has no preconditions; failure is reported as
    // MAP_FAILED, which becomes a null pointer (the standard "allocation failed" answer).
    let p = unsafe {
        libc::mmap(
            ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        ptr::null_mut()
    } else {
        p.cast()
    }
}

// SAFETY: small blocks are the system allocator's; large ones are page-aligned anonymous
// mappings (zero-filled, which also satisfies `alloc_zeroed`), released with `munmap` of
// the same size, and every path keeps the size/alignment contract of `GlobalAlloc`.
unsafe impl GlobalAlloc for LazyHugeAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if lazy(layout.size(), layout.align()) {
            unsafe { map(layout.size()) }
        } else {
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if lazy(layout.size(), layout.align()) {
            unsafe { map(layout.size()) }
        } else {
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if lazy(layout.size(), layout.align()) {
            unsafe {
                libc::munmap(ptr.cast(), layout.size());
            }
        } else {
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let (old_lazy, new_lazy) = (
            lazy(layout.size(), layout.align()),
            lazy(new_size, layout.align()),
        );
        if !old_lazy && !new_lazy {
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        if old_lazy && new_lazy {
            // SAFETY: `ptr` is a mapping of `layout.size()` bytes made by `map`.
            let p =
                unsafe { libc::mremap(ptr.cast(), layout.size(), new_size, libc::MREMAP_MAYMOVE) };
            return if p == libc::MAP_FAILED {
                ptr::null_mut()
            } else {
                p.cast()
            };
        }
        // Crossing the threshold: allocate the new block, copy, free the old one.
        // SAFETY: the layout is valid (the caller guarantees `new_size` with this alignment).
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            unsafe {
                ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_reservations_succeed_without_committing_memory() {
        let a = LazyHugeAlloc;
        // 150 GB: far beyond this machine's memory; only the touched page is resident.
        let layout = Layout::from_size_align(150 << 30, 8).unwrap();
        unsafe {
            let p = a.alloc(layout);
            assert!(!p.is_null());
            *p = 7;
            *p.add(layout.size() - 1) = 9;
            assert_eq!(*p, 7);
            let q = a.realloc(p, layout, 151 << 30);
            assert!(!q.is_null());
            assert_eq!(*q, 7);
            a.dealloc(q, Layout::from_size_align(151 << 30, 8).unwrap());
        }
    }

    #[test]
    fn small_blocks_cross_the_threshold_intact() {
        let a = LazyHugeAlloc;
        let small = Layout::from_size_align(64, 8).unwrap();
        unsafe {
            let p = a.alloc(small);
            p.write_bytes(5, 64);
            let big = a.realloc(p, small, LAZY_FROM);
            assert_eq!(*big.add(63), 5);
            let back = a.realloc(big, Layout::from_size_align(LAZY_FROM, 8).unwrap(), 32);
            assert_eq!(*back.add(31), 5);
            a.dealloc(back, Layout::from_size_align(32, 8).unwrap());
        }
    }
}
