"""Stateless alerts, written against Wallaroo's development head: the generator source
is named (``GenSourceConfig(name, generator)``)."""

import wallaroo


def application_setup(args):
    out_host, out_port = wallaroo.tcp_parse_output_addrs(args)[0]
    gen = wallaroo.GenSourceConfig("Alerts (stateless)", TransactionsGenerator())
    pipeline = (wallaroo.source("Alerts (stateless)", gen)
                .to(check_transaction)
                .to_sink(wallaroo.TCPSinkConfig(out_host, out_port, encode_alert)))
    return wallaroo.build_application("Alerts (stateless)", pipeline)


@wallaroo.computation(name="check transaction")
def check_transaction(transaction):
    tid, amount = transaction
    if amount > 1000:
        return "Deposit Alert for %d: %d" % (tid, amount)
    elif amount < -1000:
        return "Withdrawal Alert for %d: %d" % (tid, amount)


@wallaroo.encoder
def encode_alert(alert):
    return (alert + "\n").encode()


class TransactionsGenerator(object):
    def __init__(self):
        self.count = 0

    def initial_value(self):
        return (0, 1)

    def apply(self, v):
        self.count += 1
        return (self.count, ((v[1] * 2305843009213693951) + 7) % 2500 - 1250)
