//! The Python the client-library tests run: a virtualenv under `target/`
//! (a fresh machine has python3 but no packages), created on first use,
//! with the packages each test asks for installed from PyPI.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// One test at a time creates the virtualenv or installs into it.
static VENV: Mutex<()> = Mutex::new(());

/// The virtualenv's python with every `(module, requirement)` importable.
pub fn python_with(packages: &[(&str, &str)]) -> PathBuf {
    let _guard = VENV.lock().unwrap_or_else(|e| e.into_inner());
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/python-venv");
    let python = venv.join("bin/python");
    let importable = |module: &str| {
        Command::new(&python)
            .args(["-c", &format!("import {module}")])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !python.exists() {
        let created = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .expect("python3 is needed for the client-library tests");
        assert!(created.success(), "python3 -m venv failed");
    }
    let missing: Vec<&str> = packages
        .iter()
        .filter(|(module, _)| !importable(module))
        .map(|(_, requirement)| *requirement)
        .collect();
    if !missing.is_empty() {
        let installed = Command::new(&python)
            .args(["-m", "pip", "install", "--quiet"])
            .args(&missing)
            .status()
            .expect("run pip");
        assert!(installed.success(), "pip install {missing:?} failed");
    }
    for (module, _) in packages {
        assert!(
            importable(module),
            "{module} is not importable after install"
        );
    }
    python
}
