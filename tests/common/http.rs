//! A small HTTP/1.1 file server on loopback whose misbehaviour a test can choose.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    None,
    /// Answer this status to the next `n` requests.
    Status(u16, u32),
    /// Announce the full length, send half, close: the next `n` requests.
    Truncate(u32),
    /// Send the headers and a little, then go silent for this long.
    Stall(Duration),
    /// Send the body in 8 pieces with this pause between them.
    Slow(Duration),
    /// Send no Content-Length: the body ends when the connection closes.
    Unannounced,
}

#[derive(Default)]
struct State {
    fault: Option<Fault>,
    hits: HashMap<String, u32>,
}

pub struct Server {
    pub url: String,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    addr: std::net::SocketAddr,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Serves the files of `dir` by name.
    pub fn start(dir: PathBuf) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if sp.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (st, dir) = (st.clone(), dir.clone());
                std::thread::spawn(move || {
                    let _ = serve(conn, &dir, &st);
                });
            }
        });
        Server { url: format!("http://{addr}"), state, stop, addr, thread: Some(thread) }
    }

    pub fn set_fault(&self, fault: Fault) {
        self.state.lock().unwrap().fault = Some(fault);
    }

    /// Requests for `/name` so far.
    pub fn hits(&self, name: &str) -> u32 {
        *self.state.lock().unwrap().hits.get(&format!("/{name}")).unwrap_or(&0)
    }

    pub fn total_hits(&self) -> u32 {
        self.state.lock().unwrap().hits.values().sum()
    }

    /// Stops listening: later connections are refused.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(mut conn: TcpStream, dir: &std::path::Path, state: &Mutex<State>) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" {
            break;
        }
    }
    let fault = {
        let mut st = state.lock().unwrap();
        *st.hits.entry(path.clone()).or_default() += 1;
        let f = st.fault.unwrap_or(Fault::None);
        // Count down the faults that last a number of requests.
        st.fault = match f {
            Fault::Status(c, n) if n > 1 => Some(Fault::Status(c, n - 1)),
            Fault::Truncate(n) if n > 1 => Some(Fault::Truncate(n - 1)),
            Fault::Status(..) | Fault::Truncate(_) => None,
            other => Some(other),
        };
        f
    };
    if let Fault::Status(code, _) = fault {
        return write!(conn, "HTTP/1.1 {code} Fault\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    }
    let file = dir.join(path.trim_start_matches('/'));
    let mut body = Vec::new();
    if path.contains("..") || std::fs::File::open(&file).and_then(|mut f| f.read_to_end(&mut body)).is_err() {
        return write!(conn, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    }
    if fault == Fault::Unannounced {
        write!(conn, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")?;
    } else {
        write!(conn, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())?;
    }
    match fault {
        Fault::Truncate(_) => conn.write_all(&body[..body.len() / 2]),
        Fault::Stall(d) => {
            conn.write_all(&body[..body.len().min(1024)])?;
            std::thread::sleep(d);
            Ok(())
        }
        Fault::Slow(d) => {
            for chunk in body.chunks(body.len().div_ceil(8).max(1)) {
                conn.write_all(chunk)?;
                conn.flush()?;
                std::thread::sleep(d);
            }
            Ok(())
        }
        _ => conn.write_all(&body),
    }
}
