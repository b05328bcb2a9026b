"""Stateless alerts, written against Wallaroo 0.6.0/0.6.1's API: an endless generator
source (``GenSourceConfig(generator)``) of transactions; big deposits and withdrawals
become alert lines."""

import wallaroo


def application_setup(args):
    out_host, out_port = wallaroo.tcp_parse_output_addrs(args)[0]
    transactions = wallaroo.source("Alerts (stateless)",
                                   wallaroo.GenSourceConfig(Transactions()))
    pipeline = (transactions.to(screen)
                .to_sink(wallaroo.TCPSinkConfig(out_host, out_port, alert_line)))
    return wallaroo.build_application("Alerts (stateless)", pipeline)


class Transaction(object):
    def __init__(self, tid, amount):
        self.tid, self.amount = tid, amount


class Alert(object):
    def __init__(self, kind, tid, amount):
        self.kind, self.tid, self.amount = kind, tid, amount

    def __str__(self):
        return "%s Alert for %d: %d" % (self.kind, self.tid, self.amount)


@wallaroo.computation(name="check transaction")
def screen(t):
    if t.amount > 1000:
        return Alert("Deposit", t.tid, t.amount)
    if t.amount < -1000:
        return Alert("Withdrawal", t.tid, t.amount)
    return None


@wallaroo.encoder
def alert_line(alert):
    return (str(alert) + "\n").encode()


class Transactions(object):
    """Pseudo-random amounts in [-1250, 1250): some above, some below the thresholds."""

    def __init__(self):
        self.tid = 0

    def initial_value(self):
        return Transaction(0, 1)

    def apply(self, previous):
        self.tid += 1
        amount = (previous.amount * 2305843009213693951 + 7) % 2500 - 1250
        return Transaction(self.tid, amount)
