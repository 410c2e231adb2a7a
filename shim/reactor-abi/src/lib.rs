//! The host side of the Fabricks reactor ABI (`docs/reactor-abi.md`), apart from any engine:
//! the request head the host encodes, the response head the guest sends, and the bodies of
//! the host functions a reactor imports, on the guest's memory as a byte slice. The engine
//! hands these functions the memory; keeping them free of it lets them be fuzzed as they
//! are (`test-cluster/fuzz`).

mod calls;
mod head;

pub use calls::{guest_range, request_read, response_head, response_write, CallFailure};
pub use head::{encode_head, response_headers};

/// The version of the request/response ABI this host speaks.
pub const ABI_VERSION: u32 = 1;
/// The import module of the host functions a reactor calls.
pub const IMPORT_MODULE: &str = "fabricks_http";

/// One request as the module sees it, from the host's side: where the body comes from and
/// the response goes. Errors mean the client went away (or the request timed out); the
/// guest is told and may carry on.
pub trait Exchange: Send {
    /// Reads request body bytes into `buf`; 0 at the end of the body.
    fn read_body(&mut self, buf: &mut [u8]) -> anyhow::Result<usize>;
    /// The status and header lines (`Name: value\n`…), once, before any body.
    fn send_head(&mut self, status: u16, headers: &[u8]) -> anyhow::Result<()>;
    fn write_body(&mut self, chunk: &[u8]) -> anyhow::Result<()>;
    /// The call failed: whatever was sent of the response must not look complete.
    fn fail(&mut self, why: &str);
}
