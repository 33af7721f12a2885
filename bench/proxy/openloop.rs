//! Open-loop HTTP/1.1 load at a fixed rate, for latency under a load that does not slow down
//! when the server does (what wrk2 does; wrk2 is not packaged in Debian).
//!
//! A scheduler thread releases one request every 1/rate seconds whether or not earlier
//! ones have finished; a pool of threads, each with one keep-alive connection, sends them.
//! Latency runs from the moment a request is released to its last response byte, so a
//! stalled server is charged for the queue that builds up behind it (no coordinated
//! omission). Plain std, blocking sockets: no async runtime's timer granularity (1 ms in
//! tokio) in the measurement, and it builds with `rustc` alone in a second.
//!
//! Usage: openloop URL RATE SECONDS [CONNS] [WARMUP_SECONDS] [HOST]
//! (HOST: the Host header to send, when it isn't the URL's, e.g. a service name a sidecar
//! routes by while the connection goes to the sidecar's port)
//! Prints `key value` lines: requests, errors, all_requests (with warm-up), rps, p50_us, p90_us, p99_us, p999_us, max_us,
//! and late_p99_us (how late the scheduler released requests: if it is large, the numbers
//! measure the client, not the server).
//! With OPENLOOP_SAMPLES=FILE it also writes every counted request's latency (µs, one per
//! line) to FILE, so runs interleaved with other targets' runs can be pooled.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

struct Args {
    host: String,
    path: String,
    rate: f64,
    seconds: f64,
    conns: usize,
    warmup: f64,
    host_header: String,
}

fn parse_args() -> Result<Args, String> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    if a.len() < 3 {
        return Err("usage: openloop URL RATE SECONDS [CONNS] [WARMUP_SECONDS] [HOST]".into());
    }
    let rest = a[0]
        .strip_prefix("http://")
        .ok_or("only http:// URLs are supported")?;
    let (host, path) = match rest.find('/') {
        Some(i) => (rest[..i].to_string(), rest[i..].to_string()),
        None => (rest.to_string(), "/".to_string()),
    };
    let num = |i: usize, what: &str, default: f64| -> Result<f64, String> {
        a.get(i)
            .map_or(Ok(default), |s| s.parse::<f64>())
            .map_err(|e| format!("{what}: {e}"))
    };
    let rate = num(1, "RATE", 0.0)?;
    let seconds = num(2, "SECONDS", 0.0)?;
    if rate <= 0.0 || seconds <= 0.0 {
        return Err("RATE and SECONDS must be positive".into());
    }
    let host_header = a.get(5).cloned().unwrap_or_else(|| host.clone());
    Ok(Args {
        host_header,
        host,
        path,
        rate,
        seconds,
        conns: num(3, "CONNS", 32.0)? as usize,
        warmup: num(4, "WARMUP_SECONDS", 1.0)?,
    })
}

/// One keep-alive connection; reconnects after an error or `Connection: close`.
struct Conn {
    host: String,
    request: Vec<u8>,
    stream: Option<BufReader<TcpStream>>,
}

impl Conn {
    fn open(&mut self) -> std::io::Result<&mut BufReader<TcpStream>> {
        if self.stream.is_none() {
            let s = TcpStream::connect(&self.host)?;
            s.set_nodelay(true)?;
            // Bounds every run even if the server hangs.
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            self.stream = Some(BufReader::with_capacity(16 * 1024, s));
        }
        self.stream
            .as_mut()
            .ok_or_else(|| std::io::Error::other("no connection"))
    }

    /// Sends the request and reads the whole response; `Ok(true)` for a 2xx.
    fn exchange(&mut self) -> std::io::Result<bool> {
        let request = self.request.clone();
        let r = self.open()?;
        r.get_mut().write_all(&request)?;
        let mut line = String::new();
        r.read_line(&mut line)?;
        let ok = line.split(' ').nth(1).is_some_and(|c| c.starts_with('2'));
        let (mut length, mut chunked, mut close) = (0usize, false, false);
        loop {
            line.clear();
            if r.read_line(&mut line)? == 0 {
                return Err(std::io::Error::other("eof in headers"));
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let Some((k, v)) = l.split_once(':') else {
                continue;
            };
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            match k.as_str() {
                "content-length" => length = v.parse().unwrap_or(0),
                "transfer-encoding" => chunked = v.eq_ignore_ascii_case("chunked"),
                "connection" => close = v.eq_ignore_ascii_case("close"),
                _ => {}
            }
        }
        if chunked {
            loop {
                line.clear();
                r.read_line(&mut line)?;
                let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                    .map_err(|e| std::io::Error::other(format!("chunk size: {e}")))?;
                skip(r, size + 2)?;
                if size == 0 {
                    break;
                }
            }
        } else {
            skip(r, length)?;
        }
        if close {
            self.stream = None;
        }
        Ok(ok)
    }
}

fn skip(r: &mut BufReader<TcpStream>, n: usize) -> std::io::Result<()> {
    let copied = std::io::copy(&mut r.by_ref().take(n as u64), &mut std::io::sink())?;
    if copied as usize == n {
        Ok(())
    } else {
        Err(std::io::Error::other("eof in body"))
    }
}

/// Latency in µs and scheduler lateness in µs of one counted request.
type Sample = (u32, u32);

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("openloop: {e}");
            return ExitCode::from(2);
        }
    };
    let (tx, rx) = mpsc::channel::<(Instant, Instant, bool)>();
    let rx = Arc::new(Mutex::new(rx));
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: keel-openloop\r\n\r\n",
        args.path, args.host_header
    )
    .into_bytes();
    let workers: Vec<_> = (0..args.conns.max(1))
        .map(|_| {
            let rx = rx.clone();
            let mut conn = Conn {
                host: args.host.clone(),
                request: request.clone(),
                stream: None,
            };
            thread::spawn(move || {
                let mut samples: Vec<Sample> = Vec::new();
                let mut errors = 0u64;
                let mut all = 0u64;
                loop {
                    let job = match rx.lock() {
                        Ok(guard) => guard.recv(),
                        Err(_) => break,
                    };
                    let Ok((intended, released, counted)) = job else {
                        break;
                    };
                    let ok = conn.exchange().unwrap_or_else(|_| {
                        conn.stream = None;
                        false
                    });
                    let done = Instant::now();
                    all += u64::from(ok);
                    if !counted {
                        continue;
                    }
                    if ok {
                        let us = |d: Duration| d.as_micros().min(u128::from(u32::MAX)) as u32;
                        samples.push((us(done - released), us(released - intended)));
                    } else {
                        errors += 1;
                    }
                }
                (samples, errors, all)
            })
        })
        .collect();

    let period = Duration::from_secs_f64(1.0 / args.rate);
    let start = Instant::now() + Duration::from_millis(10);
    let measured_from = start + Duration::from_secs_f64(args.warmup);
    let end = measured_from + Duration::from_secs_f64(args.seconds);
    let mut i: u32 = 0;
    loop {
        let intended = start + period * i;
        if intended >= end {
            break;
        }
        let now = Instant::now();
        if intended > now {
            thread::sleep(intended - now);
        }
        if tx
            .send((intended, Instant::now(), intended >= measured_from))
            .is_err()
        {
            break;
        }
        i += 1;
    }
    drop(tx);
    let mut samples = Vec::new();
    let (mut errors, mut all) = (0, 0);
    for w in workers {
        if let Ok((s, e, a)) = w.join() {
            samples.extend(s);
            errors += e;
            all += a;
        }
    }
    let elapsed = end.saturating_duration_since(measured_from).as_secs_f64();
    let mut lat: Vec<u32> = samples.iter().map(|s| s.0).collect();
    let mut late: Vec<u32> = samples.iter().map(|s| s.1).collect();
    lat.sort_unstable();
    late.sort_unstable();
    let pct = |v: &[u32], p: f64| -> u32 {
        if v.is_empty() {
            return 0;
        }
        let idx = ((p / 100.0) * v.len() as f64).ceil() as usize;
        v[idx.clamp(1, v.len()) - 1]
    };
    println!("requests {}", lat.len());
    println!("errors {errors}");
    // Including the warm-up: what the server's CPU time over the whole run is divided by.
    println!("all_requests {all}");
    println!("rps {:.1}", lat.len() as f64 / elapsed);
    for (name, p) in [("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p999", 99.9)] {
        println!("{name}_us {}", pct(&lat, p));
    }
    println!("max_us {}", lat.last().copied().unwrap_or(0));
    println!("late_p99_us {}", pct(&late, 99.0));
    if let Some(path) = std::env::var_os("OPENLOOP_SAMPLES") {
        let text: String = lat.iter().map(|us| format!("{us}\n")).collect();
        if let Err(e) = std::fs::write(&path, text) {
            eprintln!("openloop: cannot write {}: {e}", path.to_string_lossy());
            return ExitCode::FAILURE;
        }
    }
    if lat.is_empty() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
