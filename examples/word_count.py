# Word count, written for Wallaroo 0.6's Python API: lines in over TCP, one
# "word count" line out over TCP per word seen, each framed with a 4-byte
# big-endian length.
#
# Run it (three shells; the receiver first, the sender last):
#
#   wallaroo-nb receive 127.0.0.1:7002 --framed
#   wallaroo-nb run --application-module examples/word_count.py \
#       --in "split and count@127.0.0.1:7010" --out 127.0.0.1:7002 --workers 2
#   wallaroo-nb send 127.0.0.1:7010 some_text.txt
#
# Each output line is "<word> <count so far>". Ctrl-C stops the app.

import string
import struct

import wallaroo


def application_setup(args):
    in_name, in_host, in_port = wallaroo.tcp_parse_input_addrs(args)[0]
    out_host, out_port = wallaroo.tcp_parse_output_addrs(args)[0]

    lines = wallaroo.source(in_name, wallaroo.TCPSourceConfig(in_name, in_host, in_port,
                                                              decode_line))
    pipeline = (lines
                .to(split)
                .key_by(extract_word)
                .to(count_word)
                .to_sink(wallaroo.TCPSinkConfig(out_host, out_port, encode_word_count)))
    return wallaroo.build_application("Word Count Application", pipeline)


PUNCTUATION = string.punctuation + string.whitespace


@wallaroo.decoder(header_length=4, length_fmt=">I")
def decode_line(bs):
    return bs.decode("utf-8")


@wallaroo.computation_multi(name="split into words")
def split(data):
    words = []
    for line in data.split("\n"):
        for word in line.lower().split():
            word = word.strip(PUNCTUATION)
            if word:
                words.append(word)
    return words


@wallaroo.key_extractor
def extract_word(word):
    return word


class WordTotal(object):
    count = 0


class WordCount(object):
    def __init__(self, word, count):
        self.word = word
        self.count = count


@wallaroo.state_computation(name="count word", state=WordTotal)
def count_word(word, word_total):
    word_total.count = word_total.count + 1
    return WordCount(word, word_total.count)


@wallaroo.encoder
def encode_word_count(word_count):
    payload = "{} {}".format(word_count.word, word_count.count).encode("utf-8")
    return struct.pack(">I", len(payload)) + payload
