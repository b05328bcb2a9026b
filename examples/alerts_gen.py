# Stateful alerts, written for Wallaroo 0.6's Python API: a generator source
# makes bank transactions for five users; a state computation keeps each user's
# running total and sends an alert over TCP when it goes above 2000 or below
# -2000. Each alert is one line of text, framed with a 4-byte big-endian length.
#
# Run it (the receiver first):
#
#   wallaroo-nb receive 127.0.0.1:7002 --framed
#   wallaroo-nb run --application-module examples/alerts_gen.py \
#       --out 127.0.0.1:7002 --workers 2 [--limit 10000] [--rate 1000]
#
# Without --limit the generator never ends: Ctrl-C stops the app. --limit and
# --rate are this application's own options (GenSourceConfig's limit= and rate=
# are wallaroo_nb extensions; Wallaroo's generator source ran unpaced, forever).

import argparse
import struct

import wallaroo

USERS = ["Fido", "Rex", "Dr. Whiskers", "Feathers", "Mountaineer"]
THRESHOLD = 2000


def application_setup(args):
    out_host, out_port = wallaroo.tcp_parse_output_addrs(args)[0]
    options = parse_options(args)

    gen_source = wallaroo.GenSourceConfig(TransactionsGenerator(), limit=options.limit,
                                          rate=options.rate)
    transactions = wallaroo.source("Alerts (stateful)", gen_source)
    pipeline = (transactions
                .key_by(extract_user)
                .to(check_transaction_total)
                .to_sink(wallaroo.TCPSinkConfig(out_host, out_port, encode_alert)))
    return wallaroo.build_application("Alerts (stateful)", pipeline)


def parse_options(args):
    parser = argparse.ArgumentParser(prog="alerts_gen")
    parser.add_argument("--limit", type=int, default=None, help="transactions to make")
    parser.add_argument("--rate", type=float, default=None, help="transactions per second")
    return parser.parse_known_args(args)[0]


class Transaction(object):
    def __init__(self, seq, user, amount, balances):
        self.seq = seq
        self.user = user
        self.amount = amount
        self.balances = balances  # the generator's own view, to keep totals in range


class TransactionsGenerator(object):
    """Each transaction follows from the previous one alone (no state in the
    generator), so a replay makes the same sequence again."""

    def initial_value(self):
        return Transaction(0, USERS[0], 1, (1, 0, 0, 0, 0))

    def apply(self, v):
        seq = v.seq + 1
        idx = seq % len(USERS)
        # a simplistic way to get amounts above, below and within the thresholds
        amount = ((v.amount * 2305843009213693951 + 7) % 2500) - 1250
        total = v.balances[idx]
        if total > 5000:
            amount = -6000
        elif total < -5000:
            amount = 6000
        balances = v.balances[:idx] + (total + amount,) + v.balances[idx + 1:]
        return Transaction(seq, USERS[idx], amount, balances)


class TransactionTotal(object):
    total = 0


class DepositAlert(object):
    def __init__(self, user, amount):
        self.user = user
        self.amount = amount

    def __str__(self):
        return "Deposit Alert for " + self.user + ": " + str(self.amount)


class WithdrawalAlert(object):
    def __init__(self, user, amount):
        self.user = user
        self.amount = amount

    def __str__(self):
        return "Withdrawal Alert for " + self.user + ": " + str(self.amount)


@wallaroo.key_extractor
def extract_user(transaction):
    return transaction.user


@wallaroo.state_computation(name="check transaction total", state=TransactionTotal)
def check_transaction_total(transaction, state):
    state.total = state.total + transaction.amount
    if state.total > THRESHOLD:
        return DepositAlert(transaction.user, state.total)
    elif state.total < -THRESHOLD:
        return WithdrawalAlert(transaction.user, state.total)


@wallaroo.encoder
def encode_alert(alert):
    payload = str(alert).encode("utf-8")
    return struct.pack(">I", len(payload)) + payload
