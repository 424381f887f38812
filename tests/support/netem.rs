//! Link emulation for [`Net`](crate::netns::Net) hosts: delay, jitter and loss, per direction
//! between any two hosts, applied by a switch in user space.
//!
//! The kernels these tests run on may lack `sch_netem` (`tc qdisc ... netem` then fails with
//! "Specified qdisc kind is unknown"), so the switch of an emulated net is not a kernel bridge
//! but a thread of the test process: it holds one `AF_PACKET` socket per switch port (the
//! switch side of each host's veth), learns which MAC address sits behind which port, and
//! forwards every Ethernet frame to its port (broadcasts and unknown destinations to every
//! other port), after the [`Impairment`] set for that (source host, destination host) pair:
//! dropped with its loss probability, or held for its delay plus a uniform jitter in
//! `[-jitter, +jitter]`. This is what `tc qdisc add dev <host veth> root netem delay 2ms 1ms
//! loss 1%` does to the host's egress, with two differences: the impairment can differ per
//! destination (asymmetric loss between two groups), and jittered frames may be reordered
//! (netem reorders too, unless told not to).
//!
//! Frames keep their checksum offload state: the sockets use `PACKET_VNET_HDR`, so a frame
//! read with a partial checksum (veths offload checksums) is written with the same header and
//! the kernel completes it, as a bridge would. The nodes see a plain Ethernet segment.
//!
//! The only `unsafe` code of the workspace outside its dependencies is here: raw packet
//! sockets and `setns` have no safe wrapper among the workspace's dependencies. Each block is
//! one system call on a descriptor this module owns.
#![allow(unsafe_code)]

use std::collections::{BinaryHeap, HashMap};
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What happens to frames from one host to another: each is dropped with probability
/// `loss`, otherwise delivered after `delay` +/- a uniform `jitter`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Impairment {
    /// Mean one-way delay added to every frame.
    pub delay: Duration,
    /// Each frame's delay is `delay` plus a uniform draw in `[-jitter, +jitter]` (at least 0).
    pub jitter: Duration,
    /// Probability (0 to 1) that a frame is dropped.
    pub loss: f64,
}

impl Impairment {
    /// No delay, no loss.
    pub const NONE: Impairment = Impairment {
        delay: Duration::ZERO,
        jitter: Duration::ZERO,
        loss: 0.0,
    };

    /// `delay` +/- `jitter` (milliseconds) and `loss` in percent, as `tc netem delay 2ms 1ms
    /// loss 1%` writes it.
    pub fn netem(delay_ms: f64, jitter_ms: f64, loss_percent: f64) -> Impairment {
        Impairment {
            delay: Duration::from_secs_f64(delay_ms / 1e3),
            jitter: Duration::from_secs_f64(jitter_ms / 1e3),
            loss: loss_percent / 100.0,
        }
    }
}

/// Frame counts of a switch since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SwitchStats {
    /// Frames read from a port.
    pub received: u64,
    /// Frame copies delivered to a port (a flooded frame counts once per port).
    pub delivered: u64,
    /// Frame copies dropped by an impairment's loss.
    pub dropped: u64,
}

#[derive(Default)]
struct Counters {
    received: AtomicU64,
    delivered: AtomicU64,
    dropped: AtomicU64,
}

/// The impairment of every (from, to) pair of hosts, row `from`, column `to`.
type Matrix = Vec<Vec<Impairment>>;

/// A running user-space switch; dropping it stops the thread.
pub(crate) struct Switch {
    rules: Arc<Mutex<Matrix>>,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Switch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Switch")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Switch {
    /// Starts the switch in network namespace `netns` over the interfaces `ports` (port `i`
    /// leads to host `i`). Returns once every socket is bound.
    pub(crate) fn start(netns: &str, ports: Vec<String>) -> Result<Switch, String> {
        let n = ports.len();
        let rules = Arc::new(Mutex::new(vec![vec![Impairment::NONE; n]; n]));
        let counters = Arc::new(Counters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let netns = netns.to_owned();
        let thread = std::thread::Builder::new()
            .name(format!("switch-{netns}"))
            .spawn({
                let (rules, counters, stop) = (rules.clone(), counters.clone(), stop.clone());
                move || {
                    // setns changes only this thread's namespace: the sockets live in the
                    // switch namespace, the rest of the process is untouched.
                    let sockets = enter(&netns).and_then(|()| {
                        ports
                            .iter()
                            .map(|p| open_port(p))
                            .collect::<Result<Vec<_>, String>>()
                    });
                    match sockets {
                        Ok(sockets) => {
                            let _ = ready_tx.send(Ok(()));
                            run(&sockets, &rules, &counters, &stop);
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                        }
                    }
                }
            })
            .map_err(|e| format!("spawn switch thread: {e}"))?;
        let mut switch = Switch {
            rules,
            counters,
            stop,
            thread: Some(thread),
        };
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(switch),
            Ok(Err(e)) => Err(e),
            Err(_) => {
                switch.thread.take().map(JoinHandle::join);
                Err("the switch thread ended before it was ready".into())
            }
        }
    }

    /// Sets the impairment of frames from each host in `from` to each host in `to`.
    pub(crate) fn set(&self, from: &[usize], to: &[usize], imp: Impairment) {
        let mut rules = self.rules.lock().unwrap();
        for &a in from {
            for &b in to {
                rules[a][b] = imp;
            }
        }
    }

    pub(crate) fn stats(&self) -> SwitchStats {
        SwitchStats {
            received: self.counters.received.load(Ordering::Relaxed),
            delivered: self.counters.delivered.load(Ordering::Relaxed),
            dropped: self.counters.dropped.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Switch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn errno(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

/// Moves the calling thread into network namespace `name` (made by `ip netns add`).
fn enter(name: &str) -> Result<(), String> {
    let path = CString::new(format!("/run/netns/{name}")).expect("no NUL");
    // SAFETY: a valid C string; the returned descriptor is owned below.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(errno(&format!("open /run/netns/{name}")));
    }
    // SAFETY: `fd` was just opened and is not owned elsewhere.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: setns on a namespace descriptor affects only this thread.
    if unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(errno("setns"));
    }
    Ok(())
}

/// The kernel's `struct virtio_net_hdr`, which precedes every frame on a `PACKET_VNET_HDR`
/// socket (checksum and segmentation offload state).
const VNET_HDR: usize = 10;

/// A non-blocking raw packet socket bound to interface `ifname`, with virtio-net headers and
/// without the frames it sends itself.
fn open_port(ifname: &str) -> Result<OwnedFd, String> {
    let all = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain socket(2); the descriptor is owned at once.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            i32::from(all),
        )
    };
    if fd < 0 {
        return Err(errno("socket(AF_PACKET)"));
    }
    // SAFETY: `fd` is a fresh descriptor.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    for opt in [libc::PACKET_VNET_HDR, libc::PACKET_IGNORE_OUTGOING] {
        // SAFETY: a valid descriptor and a pointer to an int of the given size.
        let r = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_PACKET,
                opt,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(errno(&format!("setsockopt(SOL_PACKET, {opt})")));
        }
    }
    let name = CString::new(ifname).expect("no NUL");
    // SAFETY: a valid C string.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(errno(&format!("if_nametoindex({ifname})")));
    }
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = all;
    addr.sll_ifindex = index as i32;
    // SAFETY: `addr` is a sockaddr_ll of the size given.
    let r = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(errno(&format!("bind to {ifname}")));
    }
    Ok(fd)
}

/// A frame held for its delay.
struct Held {
    due: Instant,
    seq: u64,
    port: usize,
    frame: Vec<u8>,
}

impl PartialEq for Held {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Held {
    // Earliest first in a max-heap.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.due, other.seq).cmp(&(self.due, self.seq))
    }
}

/// xorshift64*: enough randomness for loss and jitter draws.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        Rng((t ^ u64::from(std::process::id()).rotate_left(32)) | 1)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn send(fd: &OwnedFd, frame: &[u8]) -> bool {
    // SAFETY: a valid descriptor and buffer. A down port (a cut link) fails: the frame is lost,
    // as on a real switch.
    let r = unsafe {
        libc::send(
            fd.as_raw_fd(),
            frame.as_ptr().cast(),
            frame.len(),
            libc::MSG_DONTWAIT,
        )
    };
    r >= 0
}

fn run(sockets: &[OwnedFd], rules: &Mutex<Matrix>, counters: &Counters, stop: &AtomicBool) {
    let n = sockets.len();
    let mut macs: HashMap<[u8; 6], usize> = HashMap::new();
    let mut held = BinaryHeap::<Held>::new();
    let mut rng = Rng::new();
    let mut seq = 0u64;
    let mut buf = vec![0u8; VNET_HDR + 65_536 + 64];
    let mut fds: Vec<libc::pollfd> = sockets
        .iter()
        .map(|s| libc::pollfd {
            fd: s.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    while !stop.load(Ordering::Relaxed) {
        // Deliver what is due.
        let now = Instant::now();
        while held.peek().is_some_and(|h| h.due <= now) {
            let h = held.pop().expect("peeked");
            if send(&sockets[h.port], &h.frame) {
                counters.delivered.fetch_add(1, Ordering::Relaxed);
            }
        }
        let wait = held
            .peek()
            .map_or(Duration::from_millis(50), |h| {
                h.due.saturating_duration_since(now)
            })
            .min(Duration::from_millis(50));
        let ts = libc::timespec {
            tv_sec: wait.as_secs() as libc::time_t,
            tv_nsec: wait.subsec_nanos() as libc::c_long,
        };
        // SAFETY: `fds` is a valid array of `n` pollfds; no signal mask.
        let ready =
            unsafe { libc::ppoll(fds.as_mut_ptr(), n as libc::nfds_t, &ts, std::ptr::null()) };
        if ready <= 0 {
            continue;
        }
        for from in 0..n {
            if fds[from].revents == 0 {
                continue;
            }
            fds[from].revents = 0;
            // Drain this port (bounded, so one busy port cannot starve the others).
            for _ in 0..64 {
                // SAFETY: a valid descriptor and buffer of the given length.
                let len = unsafe {
                    libc::recv(
                        sockets[from].as_raw_fd(),
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                        libc::MSG_DONTWAIT,
                    )
                };
                if len < (VNET_HDR + 14) as isize {
                    break;
                }
                counters.received.fetch_add(1, Ordering::Relaxed);
                let frame = &buf[..len as usize];
                let eth = &frame[VNET_HDR..];
                let dst: [u8; 6] = eth[0..6].try_into().expect("6 bytes");
                let src: [u8; 6] = eth[6..12].try_into().expect("6 bytes");
                if src[0] & 1 == 0 {
                    macs.insert(src, from);
                }
                let to: Vec<usize> = match macs.get(&dst) {
                    Some(&p) if dst[0] & 1 == 0 => {
                        if p == from {
                            continue;
                        }
                        vec![p]
                    }
                    _ => (0..n).filter(|&p| p != from).collect(),
                };
                let rules = rules.lock().unwrap();
                for p in to {
                    let imp = rules[from][p];
                    if imp.loss > 0.0 && rng.unit() < imp.loss {
                        counters.dropped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    let delay = if imp.jitter.is_zero() {
                        imp.delay
                    } else {
                        let j = imp.jitter.as_secs_f64() * (2.0 * rng.unit() - 1.0);
                        Duration::from_secs_f64((imp.delay.as_secs_f64() + j).max(0.0))
                    };
                    if delay.is_zero() {
                        if send(&sockets[p], frame) {
                            counters.delivered.fetch_add(1, Ordering::Relaxed);
                        }
                    } else {
                        seq += 1;
                        held.push(Held {
                            due: Instant::now() + delay,
                            seq,
                            port: p,
                            frame: frame.to_vec(),
                        });
                    }
                }
            }
        }
    }
}
