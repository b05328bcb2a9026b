"""Word count, written against Wallaroo 0.6.0/0.6.1's API: ``--in host:port`` gives
(host, port) pairs and ``TCPSourceConfig(host, port, decoder)`` has no name.
Framed lines in; "word => count" lines out, one per word seen."""

import wallaroo

STRIP = " !\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"


def application_setup(args):
    host, port = wallaroo.tcp_parse_input_addrs(args)[0]
    out_host, out_port = wallaroo.tcp_parse_output_addrs(args)[0]
    lines = wallaroo.source("Split and Count", wallaroo.TCPSourceConfig(host, port, line_decoder))
    counted = (lines.to(words_of)
               .key_by(the_word)
               .to(tally)
               .to_sink(wallaroo.TCPSinkConfig(out_host, out_port, as_text)))
    return wallaroo.build_application("Word Count 0.6", counted)


@wallaroo.decoder(header_length=4, length_fmt=">I")
def line_decoder(payload):
    return payload.decode("utf-8")


@wallaroo.computation_multi(name="split into words")
def words_of(text):
    found = []
    for line in text.split("\n"):
        for token in line.lower().strip(STRIP).split(" "):
            found.append(token.strip(STRIP))  # empty tokens too, as Wallaroo's example
    return found


class Seen(object):
    times = 0


class Tally(object):
    def __init__(self, word, times):
        self.word, self.times = word, times


@wallaroo.state_computation(name="count word", state=Seen)
def tally(word, seen):
    seen.times += 1
    return Tally(word, seen.times)


@wallaroo.key_extractor
def the_word(word):
    return word


@wallaroo.encoder
def as_text(t):
    return ("%s => %d\n" % (t.word, t.times)).encode("utf-8")
