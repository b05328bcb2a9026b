"""Alphabet votes, written against Wallaroo's development head (named TCP source).
Framed ">sI" records (letter, votes) in; "letter => running total" lines out. The
head's examples/python/alphabet_partitioned holds a framed input file of this form."""

import struct

import wallaroo


def application_setup(args):
    in_name, in_host, in_port = wallaroo.tcp_parse_input_addrs(args)[0]
    out_host, out_port = wallaroo.tcp_parse_output_addrs(args)[0]
    votes = wallaroo.source(
        "alphabet", wallaroo.TCPSourceConfig(in_name, in_host, in_port, decode_votes))
    return wallaroo.build_application(
        "alphabet",
        votes.key_by(by_letter).to(count_votes)
             .to_sink(wallaroo.TCPSinkConfig(out_host, out_port, encode_votes)))


class LetterVotes(object):
    def __init__(self):
        self.votes = 0


@wallaroo.decoder(header_length=4, length_fmt=">I")
def decode_votes(bs):
    letter, votes = struct.unpack(">sI", bs)
    return (letter.decode("utf-8"), votes)


@wallaroo.key_extractor
def by_letter(vote):
    return vote[0]


@wallaroo.state_computation(name="add votes", state=LetterVotes)
def count_votes(vote, state):
    state.votes += vote[1]
    return (vote[0], state.votes)


@wallaroo.encoder
def encode_votes(total):
    return ("%s => %d\n" % total).encode()
