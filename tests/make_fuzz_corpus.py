#!/usr/bin/env python3
"""Writes tests/fuzz_corpus/: seed inputs for tests/fuzz_http.cpp, taken from the requests the
unit tests (tests/http_rules.inc) send. Each file is one conversation in the fuzz target's input
layout: an options byte, a read limit, the piece lengths, then the bytes the client sends.

    tests/make_fuzz_corpus.py            # rewrites tests/fuzz_corpus/seed-*
"""
import pathlib

CLOSES, KEEP_ALIVE, SMALL_MAX_BODY, STOPS_READING, WAKE_FD, SHORT_WRITES = 1, 2, 4, 8, 16, 32
BUFFER_64, BUFFER_100, BUFFER_1024 = 64, 128, 192  # main_async only; main always uses 1024
NORMAL = CLOSES | KEEP_ALIVE

CHUNKED_POST = (b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"4;name=value;quoted=\"a \\\"b\\\"\"\r\nWiki\r\n5 ; bare\r\npedia\r\n0\r\nTrailer-Field: x\r\n\r\n")
CHUNKED_HEAD = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
GET_CLOSE = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
PIPELINED = (b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
             b"POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nbody"
             b"HEAD /3 HTTP/1.1\r\nHost: a\r\n\r\n"
             b"DELETE /4 HTTP/1.1\r\nHost: a\r\n\r\n")
SMUGGLE = (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 26\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n"
           b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1a\r\nGET /smuggled HTTP/1.1\r\n\r\n\r\n0\r\n\r\n"
           b"GET /last HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
EXPECT_HEAD = b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n"


def get_with(*fields, version=b"HTTP/1.1"):
    return b"GET / " + version + b"\r\n" + b"".join(f + b"\r\n" for f in fields) + b"\r\n"


SEEDS = [
    # name, options, read limit (16-byte units), piece lengths, bytes sent
    ("get", NORMAL, 0, [], GET_CLOSE),
    ("get-byte-by-byte", NORMAL, 0, [1], GET_CLOSE),
    ("get-byte-by-byte-poll", NORMAL | WAKE_FD, 0, [1], GET_CLOSE),
    ("head", NORMAL, 0, [], b"HEAD / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"),
    ("post", NORMAL, 0, [], b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\nConnection: close\r\n\r\nhello world"),
    ("post-short-writes", NORMAL | SHORT_WRITES, 0, [5], b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world"),
    ("chunked", NORMAL, 0, [], CHUNKED_POST),
    ("chunked-byte-by-byte", NORMAL, 0, [1], CHUNKED_POST),
    ("chunked-pieces-of-7", NORMAL | WAKE_FD, 0, [7], CHUNKED_POST),
    ("chunked-buffer-64", NORMAL | BUFFER_64, 0, [3, 60], CHUNKED_POST),
    ("chunked-uppercase-hex", NORMAL, 0, [], CHUNKED_HEAD + b"0A\r\n0123456789\r\n000\r\n\r\n"),
    ("pipelined", NORMAL, 0, [], PIPELINED),
    ("pipelined-no-keep-alive", CLOSES, 0, [], PIPELINED),
    ("pipelined-client-stops-reading", NORMAL | STOPS_READING, 6, [], PIPELINED),
    ("smuggling-bodies", NORMAL, 0, [13], SMUGGLE),
    ("empty-lines-first", NORMAL, 0, [], b"\r\n\r\n" + GET_CLOSE),
    ("http10-keep-alive", NORMAL, 0, [], get_with(b"Connection: keep-alive", version=b"HTTP/1.0") + get_with(version=b"HTTP/1.0") * 2),
    ("absolute-form", NORMAL, 0, [], b"GET http://example.com/x HTTP/1.1\r\nHost: example.com\r\n\r\n"),
    ("options-asterisk", NORMAL, 0, [], b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"),
    ("connect-authority", NORMAL, 0, [], b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"),
    ("delete-405-with-body", NORMAL, 0, [], b"DELETE /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"),
    ("expect-continue", NORMAL, 0, [len(EXPECT_HEAD)], EXPECT_HEAD + b"abc"),
    ("expect-other-417", NORMAL, 0, [], get_with(b"Host: a", b"Expect: something-else")),
    ("te-and-cl-400", NORMAL, 0, [], get_with(b"Host: a", b"Transfer-Encoding: chunked", b"Content-Length: 5")),
    ("two-content-lengths-400", NORMAL, 0, [], get_with(b"Host: a", b"Content-Length: 5", b"Content-Length: 6")),
    ("same-content-lengths", NORMAL, 0, [], b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 05\r\n\r\nhello"),
    ("gzip-chunked-501", NORMAL, 0, [], get_with(b"Host: a", b"Transfer-Encoding: gzip, chunked")),
    ("chunked-not-last-400", NORMAL, 0, [], get_with(b"Host: a", b"Transfer-Encoding: chunked, gzip")),
    ("bare-lf-400", NORMAL, 0, [], b"GET / HTTP/1.1\nHost: a\n\n"),
    ("obs-fold-400", NORMAL, 0, [], get_with(b"Host: a", b"X-Long: part one", b" part two")),
    ("control-char-400", NORMAL, 0, [], get_with(b"Host: a", b"X: a\x01b")),
    ("http2-505", NORMAL, 0, [], b"GET / HTTP/2.0\r\nHost: a\r\n\r\n"),
    ("no-host-400", NORMAL, 0, [], b"GET / HTTP/1.1\r\n\r\n"),
    ("long-target-414", NORMAL | BUFFER_64, 0, [200], b"GET /" + b"a" * 1100 + b" HTTP/1.1\r\nHost: a\r\n\r\n"),
    ("big-head-431", NORMAL | BUFFER_100, 0, [200], b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * 1100 + b"\r\n\r\n"),
    ("body-over-max-413", NORMAL | SMALL_MAX_BODY, 0, [], b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 65\r\n\r\n" + b"a" * 65),
    ("chunked-over-max-413", NORMAL | SMALL_MAX_BODY, 0, [], CHUNKED_HEAD + b"40\r\n" + b"a" * 64 + b"\r\n1\r\nb\r\n0\r\n\r\n"),
    ("chunk-size-overflow-400", NORMAL, 0, [], CHUNKED_HEAD + b"10000000000000000\r\nabc\r\n0\r\n\r\n"),
    ("chunk-open-quote-400", NORMAL, 0, [], CHUNKED_HEAD + b"3;a=\"open\r\nabc\r\n0\r\n\r\n"),
    ("chunk-bad-trailer-400", NORMAL, 0, [], CHUNKED_HEAD + b"3\r\nabc\r\n0\r\nBad Trailer: x\r\n\r\n"),
    ("partial-head-silence-408", KEEP_ALIVE, 0, [], b"GET / HTTP/1.1\r\nHo"),
    ("partial-body-silence-408", KEEP_ALIVE | WAKE_FD, 0, [], b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc"),
    ("idle-after-request-silence", KEEP_ALIVE, 0, [], b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
    ("vanishes-mid-body", NORMAL, 0, [], b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc"),
    ("empty", NORMAL, 0, [], b""),
]


def main():
    corpus = pathlib.Path(__file__).resolve().parent / "fuzz_corpus"
    corpus.mkdir(exist_ok=True)
    for old in corpus.glob("seed-*"):
        old.unlink()
    for number, (name, options, read_limit, pieces, sent) in enumerate(SEEDS, 1):
        data = bytes([options, read_limit, len(pieces)]) + bytes(pieces) + sent
        (corpus / f"seed-{number:02d}-{name}").write_bytes(data)
    print(f"wrote {len(SEEDS)} seeds to {corpus}")


if __name__ == "__main__":
    main()
