//! Reactor modules: initialised once, then called by the host once per HTTP request.
//!
//! A reactor (Go: `-buildmode=c-shared` with `//go:wasmexport`) exports `_initialize`
//! instead of `_start`, plus the Fabricks HTTP ABI (`docs/reactor-abi.md`). This module
//! knows wasm and WASI only: the HTTP side (hyper, the pool) hands each call an
//! [`Exchange`] — the request body to read, the response to write — and learns how the
//! call ended.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use fabricks_reactor_abi::{self as abi, CallFailure};
use wasi_common::{I32Exit, WasiCtx};
use wasmtime::{
    Caller, Extern, InstancePre, Linker, Memory, Module, Store, StoreLimits, StoreLimitsBuilder, TypedFunc,
    UpdateDeadline,
};

use crate::command::{wasi_context, Command, TrapSink};
use crate::run::trap_report;
use crate::stop::Stopped;
use crate::unrunnable::{unrunnable, Problem};
use crate::{Engine, Stopper};

pub use fabricks_reactor_abi::{Exchange, ABI_VERSION, IMPORT_MODULE};
const EXPORT_VERSION: &str = "fabricks_http_abi_version";
const EXPORT_ALLOC: &str = "fabricks_http_alloc";
const EXPORT_HANDLE: &str = "fabricks_http_handle";

/// What a module is, judged from its exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModuleKind {
    /// Exports `_start`: runs once, to its exit.
    Command,
    /// Exports `_initialize` and no `_start`: initialised, then called per request.
    Reactor,
}

/// Why a call into an instance failed; the instance must not be used again.
#[derive(Debug)]
pub enum CallError {
    /// The request's deadline passed while the module ran.
    Timeout,
    /// The task was stopped hard (the signal).
    Stopped(i32),
    /// The module called `proc_exit` (a Go panic does, with 2).
    Exited(i32),
    /// A trap, with its wasm backtrace.
    Trap(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Timeout => f.write_str("the request timed out"),
            CallError::Stopped(sig) => write!(f, "stopped by signal {sig}"),
            CallError::Exited(code) => write!(f, "the module exited with status {code}"),
            CallError::Trap(report) => write!(f, "trapped: {report}"),
        }
    }
}

/// Makes the WASI view of one instance; called once per instance, so each gets its own
/// handles on the task's stdio.
pub type CommandFactory = dyn Fn() -> Result<Command> + Send + Sync;

pub(crate) struct ReactorHost {
    wasi: WasiCtx,
    limits: StoreLimits,
    exchange: Option<Box<dyn Exchange>>,
    deadline: Option<Instant>,
}

/// A compiled reactor module, ready to be instantiated many times cheaply.
#[derive(Clone)]
pub struct Reactor {
    engine: wasmtime::Engine,
    pre: InstancePre<ReactorHost>,
    command: Arc<CommandFactory>,
    stopper: Stopper,
    memory_limit: Option<usize>,
    program: String,
}

/// An initialised instance, serving one request at a time.
pub struct ReactorInstance {
    store: Store<ReactorHost>,
    memory: Memory,
    alloc: TypedFunc<u32, u32>,
    handle: TypedFunc<u32, u32>,
    trap_sink: Arc<Mutex<TrapSink>>,
    stopper: Stopper,
}

impl Engine {
    /// Whether `module` is a command or a reactor; neither is an error saying what to build.
    pub fn module_kind(&self, module: &Module, program: &str) -> Result<ModuleKind> {
        let exports = |name| module.get_export(name).and_then(|e| e.func().cloned());
        let no_args =
            |f: Option<wasmtime::FuncType>| f.is_some_and(|f| f.params().len() == 0 && f.results().len() == 0);
        if no_args(exports("_start")) {
            return Ok(ModuleKind::Command);
        }
        if no_args(exports("_initialize")) {
            return Ok(ModuleKind::Reactor);
        }
        Err(unrunnable(
            Problem::NoEntryPoint,
            format!("{program} exports neither `_start` nor `_initialize`: it is neither a WASI command nor a reactor"),
        ))
    }
}

impl Reactor {
    /// Checks that `module` speaks this host's ABI and prepares its instantiation. Every
    /// instance gets `memory_limit` bytes of linear memory at most.
    pub fn new(
        module: &Module,
        program: &str,
        command: Arc<CommandFactory>,
        stopper: &Stopper,
        memory_limit: Option<usize>,
    ) -> Result<Self> {
        check_exports(module, program)?;
        // The module's own engine: a first start may run baseline code (`Tier::Baseline`).
        let pre = linker(module.engine())?.instantiate_pre(module).map_err(|e| {
            unrunnable(
                Problem::Imports,
                format!(
                    "{program} needs imports this host does not provide (only WASI preview 1 and the \
                     `{IMPORT_MODULE}` functions of reactor ABI version {ABI_VERSION} are available): {e:#}"
                ),
            )
        })?;
        stopper.attach(module.engine());
        Ok(Self {
            engine: module.engine().clone(),
            pre,
            command,
            stopper: stopper.clone(),
            memory_limit,
            program: program.to_string(),
        })
    }

    /// A fresh instance: instantiated from the compiled module, `_initialize` run, its ABI
    /// version checked.
    pub fn instantiate(&self) -> Result<ReactorInstance> {
        let (wasi, trap_sink) = wasi_context((self.command)()?)?;
        let mut limits = StoreLimitsBuilder::new();
        if let Some(bytes) = self.memory_limit {
            limits = limits.memory_size(bytes);
        }
        let host = ReactorHost { wasi, limits: limits.build(), exchange: None, deadline: None };
        let mut store = Store::new(&self.engine, host);
        store.limiter(|h| &mut h.limits);
        self.arm_epoch(&mut store);
        let program = &self.program;
        let instance = self.pre.instantiate(&mut store).with_context(|| format!("instantiating {program}"))?;
        let init = instance.get_typed_func::<(), ()>(&mut store, "_initialize")?;
        init.call(&mut store, ())
            .map_err(|e| anyhow::anyhow!("{}", call_error(e)))
            .with_context(|| format!("initialising {program} (its `_initialize` failed)"))?;
        let version = instance.get_typed_func::<(), u32>(&mut store, EXPORT_VERSION)?.call(&mut store, ())?;
        if version != ABI_VERSION {
            return Err(unrunnable(
                Problem::AbiMismatch,
                format!(
                    "{program} speaks Fabricks reactor ABI version {version}, this host speaks version {ABI_VERSION}"
                ),
            ));
        }
        let memory = match instance.get_export(&mut store, "memory") {
            Some(Extern::Memory(m)) => m,
            _ => bail!("{program} exports no memory named `memory`"),
        };
        Ok(ReactorInstance {
            alloc: instance.get_typed_func(&mut store, EXPORT_ALLOC)?,
            handle: instance.get_typed_func(&mut store, EXPORT_HANDLE)?,
            store,
            memory,
            trap_sink: Arc::new(Mutex::new(trap_sink)),
            stopper: self.stopper.clone(),
        })
    }

    fn arm_epoch(&self, store: &mut Store<ReactorHost>) {
        // Epoch ticks come from the server's timer and from stops: each checks both.
        store.set_epoch_deadline(1);
        let stop = self.stopper.clone();
        store.epoch_deadline_callback(move |ctx| {
            if let Some(sig) = stop.requested() {
                return Err(Stopped(sig).into());
            }
            match ctx.data().deadline {
                Some(at) if Instant::now() >= at => Err(Timeout.into()),
                _ => Ok(UpdateDeadline::Continue(1)),
            }
        });
    }

    /// Advances the epoch: every running call checks its deadline and the stop request.
    pub fn tick(&self) {
        self.engine.increment_epoch();
    }

    pub fn program(&self) -> &str {
        &self.program
    }
}

impl ReactorInstance {
    /// Serves one request: `head` is the encoded request head (see the ABI), `exchange`
    /// carries the body and the response. After an error the instance is broken: drop it.
    pub fn handle(&mut self, head: &[u8], exchange: Box<dyn Exchange>, deadline: Instant) -> Result<(), CallError> {
        // The epoch tick of a stop that came first would not be seen by this call's deadline.
        if let Some(sig) = self.stopper.requested() {
            return Err(CallError::Stopped(sig));
        }
        self.store.data_mut().exchange = Some(exchange);
        self.store.data_mut().deadline = Some(deadline);
        self.store.set_epoch_deadline(1);
        let result = self.call(head);
        self.store.data_mut().deadline = None;
        let mut exchange = self.store.data_mut().exchange.take();
        let err = match result {
            Ok(()) => return Ok(()),
            Err(e) => call_error(e),
        };
        if let Some(ex) = exchange.as_mut() {
            ex.fail(&err.to_string());
        }
        Err(err)
    }

    fn call(&mut self, head: &[u8]) -> Result<()> {
        let len = u32::try_from(head.len()).context("request head larger than 4 GiB")?;
        let ptr = self.alloc.call(&mut self.store, len)?;
        self.memory
            .write(&mut self.store, ptr as usize, head)
            .context("the module's buffer for the request head lies outside its memory")?;
        self.handle.call(&mut self.store, len)?;
        Ok(())
    }

    /// Writes a report of a failed call to the task's stderr (where `ctr` and pod logs
    /// show it).
    pub fn report(&self, what: &str) {
        if let Some(sink) = self.trap_sink.lock().unwrap().as_mut() {
            let _ = writeln!(sink, "fabricks: {what}");
        }
    }
}

fn call_error(err: anyhow::Error) -> CallError {
    if err.downcast_ref::<Timeout>().is_some() {
        return CallError::Timeout;
    }
    if let Some(Stopped(sig)) = err.downcast_ref::<Stopped>() {
        return CallError::Stopped(*sig);
    }
    if let Some(exit) = err.downcast_ref::<I32Exit>() {
        return CallError::Exited(exit.0);
    }
    CallError::Trap(trap_report(&err))
}

fn check_exports(module: &Module, program: &str) -> Result<()> {
    let func = |name| module.get_export(name).and_then(|e| e.func().cloned());
    let has = |name, params: usize, results: usize| {
        func(name).is_some_and(|f| f.params().len() == params && f.results().len() == results)
    };
    if func(EXPORT_VERSION).is_none() {
        return Err(unrunnable(
            Problem::NotHttpReactor,
            format!(
                "{program} is a reactor module (it exports `_initialize`) but not a Fabricks HTTP reactor: \
                 it lacks the export `{EXPORT_VERSION}`"
            ),
        ));
    }
    for (name, params, results) in [(EXPORT_VERSION, 0, 1), (EXPORT_ALLOC, 1, 1), (EXPORT_HANDLE, 1, 1)] {
        if !has(name, params, results) {
            return Err(unrunnable(
                Problem::AbiMismatch,
                format!(
                    "{program} lacks the reactor ABI export `{name}` ({params} parameter(s), {results} result(s)) \
                     of ABI version {ABI_VERSION}"
                ),
            ));
        }
    }
    Ok(())
}

fn linker(engine: &wasmtime::Engine) -> Result<Linker<ReactorHost>> {
    let mut linker = Linker::new(engine);
    wasi_common::sync::add_to_linker(&mut linker, |h: &mut ReactorHost| &mut h.wasi)?;
    linker.func_wrap(IMPORT_MODULE, "request_read", request_read)?;
    linker.func_wrap(IMPORT_MODULE, "response_head", response_head)?;
    linker.func_wrap(IMPORT_MODULE, "response_write", response_write)?;
    Ok(linker)
}

/// Guest memory and the host state at once, or None if the module has no `memory`.
fn memory_and_host<'a>(caller: &'a mut Caller<'_, ReactorHost>) -> Option<(&'a mut [u8], &'a mut ReactorHost)> {
    let memory = caller.get_export("memory")?.into_memory()?;
    Some(memory.data_and_store_mut(caller))
}

/// `request_read(ptr, len) -> n`: n > 0 bytes read, 0 at the end, -1 on failure.
fn request_read(mut caller: Caller<'_, ReactorHost>, ptr: u32, len: u32) -> Result<i32> {
    let Some((memory, host)) = memory_and_host(&mut caller) else { bail!("the module has no memory") };
    let result = abi::request_read(memory, host.exchange.as_deref_mut(), ptr, len);
    settle(host, result, "request body", log::Level::Debug)
}

/// `response_head(status, ptr, len) -> 0 | -1`.
fn response_head(mut caller: Caller<'_, ReactorHost>, status: u32, ptr: u32, len: u32) -> Result<i32> {
    let Some((memory, host)) = memory_and_host(&mut caller) else { bail!("the module has no memory") };
    let result = abi::response_head(memory, host.exchange.as_deref_mut(), status, ptr, len);
    // A refused head is the module's bug, not a client that left: the task's log says why.
    settle(host, result, "response head", log::Level::Warn)
}

/// `response_write(ptr, len) -> 0 | -1` (-1: the client went away).
fn response_write(mut caller: Caller<'_, ReactorHost>, ptr: u32, len: u32) -> Result<i32> {
    let Some((memory, host)) = memory_and_host(&mut caller) else { bail!("the module has no memory") };
    let result = abi::response_write(memory, host.exchange.as_deref_mut(), ptr, len);
    settle(host, result, "response body", log::Level::Debug)
}

/// A host call's result for the guest: a broken ABI traps; a failed exchange is -1 to the
/// guest, except past the deadline, which ends the call as a timeout, as it would in wasm code.
fn settle(host: &ReactorHost, result: Result<i32, CallFailure>, what: &str, level: log::Level) -> Result<i32> {
    match result {
        Ok(n) => Ok(n),
        Err(CallFailure::Abi(e)) => Err(e),
        Err(CallFailure::Exchange(_)) if host.deadline.is_some_and(|at| Instant::now() >= at) => Err(Timeout.into()),
        Err(CallFailure::Exchange(e)) => {
            log::log!(level, "{what}: {e:#}");
            Ok(-1)
        }
    }
}

/// The error a call ends with when its request's deadline passed.
#[derive(Debug)]
struct Timeout;

impl std::fmt::Display for Timeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("request deadline passed")
    }
}

impl std::error::Error for Timeout {}
