//! Per-thread reusable f32 buffers for the kernels' temporaries (widened weights, im2col
//! columns): a fresh multi-megabyte allocation per layer costs more in page faults than the
//! work done in it, so each calling thread keeps one buffer per use and grows it as needed.

use std::cell::RefCell;

/// What a buffer is for (each use has its own, so one can be filled while another is read).
#[derive(Clone, Copy)]
pub(crate) enum Scratch {
    /// A 16-bit weight widened to f32.
    Widened,
    /// im2col columns of a convolution band.
    Columns,
}

thread_local! {
    static WIDENED: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    static COLUMNS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Calls `use_buffer` with `len` f32s of this thread's `scratch` buffer (contents unspecified:
/// whatever the last use left, zero where it grew). A nested use of the same buffer gets one of
/// its own.
pub(crate) fn with_scratch<R>(
    scratch: Scratch,
    len: usize,
    use_buffer: impl FnOnce(&mut [f32]) -> R,
) -> R {
    let cell = match scratch {
        Scratch::Widened => &WIDENED,
        Scratch::Columns => &COLUMNS,
    };
    cell.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buffer) => {
            if buffer.len() < len {
                buffer.resize(len, 0.0);
            }
            use_buffer(&mut buffer[..len])
        }
        Err(_) => use_buffer(&mut vec![0.0; len]),
    })
}
