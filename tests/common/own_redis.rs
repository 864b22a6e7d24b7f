//! A redis-server of a test's own (port, directory, AOF), for tests that kill, restore or
//! fill a server: the shared dev stack is not disturbed.

use std::path::PathBuf;
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
    }
}
