//! Benchmark (not a test): hanode's SHA-256 verifier against `sha256sum`, and download+verify
//! from a loopback server, counting how many bytes the process read to do it.
//! Run with `scripts/bench-verify` (or `cargo bench --bench verify -- FILE`).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Instant;

fn rchar() -> u64 {
    let io = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
    io.lines().find_map(|l| l.strip_prefix("rchar: ")).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

fn main() {
    let path = std::env::args().skip(1).find(|a| !a.starts_with('-')).expect("usage: verify FILE");
    let len = std::fs::metadata(&path).unwrap().len();
    let gib = len as f64 / (1u64 << 30) as f64;

    // 1. hashing a file
    let mut best = f64::MAX;
    let mut hex = String::new();
    for _ in 0..3 {
        let t = Instant::now();
        hex = hanode::download::sha256_file(std::path::Path::new(&path)).unwrap();
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!("hanode sha256: {hex} {:.3} s best of 3, {:.0} MiB/s", best, len as f64 / best / 1048576.0);

    // 2. download + verify from loopback: the body is streamed once through the hasher.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/big", listener.local_addr().unwrap());
    let served = path.clone();
    std::thread::spawn(move || {
        let (mut c, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4096];
        let _ = c.read(&mut buf);
        write!(c, "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n").unwrap();
        // Plain read()s (not sendfile), so the server's one read of the file shows in rchar.
        let mut f = std::fs::File::open(served).unwrap();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            c.write_all(&buf[..n]).unwrap();
        }
    });
    let dir = tempfile::tempdir_in(std::path::Path::new(&path).parent().unwrap()).unwrap();
    let before = rchar();
    let t = Instant::now();
    hanode::download::fetch_verified(&hanode::download::Source::Url(url), &hex, &dir.path().join("big"), "big")
        .unwrap();
    let secs = t.elapsed().as_secs_f64();
    // rchar counts read()s of files (socket recv()s do not count). The server thread is in this
    // process: its one read of the source is 1.00x. A verifier that re-read the downloaded
    // file would add another 1.00x, as the control below shows.
    let read = rchar() - before;
    let before_control = rchar();
    hanode::download::sha256_file(&dir.path().join("big")).unwrap();
    let control = rchar() - before_control;
    println!(
        "download+verify: {:.3} s, {:.0} MiB/s; file bytes read {:.2}x the size (the server's read of the source; a second pass over the download would add 1.00x: control re-hash read {:.2}x)",
        secs,
        len as f64 / secs / 1048576.0,
        read as f64 / len as f64,
        control as f64 / len as f64
    );
    println!("file size {gib:.2} GiB");
}
