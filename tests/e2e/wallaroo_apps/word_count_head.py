"""Word count, written against Wallaroo's development head: ``--in name@host:port``
gives (name, host, port) and ``TCPSourceConfig(name, host, port, decoder)``.
Framed lines in; "word => count" lines out, one per word seen."""

import wallaroo

STRIP = " !\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"


def application_setup(args):
    name, host, port = wallaroo.tcp_parse_input_addrs(args)[0]
    out_host, out_port = wallaroo.tcp_parse_output_addrs(args)[0]
    text = wallaroo.source("Split and Count",
                           wallaroo.TCPSourceConfig(name, host, port, decode_text))
    pipeline = (text
                .to(split_text)
                .key_by(key_of)
                .to(count_it)
                .to_sink(wallaroo.TCPSinkConfig(out_host, out_port, encode_total)))
    return wallaroo.build_application("Word Count head", pipeline)


@wallaroo.decoder(header_length=4, length_fmt=">I")
def decode_text(bs):
    return bs.decode("utf-8")


@wallaroo.computation_multi(name="split into words")
def split_text(text):
    return [w.strip(STRIP) for line in text.split("\n")
            for w in line.lower().strip(STRIP).split(" ")]


class Total(object):
    def __init__(self):
        self.n = 0


@wallaroo.state_computation(name="count word", state=Total)
def count_it(word, total):
    total.n += 1
    return (word, total.n)


@wallaroo.key_extractor
def key_of(word):
    return word


@wallaroo.encoder
def encode_total(pair):
    return "{} => {}\n".format(*pair).encode()
