//! The outside world a toolchain talks to: programs on PATH, their runs, the environment.
//! Behind a trait so that a toolchain's decisions (which route, which prerequisite is
//! missing, what to run) are unit tests without the real SDKs.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// One run of an external program: what to start, where, with which extra variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub program: String,
    pub args: Vec<OsString>,
    pub dir: PathBuf,
    /// Set on top of this process's environment.
    pub env: Vec<(OsString, OsString)>,
}

impl Invocation {
    pub fn new(program: &str, dir: &Path) -> Self {
        Invocation { program: program.to_owned(), args: Vec::new(), dir: dir.to_owned(), env: Vec::new() }
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env.push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// `program arg arg…` for messages.
    pub fn command_line(&self) -> String {
        let mut line = self.program.clone();
        for arg in &self.args {
            line.push(' ');
            line.push_str(&arg.to_string_lossy());
        }
        line
    }

    /// The value this invocation sets for `key`, if any.
    #[cfg(test)]
    pub fn env_value(&self, key: &str) -> Option<&OsStr> {
        self.env.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_os_str())
    }
}

pub trait Tools: Sync {
    /// Where `program` is on PATH, if it is.
    fn find(&self, program: &str) -> Option<PathBuf>;
    /// Runs `invocation` to its end with stdout and stderr captured.
    fn output(&self, invocation: &Invocation) -> std::io::Result<Output>;
    /// A variable of this process's environment.
    fn var(&self, key: &str) -> Option<OsString>;
    /// This user's home directory.
    fn home(&self) -> Option<PathBuf> {
        self.var("HOME").map(PathBuf::from).filter(|p| p.is_absolute())
    }
}

/// The real machine.
pub struct System;

impl Tools for System {
    fn find(&self, program: &str) -> Option<PathBuf> {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path).map(|dir| dir.join(program)).find(|candidate| is_executable(candidate))
    }

    fn output(&self, invocation: &Invocation) -> std::io::Result<Output> {
        let mut command = Command::new(&invocation.program);
        command.args(&invocation.args).current_dir(&invocation.dir);
        for (key, value) in &invocation.env {
            command.env(key, value);
        }
        command.output()
    }

    fn var(&self, key: &str) -> Option<OsString> {
        std::env::var_os(key)
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
pub mod fake {
    //! A machine described by the test: which programs exist and what they answer.

    use super::*;
    use std::collections::HashMap;
    use std::os::unix::process::ExitStatusExt;
    use std::process::ExitStatus;
    use std::sync::Mutex;

    type Responder = Box<dyn Fn(&Invocation) -> Option<Output> + Send + Sync>;

    #[derive(Default)]
    pub struct FakeTools {
        programs: HashMap<String, PathBuf>,
        vars: HashMap<String, OsString>,
        responders: Vec<Responder>,
        pub runs: Mutex<Vec<Invocation>>,
    }

    impl FakeTools {
        pub fn new() -> Self {
            Self::default()
        }

        pub fn program(mut self, name: &str) -> Self {
            self.programs.insert(name.to_owned(), PathBuf::from(format!("/usr/bin/{name}")));
            self
        }

        pub fn var(mut self, key: &str, value: impl Into<OsString>) -> Self {
            self.vars.insert(key.to_owned(), value.into());
            self
        }

        /// Answers every run whose command line (without the program) starts with `args`.
        pub fn answer(mut self, program: &str, args: &str, status: i32, stdout: &str, stderr: &str) -> Self {
            let (program, args) = (program.to_owned(), args.to_owned());
            let output = finished(status, stdout, stderr);
            self.responders.push(Box::new(move |inv| {
                let line = inv.command_line();
                let rest = line.strip_prefix(&program)?.trim_start();
                rest.starts_with(&args).then(|| output.clone())
            }));
            self
        }

        /// Answers runs that `respond` knows, e.g. to write the files a build would.
        pub fn respond(mut self, respond: impl Fn(&Invocation) -> Option<Output> + Send + Sync + 'static) -> Self {
            self.responders.push(Box::new(respond));
            self
        }

        pub fn command_lines(&self) -> Vec<String> {
            self.runs.lock().unwrap().iter().map(Invocation::command_line).collect()
        }
    }

    pub fn finished(status: i32, stdout: &str, stderr: &str) -> Output {
        Output {
            status: ExitStatus::from_raw(status << 8),
            stdout: stdout.as_bytes().to_vec(),
            stderr: stderr.as_bytes().to_vec(),
        }
    }

    impl Tools for FakeTools {
        fn find(&self, program: &str) -> Option<PathBuf> {
            self.programs.get(program).cloned()
        }

        fn output(&self, invocation: &Invocation) -> std::io::Result<Output> {
            self.runs.lock().unwrap().push(invocation.clone());
            if !self.programs.contains_key(&invocation.program) {
                return Err(std::io::ErrorKind::NotFound.into());
            }
            // Later answers win, so a test can refine a default.
            for respond in self.responders.iter().rev() {
                if let Some(output) = respond(invocation) {
                    return Ok(output);
                }
            }
            panic!("the fake machine has no answer for `{}`", invocation.command_line())
        }

        fn var(&self, key: &str) -> Option<OsString> {
            self.vars.get(key).cloned()
        }
    }
}
