//! Who is connected to whom, read from `/proc`: the e2e tests that prove which addresses a
//! job connects to (the proxy's, no more than a cap of peers) count connections here.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddrV4};

/// The (local, remote, inode) of every established IPv4 connection of the machine. The
/// kernel writes the table a page at a time, so a connection may be listed twice (or
/// missed) while others come and go: callers count distinct ones.
pub fn established() -> Vec<(SocketAddrV4, SocketAddrV4, String)> {
    let parse = |field: &str| {
        let (ip, port) = field.split_once(':').unwrap();
        // The address is in the kernel's byte order (little-endian here).
        let ip = Ipv4Addr::from(u32::from_str_radix(ip, 16).unwrap().swap_bytes());
        SocketAddrV4::new(ip, u16::from_str_radix(port, 16).unwrap())
    };
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap()
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            (f[3] == "01").then(|| (parse(f[1]), parse(f[2]), f[9].to_owned()))
        })
        .collect()
}

/// The socket inodes process `pid` holds (none once it is gone).
pub fn sockets_of(pid: u32) -> BTreeSet<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|fds| {
            fds.flatten()
                .filter_map(|fd| std::fs::read_link(fd.path()).ok())
                .filter_map(|l| {
                    l.to_string_lossy()
                        .strip_prefix("socket:[")
                        .and_then(|r| r.strip_suffix(']'))
                        .map(str::to_owned)
                })
                .collect()
        })
        .unwrap_or_default()
}
