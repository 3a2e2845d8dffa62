//! A minimal MaxMind DB writer (format 2.0: IPv4 tree, 24-bit records) for test databases
//! that map networks to a `country.iso_code`, as GeoIP2-Country files do.

use std::net::Ipv4Addr;

fn control(out: &mut Vec<u8>, kind: u8, size: usize) {
    assert!(size < 285, "test values are small");
    let (low, extra) = if size < 29 {
        (size as u8, None)
    } else {
        (29, Some((size - 29) as u8))
    };
    if kind <= 7 {
        out.push((kind << 5) | low);
    } else {
        out.push(low);
        out.push(kind - 7);
    }
    out.extend(extra);
}

fn string(out: &mut Vec<u8>, s: &str) {
    control(out, 2, s.len());
    out.extend_from_slice(s.as_bytes());
}

fn map(out: &mut Vec<u8>, pairs: usize) {
    control(out, 7, pairs);
}

fn uint(out: &mut Vec<u8>, kind: u8, v: u64) {
    let bytes = v.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    control(out, kind, 8 - skip);
    out.extend_from_slice(&bytes[skip..]);
}

enum Record {
    Empty,
    Node(usize),
    Data(usize),
}

/// A database in which each `(network, prefix length, country)` maps to that country.
pub fn country_db(networks: &[(Ipv4Addr, u8, &str)]) -> Vec<u8> {
    let mut data = Vec::new();
    let mut offsets = Vec::new();
    for (_, _, code) in networks {
        offsets.push(data.len());
        map(&mut data, 1);
        string(&mut data, "country");
        map(&mut data, 1);
        string(&mut data, "iso_code");
        string(&mut data, code);
    }
    let mut nodes: Vec<[Record; 2]> = vec![[Record::Empty, Record::Empty]];
    for ((net, len, _), offset) in networks.iter().zip(&offsets) {
        let bits = u32::from(*net);
        let mut node = 0;
        for depth in 0..*len {
            let bit = ((bits >> (31 - depth)) & 1) as usize;
            if depth + 1 == *len {
                nodes[node][bit] = Record::Data(*offset);
            } else if let Record::Node(n) = nodes[node][bit] {
                node = n;
            } else {
                nodes.push([Record::Empty, Record::Empty]);
                let n = nodes.len() - 1;
                nodes[node][bit] = Record::Node(n);
                node = n;
            }
        }
    }
    let count = nodes.len();
    let mut out = Vec::new();
    for node in &nodes {
        for r in node {
            let v = match r {
                Record::Empty => count,
                Record::Node(n) => *n,
                Record::Data(off) => count + 16 + off,
            };
            out.extend_from_slice(&(v as u32).to_be_bytes()[1..]);
        }
    }
    out.extend([0u8; 16]);
    out.extend(data);
    out.extend_from_slice(b"\xAB\xCD\xEFMaxMind.com");
    map(&mut out, 9);
    string(&mut out, "binary_format_major_version");
    uint(&mut out, 5, 2);
    string(&mut out, "binary_format_minor_version");
    uint(&mut out, 5, 0);
    string(&mut out, "build_epoch");
    uint(&mut out, 9, 1_790_000_000);
    string(&mut out, "database_type");
    string(&mut out, "Tessera-Test-Country");
    string(&mut out, "description");
    map(&mut out, 1);
    string(&mut out, "en");
    string(&mut out, "test networks");
    string(&mut out, "ip_version");
    uint(&mut out, 5, 4);
    string(&mut out, "languages");
    control(&mut out, 11, 1);
    string(&mut out, "en");
    string(&mut out, "node_count");
    uint(&mut out, 6, count as u64);
    string(&mut out, "record_size");
    uint(&mut out, 5, 24);
    out
}
