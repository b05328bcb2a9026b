"""Windowed alerts, written against Wallaroo 0.6.0/0.6.1's API: five users'
transactions from a generator source, keyed by user, summed over 9-second windows
sliding by 3 seconds of ingest time; a window total above 2000 or below -2000 makes
an alert line. ``--transactions N`` makes the generator stop after N (it returns
None, which ends a Wallaroo generator source)."""

import argparse

import wallaroo

USERS = ["Fido", "Rex", "Dr. Whiskers", "Feathers", "Mountaineer"]


def application_setup(args):
    parser = argparse.ArgumentParser(prog="alerts_windowed")
    parser.add_argument("--transactions", type=int, default=None)
    n = parser.parse_known_args(args)[0].transactions
    out_host, out_port = wallaroo.tcp_parse_output_addrs(args)[0]
    transactions = wallaroo.source("Alerts (windowed)", wallaroo.GenSourceConfig(Bank(n)))
    pipeline = (transactions
                .key_by(user_of)
                .to(wallaroo.range_windows(wallaroo.seconds(9))
                    .with_slide(wallaroo.seconds(3))
                    .over(WindowTotal))
                .to_sink(wallaroo.TCPSinkConfig(out_host, out_port, alert_line)))
    return wallaroo.build_application("Alerts (windowed)", pipeline)


class Sum(object):
    def __init__(self, value=0):
        self.value = value


class WindowTotal(wallaroo.Aggregation):
    def initial_accumulator(self):
        return Sum()

    def update(self, transaction, acc):
        acc.value += transaction[1]

    def combine(self, a, b):
        return Sum(a.value + b.value)

    def output(self, user, acc):
        if acc.value > 2000:
            return "Deposit Alert for %s: %d" % (user, acc.value)
        if acc.value < -2000:
            return "Withdrawal Alert for %s: %d" % (user, acc.value)


@wallaroo.key_extractor
def user_of(transaction):
    return transaction[0]


@wallaroo.encoder
def alert_line(text):
    return (text + "\n").encode()


class Bank(object):
    def __init__(self, limit=None):
        self.limit, self.made = limit, 1
        self.turn = 0
        self.totals = [1, 0, 0, 0, 0]

    def initial_value(self):
        return ("Fido", 1)

    def apply(self, last):
        if self.limit is not None and self.made >= self.limit:
            return None
        self.made += 1
        amount = (last[1] * 2305843009213693951 + 7) % 2500 - 1250
        self.turn = (self.turn + 1) % len(USERS)
        total = self.totals[self.turn]
        if total > 5000:
            amount = -6000
        elif total < -5000:
            amount = 6000
        self.totals[self.turn] = total + amount
        return (USERS[self.turn], amount)
