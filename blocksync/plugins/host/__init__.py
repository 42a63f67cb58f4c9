"""The WebAssembly host: wasmtime, the host functions, lifting and lowering."""
