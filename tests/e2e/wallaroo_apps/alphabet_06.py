"""Alphabet votes, written against Wallaroo 0.6.0/0.6.1's API. Each framed record is
one letter and a vote count (">sI"); every record sends out the letter's running
total as "letter => total"."""

import struct

import wallaroo


def application_setup(args):
    in_host, in_port = wallaroo.tcp_parse_input_addrs(args)[0]
    out_host, out_port = wallaroo.tcp_parse_output_addrs(args)[0]
    ballots = wallaroo.source("alphabet", wallaroo.TCPSourceConfig(in_host, in_port, read_vote))
    pipeline = (ballots.key_by(letter_of)
                .to(add_up)
                .to_sink(wallaroo.TCPSinkConfig(out_host, out_port, write_total)))
    return wallaroo.build_application("alphabet", pipeline)


class Vote(object):
    def __init__(self, letter, count):
        self.letter, self.count = letter, count


class Ledger(object):
    """All of a partition's letters (one per key here, as key_by puts it)."""

    def __init__(self):
        self.totals = {}

    def add(self, vote):
        self.totals[vote.letter] = self.totals.get(vote.letter, 0) + vote.count
        return Vote(vote.letter, self.totals[vote.letter])


@wallaroo.decoder(header_length=4, length_fmt=">I")
def read_vote(bs):
    letter, count = struct.unpack(">sI", bs)
    return Vote(letter.decode("utf-8"), count)


@wallaroo.key_extractor
def letter_of(vote):
    return vote.letter


@wallaroo.state_computation(name="add votes", state=Ledger)
def add_up(vote, ledger):
    return ledger.add(vote)


@wallaroo.encoder
def write_total(vote):
    return ("%s => %d\n" % (vote.letter, vote.count)).encode()
