//! The codec against stalling, truncating, oversized and corrupted frames.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::FutureExt;
use libp2p::request_response::Codec as _;

use super::*;

fn prefix(len: u64) -> Vec<u8> {
    let mut bytes = Vec::new();
    prost::encoding::encode_varint(len, &mut bytes);
    bytes
}

/// Hands out what it holds, then stays pending (a stalled peer), or ends (`eof`).
struct Stalling {
    data: Vec<u8>,
    pos: usize,
    eof: bool,
}

impl Stalling {
    fn new(data: Vec<u8>) -> Self {
        Self {
            data,
            pos: 0,
            eof: false,
        }
    }
}

impl AsyncRead for Stalling {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let left = &self.data[self.pos..];
        if left.is_empty() && !self.eof {
            return Poll::Pending;
        }
        let n = left.len().min(buf.len());
        buf[..n].copy_from_slice(&left[..n]);
        self.pos += n;
        Poll::Ready(Ok(n))
    }
}

fn read_request(bytes: Vec<u8>, budget: &ReadBudget) -> io::Result<Request> {
    let before = budget.in_use();
    let mut rd = futures::io::Cursor::new(bytes);
    let got = read_frame(&mut rd, Some(budget))
        .now_or_never()
        .expect("a cursor never stalls");
    assert_eq!(budget.in_use(), before, "budget given back");
    got
}

#[test]
fn frames_round_trip_unchanged() {
    futures::executor::block_on(async {
        let budget = ReadBudget::new(READ_BUDGET_BYTES);
        let mut codec = Codec::new(budget.clone());
        // Empty, small, one byte over a growth step, and a full batch.
        for size in [0, 1000, MAX_GROWTH + 1, MAX_BATCH_BYTES] {
            let req = Request::deliver(vec![7; size]);
            let mut buf = futures::io::Cursor::new(Vec::new());
            codec
                .write_request(&PROTOCOL, &mut buf, req.clone())
                .await
                .expect("write");
            let bytes = buf.into_inner();
            // The frame format: one unsigned-varint length, then the protobuf.
            assert_eq!(bytes, req.encode_length_delimited_to_vec());
            let mut rd = futures::io::Cursor::new(bytes);
            let back = codec.read_request(&PROTOCOL, &mut rd).await.expect("read");
            assert_eq!(back, req);
            assert_eq!(budget.in_use(), 0);
        }
        let res = Response::rejected(RejectCode::Malformed, "no");
        let mut buf = futures::io::Cursor::new(Vec::new());
        codec
            .write_response(&PROTOCOL, &mut buf, res.clone())
            .await
            .expect("write");
        let mut rd = futures::io::Cursor::new(buf.into_inner());
        let back = codec.read_response(&PROTOCOL, &mut rd).await.expect("read");
        assert_eq!(back, res);
    });
}

#[test]
fn a_stalled_frame_holds_what_arrived_not_what_it_claimed() {
    // The buffer itself, observed while the read waits for the rest of a frame that claims
    // the largest size.
    for arrived in [0, 100, MIN_GROWTH + 1, 300 * 1024] {
        let mut rd = Stalling::new(vec![9; arrived]);
        let mut buf = Vec::new();
        let mut held = Held::new(None);
        let read = read_body(&mut rd, MAX_FRAME_BYTES, &mut buf, &mut held).now_or_never();
        assert!(read.is_none(), "waits for the rest");
        let most = match arrived {
            0 => 0,
            _ => (2 * arrived).clamp(MIN_GROWTH, arrived + MAX_GROWTH),
        };
        assert!(
            buf.capacity() <= most,
            "{} bytes allocated for {arrived} that arrived",
            buf.capacity()
        );
    }

    // The same through the codec: what the budget shows held while a request stalls after
    // its length prefix (nothing), then after three more bytes, and that it is given back
    // when the read is abandoned.
    let budget = ReadBudget::new(READ_BUDGET_BYTES);
    let mut codec = Codec::new(budget.clone());
    let mut rd = Stalling::new(prefix(MAX_FRAME_BYTES as u64));
    {
        let protocol = PROTOCOL;
        let mut read = std::pin::pin!(codec.read_request(&protocol, &mut rd));
        assert!(read.as_mut().now_or_never().is_none());
        assert_eq!(budget.in_use(), 0);
    }
    let mut rd = Stalling::new([prefix(MAX_FRAME_BYTES as u64), vec![1, 2, 3]].concat());
    {
        let protocol = PROTOCOL;
        let mut read = std::pin::pin!(codec.read_request(&protocol, &mut rd));
        assert!(read.as_mut().now_or_never().is_none());
        assert_eq!(budget.in_use(), MIN_GROWTH);
    }
    assert_eq!(
        budget.in_use(),
        0,
        "an abandoned read gives its budget back"
    );
    rd.eof = true;
    let err = futures::executor::block_on(codec.read_request(&PROTOCOL, &mut rd))
        .expect_err("the stream ended");
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    assert_eq!(budget.in_use(), 0);
}

#[test]
fn reads_beyond_the_budget_fail_their_stream_and_give_it_back() {
    let budget = ReadBudget::new(8 * 1024);
    // A frame that needs more than the whole budget.
    let big = Request::deliver(vec![1; 20 * 1024]).encode_length_delimited_to_vec();
    let err = read_request(big, &budget).expect_err("over budget");
    assert_eq!(err.kind(), io::ErrorKind::OutOfMemory);
    assert!(err.to_string().contains("read budget"), "{err}");

    // Stalled reads hold budget; a read that cannot get its next step fails, and once
    // the stalled ones are dropped the budget serves again.
    let mut stalled = Vec::new();
    for _ in 0..4 {
        let mut bytes = prefix(MAX_FRAME_BYTES as u64);
        bytes.extend_from_slice(&[0; 2 * MIN_GROWTH + 1]);
        stalled.push(Stalling::new(bytes));
    }
    let mut reads: Vec<_> = stalled
        .iter_mut()
        .map(|rd| Box::pin(read_frame::<_, Request>(rd, Some(&budget))))
        .collect();
    let mut refused = 0;
    for read in &mut reads {
        match read.as_mut().now_or_never() {
            None => {}
            Some(Err(e)) if e.kind() == io::ErrorKind::OutOfMemory => refused += 1,
            Some(other) => panic!("{other:?}"),
        }
    }
    // Each holds 1 + 1 + 2 KiB once 2 KiB and a byte arrived: two fit in 8 KiB.
    assert_eq!(refused, 2);
    assert!(budget.in_use() <= 8 * 1024);
    let small = Request::deliver(vec![1; 4000]).encode_length_delimited_to_vec();
    assert!(
        read_request(small.clone(), &budget).is_err(),
        "no budget left"
    );
    drop(reads);
    assert_eq!(budget.in_use(), 0);
    assert!(read_request(small, &budget).is_ok());
}

#[test]
fn truncated_and_oversized_frames_give_clear_errors() {
    let budget = ReadBudget::new(READ_BUDGET_BYTES);
    let cases: Vec<(&str, Vec<u8>, io::ErrorKind, &str)> = vec![
        (
            "empty stream",
            vec![],
            io::ErrorKind::UnexpectedEof,
            "before a frame",
        ),
        (
            "truncated prefix",
            vec![0x80, 0x80],
            io::ErrorKind::UnexpectedEof,
            "prefix truncated after 2 bytes",
        ),
        (
            "truncated body",
            [prefix(100), vec![0; 10]].concat(),
            io::ErrorKind::UnexpectedEof,
            "after 10 of 100 bytes",
        ),
        (
            "one byte over the limit",
            prefix(MAX_FRAME_BYTES as u64 + 1),
            io::ErrorKind::InvalidData,
            "exceeds limit",
        ),
        (
            "largest prefix",
            prefix(u64::MAX),
            io::ErrorKind::InvalidData,
            "exceeds limit",
        ),
        (
            "prefix over 64 bits",
            [vec![0xff; 9], vec![0x02]].concat(),
            io::ErrorKind::InvalidData,
            "over 64 bits",
        ),
        (
            "prefix of 11 bytes",
            vec![0x80; 11],
            io::ErrorKind::InvalidData,
            "over 64 bits",
        ),
        (
            "not a protobuf",
            [prefix(5), vec![0xff; 5]].concat(),
            io::ErrorKind::InvalidData,
            "",
        ),
    ];
    for (what, bytes, kind, says) in cases {
        let err = read_request(bytes, &budget).expect_err(what);
        assert_eq!(err.kind(), kind, "{what}: {err}");
        assert!(err.to_string().contains(says), "{what}: {err}");
    }
    // A request exactly at the limit is read.
    let at_limit = (MAX_FRAME_BYTES - 16..MAX_FRAME_BYTES)
        .map(|n| Request::deliver(vec![0; n]))
        .find(|r| r.encoded_len() == MAX_FRAME_BYTES)
        .expect("a request of the largest size");
    let read = read_request(at_limit.encode_length_delimited_to_vec(), &budget);
    assert_eq!(read.expect("at the limit"), at_limit);
    // Writing refuses what reading would.
    let err = write_frame(
        &mut futures::io::Cursor::new(Vec::new()),
        &Request::deliver(vec![0; MAX_FRAME_BYTES]),
    )
    .now_or_never()
    .expect("a cursor never stalls")
    .expect_err("too big");
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
}

/// No proptest in this crate: a seeded xorshift, so a failure reproduces.
#[test]
fn corrupted_frames_never_panic_nor_leak_budget() {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let budget = ReadBudget::new(64 * 1024);
    let valid = Request::deliver(vec![3; 700]).encode_length_delimited_to_vec();
    for _ in 0..5_000 {
        let mut bytes = match next() % 3 {
            // Flipped bytes in a valid frame, prefix included.
            0 => {
                let mut b = valid.clone();
                for _ in 0..1 + next() % 4 {
                    let i = (next() % b.len() as u64) as usize;
                    b[i] = next() as u8;
                }
                b
            }
            // A valid frame cut short or with trailing bytes.
            1 => {
                let mut b = valid.clone();
                b.truncate((next() % b.len() as u64) as usize);
                b
            }
            // Noise.
            _ => (0..next() % 64).map(|_| next() as u8).collect(),
        };
        if next() % 4 == 0 {
            bytes.extend((0..next() % 16).map(|_| next() as u8));
        }
        let _ = read_request(bytes, &budget);
    }
}
