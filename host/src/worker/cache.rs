//! The worker's compiled-module cache: each module is compiled once per metering variant the
//! host asks for, and kept by its hash for the life of the worker.

use std::collections::HashMap;

use crate::engine::Metering;
use crate::wire::{Code, ModuleId, ModuleKind, WorkerSettings};

use super::runner::{Compiled, Runner};

/// The modules this worker has been sent, compiled for the variants it was asked for.
pub(crate) struct ModuleCache {
    runner: Runner,
    modules: HashMap<(ModuleId, Metering), Result<Compiled, String>>,
}

impl ModuleCache {
    pub(crate) fn new(settings: WorkerSettings) -> Result<Self, String> {
        Ok(ModuleCache {
            runner: Runner::new(settings)?,
            modules: HashMap::new(),
        })
    }

    /// Compiles and keeps a module; a module already present is not compiled again.
    pub(crate) fn load(&mut self, id: ModuleId, kind: ModuleKind, code: &Code, metering: Metering) {
        if !self.modules.contains_key(&(id, metering)) {
            let compiled = self.runner.compile(kind, code, metering);
            self.modules.insert((id, metering), compiled);
        }
    }

    /// Keeps a module whose code the host sent as a descriptor (`file`, or why it did not
    /// come), mapped rather than copied; a module already present is not loaded again.
    pub(crate) fn load_file(
        &mut self,
        id: ModuleId,
        kind: ModuleKind,
        file: Result<std::fs::File, String>,
        metering: Metering,
    ) {
        if !self.modules.contains_key(&(id, metering)) {
            let compiled = file.and_then(|file| self.runner.load_file(kind, file, metering));
            self.modules.insert((id, metering), compiled);
        }
    }

    /// The compiled module, or why it could not be compiled (or that it was never sent).
    pub(crate) fn get(&self, id: &ModuleId, metering: Metering) -> Result<&Compiled, String> {
        match self.modules.get(&(*id, metering)) {
            Some(Ok(compiled)) => Ok(compiled),
            Some(Err(reason)) => Err(reason.clone()),
            None => Err("the module was never loaded into this worker".to_string()),
        }
    }

    pub(crate) fn runner(&self) -> &Runner {
        &self.runner
    }
}
