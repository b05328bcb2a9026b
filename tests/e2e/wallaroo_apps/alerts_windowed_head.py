"""Windowed alerts, written against Wallaroo's development head: a named generator
source, range windows of 9 s sliding by 3 s with Wallaroo's late-data policy named
as the head names it. ``--transactions N`` ends the generator after N transactions."""

import argparse

import wallaroo


def application_setup(args):
    parser = argparse.ArgumentParser(prog="alerts_windowed")
    parser.add_argument("--transactions", type=int, default=None)
    limit = parser.parse_known_args(args)[0].transactions
    out_host, out_port = wallaroo.tcp_parse_output_addrs(args)[0]
    gen = wallaroo.GenSourceConfig("Alerts (windowed)", TransactionsGenerator(limit))
    windows = wallaroo.range_windows(wallaroo.seconds(9))
    windows = windows.with_slide(wallaroo.seconds(3))
    windows = windows.with_late_data_policy("drop")
    pipeline = (wallaroo.source("Alerts (windowed)", gen)
                .key_by(extract_user)
                .to(windows.over(TotalAggregation))
                .to_sink(wallaroo.TCPSinkConfig(out_host, out_port, encode_alert)))
    return wallaroo.build_application("Alerts (windowed)", pipeline)


class Transaction(object):
    def __init__(self, user, amount):
        self.user, self.amount = user, amount


class TransactionTotal(object):
    def __init__(self):
        self.total = 0


@wallaroo.key_extractor
def extract_user(transaction):
    return transaction.user


class TotalAggregation(wallaroo.Aggregation):
    def initial_accumulator(self):
        return TransactionTotal()

    def update(self, transaction, t_total):
        t_total.total = t_total.total + transaction.amount

    def combine(self, t1, t2):
        out = TransactionTotal()
        out.total = t1.total + t2.total
        return out

    def output(self, user, t):
        if t.total > 2000:
            return "Deposit Alert for {}: {}".format(user, t.total)
        elif t.total < -2000:
            return "Withdrawal Alert for {}: {}".format(user, t.total)


@wallaroo.encoder
def encode_alert(alert):
    return (alert + "\n").encode()


class TransactionsGenerator(object):
    def __init__(self, limit=None):
        self.limit = limit
        self.sent = 1
        self.user_idx = 0
        self.user_totals = [1, 0, 0, 0, 0]
        self.users = ["Fido", "Rex", "Dr. Whiskers", "Feathers", "Mountaineer"]

    def initial_value(self):
        return Transaction("Fido", 1)

    def apply(self, v):
        if self.limit is not None and self.sent >= self.limit:
            return None
        self.sent += 1
        amount = ((v.amount * 2305843009213693951) + 7) % 2500 - 1250
        self.user_idx = (self.user_idx + 1) % len(self.users)
        total = self.user_totals[self.user_idx]
        if total > 5000:
            amount = -6000
        elif total < -5000:
            amount = 6000
        self.user_totals[self.user_idx] = total + amount
        return Transaction(self.users[self.user_idx], amount)
