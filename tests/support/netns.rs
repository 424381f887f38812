//! Test hosts in network namespaces that the test creates (needs root and `ip`): a switch
//! namespace holding a bridge, and one namespace per host, each with a veth to the bridge and an
//! address in 10.231.0.0/24 (which exists only inside these namespaces). A partition takes a
//! host's link down on the switch; healing brings it back. Dropping the `Net` deletes every
//! namespace it made (and with them their links).

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A switch and hosts, each host a network namespace.
#[derive(Debug)]
pub struct Net {
    prefix: String,
    hosts: usize,
}

impl Net {
    /// Creates the switch and `hosts` hosts; host `i` has address 10.231.0.(i + 1).
    pub fn new(hosts: usize) -> Result<Net, String> {
        static N: AtomicU32 = AtomicU32::new(0);
        // Interface names are limited to 15 bytes: keep the prefix short and unique.
        let prefix = format!(
            "er{}{}",
            std::process::id() % 100_000,
            N.fetch_add(1, Ordering::Relaxed)
        );
        let net = Net { prefix, hosts: 0 };
        let sw = net.switch();
        ip(&["netns", "add", &sw])?;
        let mut net = net;
        ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &sw, "link", "set", "br0", "up"])?;
        for i in 0..hosts {
            let host = net.host(i);
            ip(&["netns", "add", &host])?;
            net.hosts = i + 1;
            let (inner, outer) = (format!("{}h{i}", net.prefix), format!("{}s{i}", net.prefix));
            ip(&[
                "-n", &host, "link", "add", &inner, "type", "veth", "peer", "name", &outer,
                "netns", &sw,
            ])?;
            ip(&["-n", &sw, "link", "set", &outer, "master", "br0"])?;
            ip(&["-n", &sw, "link", "set", &outer, "up"])?;
            ip(&["-n", &host, "link", "set", "lo", "up"])?;
            ip(&["-n", &host, "link", "set", &inner, "up"])?;
            let addr = format!("{}/24", net.addr(i));
            ip(&["-n", &host, "addr", "add", &addr, "dev", &inner])?;
        }
        Ok(net)
    }

    fn switch(&self) -> String {
        format!("{}sw", self.prefix)
    }

    /// The namespace name of host `i`.
    pub fn host(&self, i: usize) -> String {
        format!("{}h{i}", self.prefix)
    }

    /// The address of host `i`.
    pub fn addr(&self, i: usize) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 231, 0, i as u8 + 1))
    }

    /// The command prefix that runs a program on host `i`.
    pub fn exec_prefix(&self, i: usize) -> Vec<String> {
        vec!["ip".into(), "netns".into(), "exec".into(), self.host(i)]
    }

    /// Cuts host `i` off from every other host.
    pub fn cut(&self, i: usize) {
        self.set_link(i, "down");
    }

    /// Reconnects host `i`.
    pub fn heal(&self, i: usize) {
        self.set_link(i, "up");
    }

    /// Sets host `i`'s port on the switch up or down.
    fn set_link(&self, i: usize, state: &str) {
        let port = format!("{}s{i}", self.prefix);
        ip(&["-n", &self.switch(), "link", "set", &port, state]).expect("set link");
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for i in 0..self.hosts {
            let _ = ip(&["netns", "del", &self.host(i)]);
        }
        let _ = ip(&["netns", "del", &self.switch()]);
    }
}
