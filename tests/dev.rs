//! `concord dev` as the README tells a user to run it: the mesh-instance
//! examples against it, and its nodes stopped with it whenever it is
//! signalled.
//!
//! The examples do the same steps with three client libraries:
//! `examples/python/mesh_instance.py` with redis-py, `examples/go` with
//! redigo and `examples/node` with node-redis v4. Each asserts every step
//! itself, exits non-zero on a surprise and prints `ok` last. redis-py is
//! installed into a virtualenv under `target/` on first use (a fresh machine
//! has python3 but no packages). Go, redigo, Node and node-redis come from
//! Debian's packages, installed with apt-get when missing and the test runs
//! as root (as in CI); when they cannot be installed the test fails saying
//! what is missing: it never passes without running its example.

mod common;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

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

/// Runs `cmd` to completion, killing it and failing past `timeout`. Its
/// output goes to files under `dir` (`name.out`, `name.err`), which nothing
/// has to drain while it runs.
fn run(name: &str, mut cmd: Command, dir: &Path, timeout: Duration) -> Output {
    let out = dir.join(format!("{name}.out"));
    let err = dir.join(format!("{name}.err"));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(File::create(&out).expect("create the stdout file"))
        .stderr(File::create(&err).expect("create the stderr file"))
        .spawn()
        .unwrap_or_else(|e| panic!("start {name} ({cmd:?}): {e}"));
    let read = |path: &Path| std::fs::read(path).unwrap_or_default();
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for a child") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{name} did not finish within {timeout:?}:\n{}\n{}",
                String::from_utf8_lossy(&read(&out)),
                String::from_utf8_lossy(&read(&err))
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: read(&out),
        stderr: read(&err),
    }
}

/// Starts `concord dev` on free ports, runs `example` against its three
/// nodes (named in CONCORD_NODES), stops concord dev and checks that every
/// node stopped with it. The example must exit 0 with `ok` as its last line.
fn example_runs_against_dev(name: &str, mut example: Command) {
    let dir = tempfile::tempdir().expect("temp dir");
    let base = free_base_port();
    let mut dev = Dev::start(base, &dir.path().join("dev"));
    let ports: Vec<u16> = (0..3).map(|i| base + i).collect();
    wait_for("the dev cluster to answer", Duration::from_secs(30), || {
        ports.iter().all(|p| ping(*p)).then_some(())
    });
    let nodes: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    example.env("CONCORD_NODES", nodes.join(","));
    let out = run(name, example, dir.path(), Duration::from_secs(120));
    dev.stop();
    wait_for(
        "every node to stop with concord dev",
        Duration::from_secs(30),
        || ports.iter().all(|p| !ping(*p)).then_some(()),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the {name} example failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.trim_end().ends_with("ok"), "{stdout}");
}

/// Whether `cmd` runs and exits 0.
fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Makes `ready()` hold: when it does not, installs the Debian packages
/// `wanted()` names with apt-get (as root; it waits for the dpkg lock), and
/// fails saying what is missing if that is not possible or not enough.
fn debian_packages(what: &str, ready: impl Fn() -> bool, wanted: impl Fn() -> Vec<&'static str>) {
    // One test at a time runs apt-get.
    static APT: Mutex<()> = Mutex::new(());
    let _guard = APT.lock().unwrap_or_else(|e| e.into_inner());
    if ready() {
        return;
    }
    let packages = wanted();
    let list = packages.join(" ");
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    assert!(
        root,
        "{what} is missing, and only root can install it: apt-get install -y {list}"
    );
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(["-o", "DPkg::Lock::Timeout=300"])
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| {
                panic!("{what} is missing and apt-get cannot run ({e}): install {list}")
            })
    };
    let mut install = vec!["install", "-y", "-q", "--no-install-recommends"];
    install.extend(&packages);
    // Package lists may be missing or stale (a fresh container has none):
    // update them and try again.
    let mut out = apt(&install);
    if !out.status.success() {
        let update = apt(&["update", "-q"]);
        out = if update.status.success() {
            apt(&install)
        } else {
            update
        };
    }
    assert!(
        out.status.success(),
        "{what} is missing and apt-get could not install {list}:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        ready(),
        "{what} is still missing after apt-get install {list}"
    );
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

#[test]
fn the_python_mesh_instance_example_runs_against_concord_dev() {
    let python = python_with(&[("redis", "redis>=8")]);
    let mut example = Command::new(&python);
    example.arg(examples().join("python/mesh_instance.py"));
    example_runs_against_dev("python", example);
}

/// Where golang-github-gomodule-redigo-dev puts redigo; examples/go/go.mod
/// replaces the module with it.
const DEBIAN_REDIGO: &str = "/usr/share/gocode/src/github.com/gomodule/redigo";

#[test]
fn the_go_mesh_instance_example_runs_against_concord_dev() {
    let go = || succeeds(Command::new("go").arg("version"));
    let redigo = || Path::new(DEBIAN_REDIGO).join("redis/redis.go").is_file();
    debian_packages(
        "Go with redigo (the Go example's toolchain)",
        || go() && redigo(),
        || {
            let mut packages = vec![];
            if !go() {
                packages.push("golang-go");
            }
            if !redigo() {
                packages.push("golang-github-gomodule-redigo-dev");
            }
            packages
        },
    );
    // Built offline from Debian's redigo (GOPROXY=off: nothing fetched),
    // with a build cache kept under target/ between runs.
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    let build = tempfile::tempdir().expect("temp dir");
    let binary = build.path().join("mesh_instance");
    let mut go_build = Command::new("go");
    go_build
        .args(["build", "-o"])
        .arg(&binary)
        .arg(".")
        .current_dir(examples().join("go"))
        .env("GOCACHE", target.join("go-build"))
        .env("GOPROXY", "off");
    let built = run("go-build", go_build, build.path(), Duration::from_secs(300));
    assert!(
        built.status.success(),
        "go build of examples/go failed:\n{}\n{}",
        String::from_utf8_lossy(&built.stdout),
        String::from_utf8_lossy(&built.stderr)
    );
    example_runs_against_dev("go", Command::new(&binary));
}

/// Where node-redis is installed by Debian's node-redis. Debian's Node looks
/// there by itself; other builds (NodeSource's) need NODE_PATH.
const DEBIAN_NODE_MODULES: &str = "/usr/share/nodejs";

#[test]
fn the_node_mesh_instance_example_runs_against_concord_dev() {
    let node_path = match std::env::var("NODE_PATH") {
        Ok(p) if !p.is_empty() => format!("{DEBIAN_NODE_MODULES}:{p}"),
        _ => DEBIAN_NODE_MODULES.to_string(),
    };
    let dir = examples().join("node");
    let node = || succeeds(Command::new("node").arg("--version"));
    // The example is written for node-redis v4 (createClient + sendCommand);
    // this finds `redis` as the example will.
    let redis_v4 = || {
        succeeds(
            Command::new("node")
                .args([
                    "-e",
                    "process.exit(/^4\\./.test(require('redis/package.json').version) ? 0 : 1)",
                ])
                .current_dir(&dir)
                .env("NODE_PATH", &node_path),
        )
    };
    debian_packages(
        "Node with node-redis v4 (the Node example's toolchain)",
        || node() && redis_v4(),
        || {
            let mut packages = vec![];
            if !node() {
                packages.push("nodejs");
            }
            packages.push("node-redis");
            packages
        },
    );
    let mut example = Command::new("node");
    example
        .arg("mesh_instance.js")
        .current_dir(&dir)
        .env("NODE_PATH", &node_path);
    example_runs_against_dev("node", example);
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
