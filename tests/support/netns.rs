//! Test hosts in network namespaces that the test creates (needs root and `ip`): a switch
//! namespace holding a bridge, and one namespace per host, each with a veth to the bridge and an
//! address in 10.231.0.0/24 (which exists only inside these namespaces). A partition takes a
//! host's link down on the switch; healing brings it back. Dropping the `Net` deletes every
//! namespace it made (and with them their links).
//!
//! Every `Net` has its own switch namespace, so nets made at the same time (by parallel tests
//! or processes) never share a segment, although their hosts have the same addresses; names
//! carry the process id and a counter.
//!
//! [`Net::emulated`] replaces the kernel bridge with a user-space switch that delays, jitters
//! and drops frames per pair of hosts (see [`netem`](crate::netem)): lossy, slow links, also
//! asymmetric between two groups of hosts.

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::netem::{Impairment, Switch, SwitchStats};

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
    switch: Option<Switch>,
}

impl Net {
    /// Creates the switch and `hosts` hosts; host `i` has address 10.231.0.(i + 1).
    pub fn new(hosts: usize) -> Result<Net, String> {
        Net::build(hosts, false)
    }

    /// Like [`new`](Net::new), with a user-space switch in place of the bridge, whose links
    /// can be impaired ([`impair_all`](Net::impair_all), [`impair`](Net::impair)). Until
    /// then it forwards every frame at once.
    pub fn emulated(hosts: usize) -> Result<Net, String> {
        Net::build(hosts, true)
    }

    fn build(hosts: usize, emulated: bool) -> Result<Net, String> {
        if hosts > 250 {
            return Err(format!("{hosts} hosts: at most 250 fit in 10.231.0.0/24"));
        }
        static N: AtomicU32 = AtomicU32::new(0);
        // Interface names are limited to 15 bytes: keep the prefix short and unique.
        let prefix = format!(
            "er{}{}",
            std::process::id() % 100_000,
            N.fetch_add(1, Ordering::Relaxed)
        );
        let net = Net {
            prefix,
            hosts: 0,
            switch: None,
        };
        let sw = net.switch();
        ip(&["netns", "add", &sw])?;
        let mut net = net;
        if !emulated {
            ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"])?;
            ip(&["-n", &sw, "link", "set", "br0", "up"])?;
        }
        for i in 0..hosts {
            let host = net.host(i);
            ip(&["netns", "add", &host])?;
            net.hosts = i + 1;
            let (inner, outer) = (format!("{}h{i}", net.prefix), format!("{}s{i}", net.prefix));
            ip(&[
                "-n", &host, "link", "add", &inner, "type", "veth", "peer", "name", &outer,
                "netns", &sw,
            ])?;
            if !emulated {
                ip(&["-n", &sw, "link", "set", &outer, "master", "br0"])?;
            }
            ip(&["-n", &sw, "link", "set", &outer, "up"])?;
            ip(&["-n", &host, "link", "set", "lo", "up"])?;
            ip(&["-n", &host, "link", "set", &inner, "up"])?;
            let addr = format!("{}/24", net.addr(i));
            ip(&["-n", &host, "addr", "add", &addr, "dev", &inner])?;
        }
        if emulated {
            let ports = (0..hosts).map(|i| format!("{}s{i}", net.prefix)).collect();
            net.switch = Some(Switch::start(&sw, ports)?);
        }
        Ok(net)
    }

    /// The number of hosts.
    pub fn len(&self) -> usize {
        self.hosts
    }

    /// Whether the net has no hosts.
    pub fn is_empty(&self) -> bool {
        self.hosts == 0
    }

    fn emulator(&self) -> &Switch {
        self.switch
            .as_ref()
            .expect("links can be impaired only on a Net::emulated")
    }

    /// Impairs every link: frames between any two hosts, both ways (an emulated net only).
    pub fn impair_all(&self, imp: Impairment) {
        let all: Vec<usize> = (0..self.hosts).collect();
        self.emulator().set(&all, &all, imp);
    }

    /// Impairs frames sent by the hosts in `from` to the hosts in `to`, one way only (an
    /// emulated net only): `impair(&a, &b, loss)` with `impair(&b, &a, none)` is asymmetric
    /// loss between groups `a` and `b`.
    pub fn impair(&self, from: &[usize], to: &[usize], imp: Impairment) {
        self.emulator().set(from, to, imp);
    }

    /// Frame counts of the emulated switch (an emulated net only).
    pub fn switch_stats(&self) -> SwitchStats {
        self.emulator().stats()
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
        // Stop the switch before its interfaces go.
        drop(self.switch.take());
        for i in 0..self.hosts {
            let _ = ip(&["netns", "del", &self.host(i)]);
        }
        let _ = ip(&["netns", "del", &self.switch()]);
    }
}
