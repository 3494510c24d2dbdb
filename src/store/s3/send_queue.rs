//! How many bytes of a connection the kernel still holds unacknowledged,
//! from `/proc/net/tcp` (the `tx_queue` column, as SIOCOUTQ reports it).
//!
//! Once hyper has handed a request body to the kernel, the body may still be
//! leaving: on a slow uplink the socket's send buffer, grown by autotuning
//! to megabytes, drains for many seconds before the store can answer. A
//! queue that shrinks is a transfer that moves, so the stall timeout starts
//! only once it stops shrinking. A frozen peer still acknowledges into its
//! own receive buffer until that is full; then the queue stops shrinking too.
//! Outside Linux, or when the socket is not found, there is no answer and
//! the stall timeout runs from the last byte handed to the kernel.

use std::net::SocketAddr;

/// Bytes written to the connection `local`–`remote` and not yet
/// acknowledged by the peer.
pub(super) fn unacknowledged_bytes(local: SocketAddr, remote: SocketAddr) -> Option<u64> {
    let (path, local, remote) = match (local, remote) {
        (SocketAddr::V4(local), SocketAddr::V4(remote)) => (
            "/proc/net/tcp",
            v4_field(local.ip().octets(), local.port()),
            v4_field(remote.ip().octets(), remote.port()),
        ),
        _ => ("/proc/net/tcp6", v6_field(local), v6_field(remote)),
    };
    let table = std::fs::read_to_string(path).ok()?;
    tx_queue(&table, &local, &remote)
}

/// An IPv4 address as the kernel prints it: the address as a native-endian
/// u32 in hex, then the port.
fn v4_field(octets: [u8; 4], port: u16) -> String {
    format!("{:08X}:{port:04X}", u32::from_ne_bytes(octets))
}

/// An IPv6 address as the kernel prints it: four native-endian u32 words;
/// IPv4 addresses on IPv6 sockets appear mapped.
fn v6_field(address: SocketAddr) -> String {
    let octets = match address {
        SocketAddr::V4(v4) => v4.ip().to_ipv6_mapped().octets(),
        SocketAddr::V6(v6) => v6.ip().octets(),
    };
    let mut field = String::with_capacity(38);
    for word in octets.chunks_exact(4) {
        let word = u32::from_ne_bytes([word[0], word[1], word[2], word[3]]);
        field.push_str(&format!("{word:08X}"));
    }
    field.push_str(&format!(":{:04X}", address.port()));
    field
}

/// The `tx_queue` of the row for `local` and `remote` in a `/proc/net/tcp`
/// table.
fn tx_queue(table: &str, local: &str, remote: &str) -> Option<u64> {
    table.lines().skip(1).find_map(|line| {
        let mut fields = line.split_whitespace().skip(1);
        let (row_local, row_remote) = (fields.next()?, fields.next()?);
        if row_local != local || row_remote != remote {
            return None;
        }
        let queues = fields.nth(1)?;
        let (tx, _rx) = queues.split_once(':')?;
        u64::from_str_radix(tx, 16).ok()
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::net::{Ipv4Addr, TcpListener, TcpStream};

    use super::*;

    #[test]
    fn rows_are_matched_by_both_addresses() {
        let table = "\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1
   1: 0100007F:D431 0100007F:1F90 01 0001A2B0:00000000 01:00000014 00000000     0        0 2
";
        let local = v4_field([127, 0, 0, 1], 0xD431);
        let remote = v4_field([127, 0, 0, 1], 0x1F90);
        if cfg!(target_endian = "little") {
            assert_eq!(local, "0100007F:D431");
        }
        assert_eq!(tx_queue(table, &local, &remote), Some(0x1A2B0));
        assert_eq!(tx_queue(table, &remote, &local), None);
    }

    #[test]
    fn a_live_connection_is_found() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_server, _) = listener.accept().unwrap();
        client.write_all(b"hello").unwrap();
        let (local, remote) = (client.local_addr().unwrap(), client.peer_addr().unwrap());
        // Loopback acknowledges at once; the row is what matters.
        assert!(unacknowledged_bytes(local, remote).is_some());
    }
}
