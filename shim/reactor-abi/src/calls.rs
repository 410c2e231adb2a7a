//! The host functions a reactor imports (`fabricks_http.request_read`, `response_head`,
//! `response_write`), on the guest's linear memory. Pointers and lengths come from the guest
//! and are checked here, once, for every call.

use std::ops::Range;

use anyhow::anyhow;

use crate::Exchange;

/// Why a host call gave the guest no result.
#[derive(Debug)]
pub enum CallFailure {
    /// The guest broke the ABI (a buffer outside its memory, a call outside a request): the
    /// call traps, as an out-of-bounds access in wasm code would.
    Abi(anyhow::Error),
    /// The exchange failed (the client went away, a bad response head, the deadline): the
    /// engine tells the guest (-1) or ends the call as a timeout.
    Exchange(anyhow::Error),
}

/// `ptr..ptr + len` if it lies inside a memory of `memory_len` bytes; the sum is taken in
/// `usize`, so a range that wraps in 32 bits is outside, not at the start.
pub fn guest_range(memory_len: usize, ptr: u32, len: u32) -> Option<Range<usize>> {
    let start = ptr as usize;
    let end = start.checked_add(len as usize)?;
    (end <= memory_len).then_some(start..end)
}

/// `request_read(ptr, len) -> n`: n > 0 body bytes written at `ptr`, 0 at the end.
pub fn request_read(
    memory: &mut [u8],
    exchange: Option<&mut (dyn Exchange + '_)>,
    ptr: u32,
    len: u32,
) -> Result<i32, CallFailure> {
    let (range, exchange) = checked("request_read", "buffer", memory.len(), exchange, ptr, len)?;
    // The result is an i32: a larger buffer is filled up to what that can count.
    let cap = range.len().min(i32::MAX as usize);
    let n = exchange.read_body(&mut memory[range][..cap]).map_err(CallFailure::Exchange)?;
    if n > cap {
        return Err(CallFailure::Exchange(anyhow!("the request body reader returned {n} bytes for a buffer of {cap}")));
    }
    Ok(n as i32)
}

/// `response_head(status, ptr, len) -> 0`: the status and the header lines at `ptr`.
pub fn response_head(
    memory: &[u8],
    exchange: Option<&mut (dyn Exchange + '_)>,
    status: u32,
    ptr: u32,
    len: u32,
) -> Result<i32, CallFailure> {
    let (range, exchange) = checked("response_head", "headers", memory.len(), exchange, ptr, len)?;
    // Out of u16's range is as invalid as 0; the exchange refuses both with the number.
    let status = u16::try_from(status).unwrap_or(0);
    exchange.send_head(status, &memory[range]).map_err(CallFailure::Exchange)?;
    Ok(0)
}

/// `response_write(ptr, len) -> 0`: the body bytes at `ptr`.
pub fn response_write(
    memory: &[u8],
    exchange: Option<&mut (dyn Exchange + '_)>,
    ptr: u32,
    len: u32,
) -> Result<i32, CallFailure> {
    let (range, exchange) = checked("response_write", "chunk", memory.len(), exchange, ptr, len)?;
    exchange.write_body(&memory[range]).map_err(CallFailure::Exchange)?;
    Ok(0)
}

/// What every call checks first, in this order: its buffer lies in memory, and it is made
/// during a request.
fn checked<'a, 'e>(
    call: &str,
    buffer: &str,
    memory_len: usize,
    exchange: Option<&'a mut (dyn Exchange + 'e)>,
    ptr: u32,
    len: u32,
) -> Result<(Range<usize>, &'a mut (dyn Exchange + 'e)), CallFailure> {
    let range = guest_range(memory_len, ptr, len).ok_or_else(|| {
        abi(format!("{call}: {buffer} outside the module's memory ({len} bytes at {ptr}, memory of {memory_len})"))
    })?;
    let exchange = exchange.ok_or_else(|| abi(format!("{call} called outside a request")))?;
    Ok((range, exchange))
}

fn abi(what: String) -> CallFailure {
    CallFailure::Abi(anyhow!(what))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Serves `body` in pieces of at most `piece` bytes and keeps what it is sent.
    #[derive(Default)]
    struct Kept {
        body: Vec<u8>,
        piece: usize,
        head: Option<(u16, Vec<u8>)>,
        written: Vec<u8>,
    }

    impl Exchange for Kept {
        fn read_body(&mut self, buf: &mut [u8]) -> anyhow::Result<usize> {
            let n = buf.len().min(self.piece).min(self.body.len());
            buf[..n].copy_from_slice(&self.body[..n]);
            self.body.drain(..n);
            Ok(n)
        }
        fn send_head(&mut self, status: u16, headers: &[u8]) -> anyhow::Result<()> {
            self.head = Some((status, headers.to_vec()));
            Ok(())
        }
        fn write_body(&mut self, chunk: &[u8]) -> anyhow::Result<()> {
            self.written.extend_from_slice(chunk);
            Ok(())
        }
        fn fail(&mut self, _why: &str) {}
    }

    fn is_abi(result: Result<i32, CallFailure>) -> bool {
        matches!(result, Err(CallFailure::Abi(_)))
    }

    #[test]
    fn a_read_fills_only_its_buffer() {
        let mut memory = vec![7u8; 16];
        let mut kept = Kept { body: b"abcdef".to_vec(), piece: 4, ..Kept::default() };
        assert_eq!(request_read(&mut memory, Some(&mut kept), 2, 8).unwrap(), 4);
        assert_eq!(&memory[..8], b"\x07\x07abcd\x07\x07");
        assert_eq!(request_read(&mut memory, Some(&mut kept), 14, 2).unwrap(), 2);
        assert_eq!(&memory[14..], b"ef");
        assert_eq!(request_read(&mut memory, Some(&mut kept), 0, 16).unwrap(), 0, "the end of the body");
    }

    #[test]
    fn buffers_outside_memory_trap_even_when_the_sum_wraps() {
        let mut memory = vec![0u8; 16];
        let mut kept = Kept::default();
        assert!(is_abi(request_read(&mut memory, Some(&mut kept), 8, 9)));
        assert!(is_abi(request_read(&mut memory, Some(&mut kept), u32::MAX, 2)), "wraps to 1 in 32 bits");
        assert!(is_abi(response_write(&memory, Some(&mut kept), 17, 0)));
        assert!(is_abi(response_head(&memory, Some(&mut kept), 200, 0, u32::MAX)));
        assert_eq!(response_write(&memory, Some(&mut kept), 16, 0).unwrap(), 0, "an empty chunk at the end is inside");
    }

    #[test]
    fn calls_outside_a_request_trap() {
        let mut memory = vec![0u8; 16];
        assert!(is_abi(request_read(&mut memory, None, 0, 4)));
        assert!(is_abi(response_head(&memory, None, 200, 0, 0)));
        assert!(is_abi(response_write(&memory, None, 0, 4)));
    }

    #[test]
    fn head_and_body_are_the_guest_bytes() {
        let memory = b"x-a: 1\nhello".to_vec();
        let mut kept = Kept::default();
        assert_eq!(response_head(&memory, Some(&mut kept), 70000, 0, 6).unwrap(), 0);
        assert_eq!(
            kept.head,
            Some((0, b"x-a: 1".to_vec())),
            "a status past u16 arrives as 0, for the exchange to refuse"
        );
        response_write(&memory, Some(&mut kept), 7, 5).unwrap();
        assert_eq!(kept.written, b"hello");
    }
}
