//! The reactor's host functions on guest memory, with the pointers, lengths and statuses a
//! hostile module could pass. A buffer outside memory, or a call outside a request, traps;
//! any other call touches exactly its buffer: a read writes the body's next bytes there and
//! nothing else, a write sends exactly the bytes there. The response head goes through the
//! real header parser; only the client side (hyper) is replaced, by a body held in memory.

#![no_main]

use fabricks_reactor_abi::{
    guest_range, request_read, response_head, response_headers, response_write, CallFailure, Exchange,
};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    memory: Vec<u8>,
    body: Vec<Vec<u8>>,
    in_request: bool,
    calls: Vec<Call>,
}

/// Offsets near memory's size are the interesting ones; `far` reaches the top of the
/// 32-bit space, where `ptr + len` wraps.
#[derive(Arbitrary, Debug)]
enum Call {
    Read { ptr: u16, len: u16, far: bool },
    Head { status: u32, ptr: u16, len: u16, far: bool },
    Write { ptr: u16, len: u16, far: bool },
}

fn wide(x: u16, far: bool) -> u32 {
    if far {
        u32::MAX - u32::from(x)
    } else {
        u32::from(x)
    }
}

/// The request body in the pieces a client sent it, and what the module answered.
#[derive(Default)]
struct Held {
    pieces: Vec<Vec<u8>>,
    head: Option<u16>,
    written: Vec<u8>,
}

impl Exchange for Held {
    fn read_body(&mut self, buf: &mut [u8]) -> anyhow::Result<usize> {
        let Some(piece) = self.pieces.first_mut() else { return Ok(0) };
        let n = buf.len().min(piece.len());
        buf[..n].copy_from_slice(&piece[..n]);
        piece.drain(..n);
        if piece.is_empty() {
            self.pieces.remove(0);
        }
        Ok(n)
    }
    fn send_head(&mut self, status: u16, headers: &[u8]) -> anyhow::Result<()> {
        anyhow::ensure!(self.head.is_none(), "the head twice");
        anyhow::ensure!((200..1000).contains(&status), "invalid status {status}");
        response_headers(headers)?;
        self.head = Some(status);
        Ok(())
    }
    fn write_body(&mut self, chunk: &[u8]) -> anyhow::Result<()> {
        anyhow::ensure!(self.head.is_some(), "body before the head");
        self.written.extend_from_slice(chunk);
        Ok(())
    }
    fn fail(&mut self, _why: &str) {}
}

fuzz_target!(|input: Input| {
    let mut memory = input.memory;
    memory.truncate(1 << 16);
    let pieces: Vec<Vec<u8>> = input.body.into_iter().filter(|p| !p.is_empty()).collect();
    let mut body: Vec<u8> = pieces.concat();
    let mut held = Held { pieces, ..Held::default() };
    for call in input.calls.into_iter().take(64) {
        let (ptr, len) = match call {
            Call::Read { ptr, len, far } | Call::Head { ptr, len, far, .. } | Call::Write { ptr, len, far } => {
                (wide(ptr, far), u32::from(len))
            }
        };
        let range = guest_range(memory.len(), ptr, len);
        let before = memory.clone();
        let written_before = held.written.len();
        let exchange = input.in_request.then_some(&mut held as &mut dyn Exchange);
        let result = match call {
            Call::Read { .. } => request_read(&mut memory, exchange, ptr, len),
            Call::Head { status, .. } => response_head(&memory, exchange, status, ptr, len),
            Call::Write { .. } => response_write(&memory, exchange, ptr, len),
        };
        let Some(range) = range.filter(|_| input.in_request) else {
            assert!(matches!(result, Err(CallFailure::Abi(_))), "{call:?} outside memory or a request must trap");
            assert_eq!(memory, before, "a trapping call changed memory");
            continue;
        };
        assert!(!matches!(result, Err(CallFailure::Abi(_))), "{call:?} inside memory trapped");
        match call {
            Call::Read { .. } => {
                let n = *result.as_ref().expect("reading a held body cannot fail") as usize;
                assert!(n <= range.len());
                let expected: Vec<u8> = body.drain(..n).collect();
                assert_eq!(&memory[range.start..range.start + n], &expected[..]);
                assert_eq!(&memory[..range.start], &before[..range.start]);
                assert_eq!(&memory[range.start + n..], &before[range.start + n..]);
            }
            Call::Head { .. } | Call::Write { .. } => assert_eq!(memory, before, "{call:?} changed memory"),
        }
        if let (Call::Write { .. }, Ok(0)) = (&call, &result) {
            assert_eq!(&held.written[written_before..], &memory[range], "the bytes sent are the guest's");
        }
    }
});
