//! `concord dev` as the README tells a user to run it: the Python example
//! against it, and its nodes stopped with it whenever it is signalled.
//!
//! The example (`examples/python/mesh_instance.py`) runs with redis-py.
//! redis-py is installed into a virtualenv under `target/` on first use (a
//! fresh machine has python3 but no packages); the example asserts every
//! step itself and exits non-zero on a surprise.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::python::python_with;
use common::{ping, wait_for};

/// `concord dev` in the foreground of a child process; stopped (SIGTERM,
/// which stops its nodes) when dropped.
struct Dev(Child);

impl Dev {
    fn start(base: u16, dir: &Path) -> Dev {
        Dev(Command::new(env!("CARGO_BIN_EXE_concord"))
            .arg("dev")
            .arg("--base-port")
            .arg(base.to_string())
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start concord dev"))
    }

    /// SIGTERM, then waits for it to exit.
    fn stop(&mut self) {
        // SAFETY: kill(2) with a pid we own and a valid signal number.
        unsafe {
            libc::kill(self.0.id() as i32, libc::SIGTERM);
        }
        wait_for("concord dev to stop", Duration::from_secs(30), || {
            self.0.try_wait().ok().flatten()
        });
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            self.stop();
        }
    }
}

/// A base port whose three client ports and three peer ports are free.
fn free_base_port() -> u16 {
    wait_for("six free ports", Duration::from_secs(10), || {
        let base = common::free_port();
        let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
        (base < 55000 && (0..3).all(|i| free(base + i) && free(base + 10000 + i))).then_some(base)
    })
}

#[test]
fn the_python_mesh_instance_example_runs_against_concord_dev() {
    let python = python_with(&[("redis", "redis>=8")]);
    let dir = tempfile::tempdir().expect("temp dir");
    let base = free_base_port();
    let mut dev = Dev::start(base, &dir.path().join("dev"));
    let ports: Vec<u16> = (0..3).map(|i| base + i).collect();
    wait_for("the dev cluster to answer", Duration::from_secs(30), || {
        ports.iter().all(|p| ping(*p)).then_some(())
    });
    let nodes: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/python/mesh_instance.py");
    let out = Command::new(&python)
        .arg(&script)
        .env("CONCORD_NODES", nodes.join(","))
        .output()
        .expect("run the example");
    dev.stop();
    wait_for(
        "every node to stop with concord dev",
        Duration::from_secs(30),
        || ports.iter().all(|p| !ping(*p)).then_some(()),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the example failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.trim_end().ends_with("ok"), "{stdout}");
}

#[test]
fn a_signal_during_the_election_stops_every_node() {
    let dir = tempfile::tempdir().expect("temp dir");
    let base = free_base_port();
    let mut dev = Dev::start(base, &dir.path().join("dev"));
    let ports: Vec<u16> = (0..3).map(|i| base + i).collect();
    // As soon as the first node answers: most likely before a leader is
    // known, when concord dev is still waiting for one.
    wait_for("a node to answer", Duration::from_secs(30), || {
        ports.iter().any(|p| ping(*p)).then_some(())
    });
    dev.stop();
    wait_for("every node to stop", Duration::from_secs(30), || {
        ports.iter().all(|p| !ping(*p)).then_some(())
    });
}
