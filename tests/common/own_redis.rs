//! A redis-server of a test's own (port, directory, AOF), for tests that kill, restore or
//! fill a server: the shared dev stack is not disturbed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A redis-server of the test's own, persisting to an AOF in its own directory.
pub struct OwnRedis {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
    fsync: &'static str,
}

impl OwnRedis {
    pub fn start(fsync: &'static str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!("seatrush-redis-outage-{port}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut redis = Self {
            child: None,
            port,
            dir,
            fsync,
        };
        redis.restart();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Starts (again) on the same port and directory: a restart replays the AOF.
    pub fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--dir", self.dir.to_str().unwrap()])
            .args(["--appendonly", "yes", "--appendfsync", self.fsync])
            .args(["--save", "", "--maxmemory-policy", "noeviction"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed (the dev stack uses it)");
        self.child = Some(child);
        let until = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < until, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A copy of the server's directory as it is now (with `appendfsync always`: every write
    /// it has acknowledged so far).
    pub fn copy_data(&self) -> PathBuf {
        let copy = self.dir.with_extension("copy");
        let _ = std::fs::remove_dir_all(&copy);
        copy_dir(&self.dir, &copy);
        copy
    }

    /// Kills the server and starts it again from `copy`: Redis as it was when the copy was
    /// taken, older than what it acknowledged since (a restored snapshot, an AOF that lost
    /// its tail).
    pub fn restart_from(&mut self, copy: &Path) {
        self.kill();
        std::fs::remove_dir_all(&self.dir).unwrap();
        copy_dir(copy, &self.dir);
        self.restart();
    }

    /// SIGKILL: no shutdown, no final fsync.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_dir_all(self.dir.with_extension("copy"));
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
