//! Telling wasm binaries apart by their header, as the shim's engine does.

/// What a wasm binary is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WasmKind {
    /// A core module (`\0asm`, version 1): WASI preview 1.
    Module,
    /// A component (`\0asm`, layer 1): WASI preview 2.
    Component,
}

/// Image config label recording what the image's wasm binary is (informational: the shim
/// reads the binary's header).
pub const LABEL_WASM_KIND: &str = "fabricks.io/wasm-kind";

impl WasmKind {
    /// `Some` for a wasm binary, by its 8-byte preamble: magic, a 16-bit version, a 16-bit
    /// layer (0 for core modules, 1 for components).
    pub fn of(bytes: &[u8]) -> Option<WasmKind> {
        let header = bytes.get(..8)?;
        if &header[..4] != b"\0asm" {
            return None;
        }
        match u16::from_le_bytes([header[6], header[7]]) {
            0 => Some(WasmKind::Module),
            1 => Some(WasmKind::Component),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            WasmKind::Module => "module",
            WasmKind::Component => "component",
        }
    }
}

impl std::fmt::Display for WasmKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modules_and_components_are_told_by_their_layer_field() {
        assert_eq!(WasmKind::of(b"\0asm\x01\0\0\0rest"), Some(WasmKind::Module));
        assert_eq!(WasmKind::of(b"\0asm\x0d\0\x01\0"), Some(WasmKind::Component));
        assert_eq!(WasmKind::of(b"\0asm\x01\0\x07\0"), None);
        assert_eq!(WasmKind::of(b"\0asm"), None);
        assert_eq!(WasmKind::of(b"\x7fELF\x02\x01\x01\0"), None);
    }
}
