//! A tiny bencode writer for building .torrent files (well-formed or hostile) in tests.
//! Compiled with the `testing` feature.

pub enum B {
    Int(i64),
    Str(Vec<u8>),
    List(Vec<B>),
    Dict(Vec<(&'static str, B)>),
}

pub fn s(text: &str) -> B {
    B::Str(text.as_bytes().to_vec())
}

/// Bencodes `b` (dictionary keys sorted, as bencode requires).
pub fn encode(b: &B) -> Vec<u8> {
    let mut out = Vec::new();
    write(b, &mut out);
    out
}

fn write(b: &B, out: &mut Vec<u8>) {
    match b {
        B::Int(i) => out.extend(format!("i{i}e").bytes()),
        B::Str(bytes) => {
            out.extend(format!("{}:", bytes.len()).bytes());
            out.extend(bytes);
        }
        B::List(items) => {
            out.push(b'l');
            items.iter().for_each(|i| write(i, out));
            out.push(b'e');
        }
        B::Dict(entries) => {
            out.push(b'd');
            let mut sorted: Vec<_> = entries.iter().collect();
            sorted.sort_by_key(|(k, _)| *k);
            for (k, v) in sorted {
                write(&s(k), out);
                write(v, out);
            }
            out.push(b'e');
        }
    }
}

/// A multi-file torrent `name` with `files` (path components, length): as many piece hashes
/// as the size needs (up to 1000), with meaningless content.
pub fn torrent(name: &str, files: &[(&[&str], i64)]) -> Vec<u8> {
    let piece_length = 16384i64;
    let total: i64 = files.iter().fold(0i64, |a, (_, l)| a.saturating_add(*l));
    let pieces = (total.saturating_add(piece_length - 1) / piece_length).clamp(1, 1000) as usize;
    let list = files
        .iter()
        .map(|(path, len)| {
            B::Dict(vec![
                ("length", B::Int(*len)),
                ("path", B::List(path.iter().map(|c| s(c)).collect())),
            ])
        })
        .collect();
    encode(&B::Dict(vec![
        ("announce", s("http://127.0.0.1:1/announce")),
        (
            "info",
            B::Dict(vec![
                ("name", s(name)),
                ("piece length", B::Int(piece_length)),
                ("pieces", B::Str(vec![7u8; 20 * pieces])),
                ("files", B::List(list)),
            ]),
        ),
    ]))
}
